import { Module } from '@nestjs/common';
import type { IncomingMessage } from 'node:http';
import { createRequire } from 'node:module';
import { LoggerModule } from 'nestjs-pino';
import { AppConfig } from '../config/app-config';

/** pino-pretty is a development dependency: pretty output only where it is installed. */
function prettyAvailable(): boolean {
  try {
    createRequire(__filename).resolve('pino-pretty');
    return true;
  } catch {
    return false;
  }
}

function wantsPretty(config: AppConfig): boolean {
  const format = config.logFormat ?? (process.stdout.isTTY && !config.production ? 'pretty' : 'json');
  return format === 'pretty' && prettyAvailable();
}

/**
 * Structured logs (pino, one JSON object per line) at LOG_LEVEL. Lines about a message carry
 * `sessionId` and `messageId` fields. Tokens and message contents are never logged: request logs
 * keep only method, path (no query string, which may hold a token) and status.
 */
@Module({
  imports: [
    LoggerModule.forRootAsync({
      inject: [AppConfig],
      useFactory: (config: AppConfig) => ({
        pinoHttp: {
          level: config.logLevel,
          ...(wantsPretty(config) ? { transport: { target: 'pino-pretty', options: { singleLine: true } } } : {}),
          autoLogging: { ignore: (req: IncomingMessage) => /^\/(health|metrics|socket\.io)/.test(req.url ?? '') },
          serializers: {
            req: (req: { id?: unknown; method?: string; url?: string }) => ({ id: req.id, method: req.method, path: (req.url ?? '').split('?')[0] }),
            res: (res: { statusCode?: number }) => ({ statusCode: res.statusCode }),
          },
          redact: ['req.headers.authorization', 'req.headers.cookie'],
          formatters: { level: (label: string) => ({ level: label }) },
        },
      }),
    }),
  ],
})
export class LoggingModule {}
