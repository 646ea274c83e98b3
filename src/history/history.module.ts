import { Module } from '@nestjs/common';
import { EventBusModule } from '../event-bus/event-bus.module';
import { MessageStore } from './message-store';

/** A session's messages and their state machine, shared by the API (sends, cancels, history) and the workers. */
@Module({
  imports: [EventBusModule],
  providers: [MessageStore],
  exports: [MessageStore],
})
export class HistoryModule {}
