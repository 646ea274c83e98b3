import { Module } from '@nestjs/common';
import { AiModule } from './ai/ai.module';
import { AppConfigModule } from './config/app-config.module';

/** The standalone worker process: no HTTP, just the consumer of chat:incoming. */
@Module({ imports: [AppConfigModule, AiModule] })
export class WorkerModule {}
