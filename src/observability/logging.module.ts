import { Module } from '@nestjs/common';
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
 * `sessionId` and `messageId` fields. Tokens and message contents are never logged. Requests are
 * logged by `requestLog` (method, path without the query string, status, duration), not by
 * nestjs-pino's pino-http middleware: `forRoutes: []` keeps that middleware off every route.
 */
@Module({
  imports: [
    LoggerModule.forRootAsync({
      inject: [AppConfig],
      useFactory: (config: AppConfig) => ({
        forRoutes: [],
        pinoHttp: {
          level: config.logLevel,
          ...(wantsPretty(config) ? { transport: { target: 'pino-pretty', options: { singleLine: true } } } : {}),
          formatters: { level: (label: string) => ({ level: label }) },
        },
      }),
    }),
  ],
})
export class LoggingModule {}
