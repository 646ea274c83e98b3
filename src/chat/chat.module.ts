import { Module } from '@nestjs/common';
import { AuthModule } from '../auth/auth.module';
import { EventBusModule } from '../event-bus/event-bus.module';
import { HistoryModule } from '../history/history.module';
import { LimitsModule } from '../limits/limits.module';
import { ChatEventsRelay } from './chat-events.relay';
import { ChatController } from './chat.controller';
import { ChatGateway } from './chat.gateway';
import { ChatService } from './chat.service';
import { SessionsController } from './sessions.controller';

/** The public face of the chat: HTTP routes, the Socket.IO gateway and the relay behind it. */
@Module({
  imports: [EventBusModule, HistoryModule, AuthModule, LimitsModule],
  controllers: [SessionsController, ChatController],
  providers: [ChatService, ChatGateway, ChatEventsRelay],
})
export class ChatModule {}
