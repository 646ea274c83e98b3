import { Module } from '@nestjs/common';
import { EventBusModule } from '../event-bus/event-bus.module';
import { SendLimits } from './send-limits.service';

/** Rate and backlog limits on sends. */
@Module({
  imports: [EventBusModule],
  providers: [SendLimits],
  exports: [SendLimits],
})
export class LimitsModule {}
