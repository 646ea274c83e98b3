import { Module } from '@nestjs/common';
import { AiModule } from './ai/ai.module';
import { ShutdownDeadline } from './app/shutdown-deadline';
import { ChatModule } from './chat/chat.module';
import { AppConfigModule } from './config/app-config.module';
import { LoggingModule } from './observability/logging.module';
import { MetricsModule } from './observability/metrics.module';
import { HealthModule } from './health/health.module';

/** The API process: HTTP + Socket.IO, and an in-process AI worker unless WORKER_ENABLED=false. */
@Module({
  imports: [AppConfigModule, LoggingModule, MetricsModule, ChatModule, AiModule, HealthModule],
  providers: [ShutdownDeadline],
})
export class AppModule {}
