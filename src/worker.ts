import 'reflect-metadata';
import { Logger as NestLogger } from '@nestjs/common';
import { Logger } from 'nestjs-pino';
import { NestFactory } from '@nestjs/core';
import { ChatWorker } from './ai/chat-worker.service';
import { AppConfig } from './config/app-config';
import { WorkerModule } from './worker.module';

/** `npm run start:worker`: an AI worker alone. It always consumes (WORKER_ENABLED is about the API process). */
async function bootstrap(): Promise<void> {
  const app = await NestFactory.createApplicationContext(WorkerModule, { bufferLogs: true });
  const config = app.get(AppConfig);
  app.useLogger(app.get(Logger));
  app.flushLogs();
  app.enableShutdownHooks();
  app.get(ChatWorker).start();
  NestLogger.log(`AI worker ready (provider ${config.ai.provider}, model ${config.ai.model})`, 'Bootstrap');
}

bootstrap().catch((err: unknown) => {
  // A configuration error is already a full sentence; print it without a stack.
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
