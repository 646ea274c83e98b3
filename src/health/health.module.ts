import { Module } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { AiModule } from '../ai/ai.module';
import { EventBusModule } from '../event-bus/event-bus.module';
import { MetricsController } from '../observability/metrics.controller';
import { HealthController } from './health.controller';

@Module({
  imports: [TerminusModule.forRoot({ logger: false }), EventBusModule, AiModule],
  controllers: [HealthController, MetricsController],
})
export class HealthModule {}
