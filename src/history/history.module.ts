import { Module } from '@nestjs/common';
import { EventBusModule } from '../event-bus/event-bus.module';
import { ChatHistoryStore } from './chat-history.store';

/** Conversation storage shared by the API (history, sends) and the workers (context, outcomes). */
@Module({
  imports: [EventBusModule],
  providers: [ChatHistoryStore],
  exports: [ChatHistoryStore],
})
export class HistoryModule {}
