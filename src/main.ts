import 'reflect-metadata';
import { Logger as NestLogger } from '@nestjs/common';
import { Logger } from 'nestjs-pino';
import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import helmet from 'helmet';
import { join } from 'node:path';
import { AppModule } from './app.module';
import { bodyLimitBytes } from './app/body-limit';
import { ConfiguredIoAdapter } from './app/configured-io.adapter';
import { HttpErrorsFilter } from './app/http-errors.filter';
import { setupSwagger } from './app/swagger';
import { serveVendorAssets } from './app/vendor-assets';
import { createValidationPipe } from './app/validation';
import { requestLog } from './observability/request-log';
import { AppConfig } from './config/app-config';
import { ConnectionCaps } from './limits/connection-caps';

async function bootstrap(): Promise<void> {
  const app = await NestFactory.create<NestExpressApplication>(AppModule, { bufferLogs: true, bodyParser: false });
  const config = app.get(AppConfig);
  app.useLogger(app.get(Logger));
  app.flushLogs();
  app.use(requestLog(new NestLogger('HTTP')));
  // Self-hosted instances are often reached over plain http on a LAN: upgrading the page's own
  // requests to https would break it there.
  // The compiled function itself: Express uses it as given, and the sockets use the same one.
  app.set('trust proxy', config.http.trustProxy);
  // API answers are small and never revalidated: hashing each (SHA-1) for an ETag was wasted work.
  // Static files keep theirs (serve-static sets its own).
  app.set('etag', false);
  app.use(helmet({ contentSecurityPolicy: { directives: { upgradeInsecureRequests: null } } }));
  app.useBodyParser('json', { limit: bodyLimitBytes(config) });
  app.enableCors(config.http.corsOrigins ? { origin: config.http.corsOrigins, credentials: true } : { origin: false });
  app.useGlobalPipes(createValidationPipe());
  app.useGlobalFilters(new HttpErrorsFilter());
  app.useWebSocketAdapter(new ConfiguredIoAdapter(app, config, app.get(ConnectionCaps)));
  app.useStaticAssets(join(__dirname, 'public'), { index: 'index.html' });
  serveVendorAssets(app.getHttpAdapter().getInstance());
  app.enableShutdownHooks();
  if (config.http.docsEnabled) setupSwagger(app);
  await app.listen(config.http.port);
  const url = await app.getUrl();
  if (config.auth.mode === 'none')
    NestLogger.warn('AUTH_MODE=none: any session id is accepted without a token (local use only)', 'Bootstrap');
  NestLogger.log(
    `listening on ${url} (provider ${config.ai.provider}, model ${config.ai.model}, worker ${config.worker.enabled ? 'in-process' : 'off'})`,
    'Bootstrap',
  );
}

bootstrap().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
