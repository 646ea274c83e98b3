import { Global, Module } from '@nestjs/common';
import { EventBusModule } from '../event-bus/event-bus.module';
import { Metrics } from './metrics.service';

@Global()
@Module({
  imports: [EventBusModule],
  providers: [Metrics],
  exports: [Metrics],
})
export class MetricsModule {}
