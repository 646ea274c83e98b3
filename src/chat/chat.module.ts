import { Module } from '@nestjs/common';
import { AiModule } from '../ai/ai.module';
import { AuthModule } from '../auth/auth.module';
import { EventBusModule } from '../event-bus/event-bus.module';
import { HistoryModule } from '../history/history.module';
import { LimitsModule } from '../limits/limits.module';
import { ChatEventsController } from './chat-events.controller';
import { ChatEventsRelay } from './chat-events.relay';
import { ChatController } from './chat.controller';
import { ChatGateway } from './chat.gateway';
import { ChatService } from './chat.service';
import { ModelsController } from './models.controller';
import { PlainWsServer } from './plain-ws.server';
import { ResumableEvents } from './resumable-events';
import { SessionEventHub } from './session-event-hub';
import { SessionsController } from './sessions.controller';

/**
 * The public face of the chat: HTTP routes, the Socket.IO gateway, SSE and the plain WebSocket, and
 * the relay behind them (its own provider: every way in watches partitions through it).
 */
@Module({
  imports: [EventBusModule, HistoryModule, AuthModule, LimitsModule, AiModule],
  controllers: [SessionsController, ChatController, ChatEventsController, ModelsController],
  providers: [ChatService, ChatGateway, ChatEventsRelay, SessionEventHub, ResumableEvents, PlainWsServer],
})
export class ChatModule {}
