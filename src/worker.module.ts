import { Module } from '@nestjs/common';
import { AiModule } from './ai/ai.module';
import { ShutdownDeadline } from './app/shutdown-deadline';
import { AppConfigModule } from './config/app-config.module';
import { LoggingModule } from './observability/logging.module';
import { MetricsModule } from './observability/metrics.module';
import { WorkerMetricsServer } from './observability/worker-metrics.server';

/** The standalone worker process: no HTTP API, the consumer of chat:incoming (metrics optional). */
@Module({ imports: [AppConfigModule, LoggingModule, MetricsModule, AiModule], providers: [WorkerMetricsServer, ShutdownDeadline] })
export class WorkerModule {}
