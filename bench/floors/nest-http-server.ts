/**
 * Floor: the least an HTTP send can cost through the chosen framework stack. The same JSON POST as
 * http-server.ts, answered 202 by a NestJS controller on `@nestjs/platform-express` with what the
 * app's send goes through before any of its own logic: helmet's headers, the JSON body parser, the
 * app's ValidationPipe against its `SendMessageDto` (class-transformer + class-validator) and its
 * error filter. No Redis, auth, rate limits or request log. Beside the bare node:http floor it says
 * what the framework alone costs per request.
 */
import 'reflect-metadata';
import { randomUUID } from 'node:crypto';
import { Body, Controller, HttpCode, Module, Post } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import helmet from 'helmet';
import { HttpErrorsFilter } from '../../src/app/http-errors.filter';
import { createValidationPipe } from '../../src/app/validation';
import { SendMessageDto } from '../../src/chat/dto/send-message.dto';
import { runFloorChild } from './child-protocol';

let requests = 0;

@Controller('chat')
class SendController {
  @Post('send')
  @HttpCode(202)
  send(@Body() body: SendMessageDto): { messageId: string; sessionId: string; status: string } {
    requests++;
    return { messageId: randomUUID(), sessionId: body.sessionId, status: 'queued' };
  }
}

@Module({ controllers: [SendController] })
class FloorModule {}

async function main(): Promise<void> {
  const app = await NestFactory.create<NestExpressApplication>(FloorModule, { logger: false, bodyParser: false });
  app.set('etag', false);
  app.use(helmet({ contentSecurityPolicy: { directives: { upgradeInsecureRequests: null } } }));
  app.useBodyParser('json', { limit: 64 * 1024 });
  app.useGlobalPipes(createValidationPipe());
  app.useGlobalFilters(new HttpErrorsFilter());
  await app.listen(0, '127.0.0.1');
  const address = app.getHttpServer().address() as { port: number };
  let atStart = 0;
  runFloorChild({ port: address.port }, { start: () => (atStart = requests), stop: () => ({ requests: requests - atStart }) });
}

main().catch((err: Error) => {
  process.stderr.write(`${err.stack}\n`);
  process.exit(1);
});
