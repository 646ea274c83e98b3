import { Module } from '@nestjs/common';
import { EventBusModule } from '../event-bus/event-bus.module';
import { ConnectionCaps } from './connection-caps';
import { SendLimits } from './send-limits.service';

/** Rate and backlog limits on sends, and caps on open connections. */
@Module({
  imports: [EventBusModule],
  providers: [SendLimits, ConnectionCaps],
  exports: [SendLimits, ConnectionCaps],
})
export class LimitsModule {}
