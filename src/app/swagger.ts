import { INestApplication } from '@nestjs/common';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';

/** Swagger UI at /docs, the OpenAPI document at /docs-json. */
export function setupSwagger(app: INestApplication): void {
  const document = SwaggerModule.createDocument(
    app,
    new DocumentBuilder()
      .setTitle('ai-assistant')
      .setDescription(
        'Self-hostable AI chat backend. Create a session, send messages with POST /chat/send, and receive the streamed ' +
          'answer over Socket.IO (namespace /chat, handshake auth {sessionId, token}): chat.user_message, chat.started, ' +
          'chat.thinking, chat.delta, then chat.completed, chat.failed or chat.cancelled.',
      )
      .setVersion('0.1.0')
      .addBearerAuth({ type: 'http', scheme: 'bearer', description: 'The token from POST /sessions' })
      .build(),
  );
  SwaggerModule.setup('docs', app, document, { jsonDocumentUrl: 'docs-json' });
}
