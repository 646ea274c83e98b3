import { Module } from '@nestjs/common';
import { AppConfig } from '../config/app-config';
import { EventBusModule } from '../event-bus/event-bus.module';
import { HistoryModule } from '../history/history.module';
import { CancelListener } from './cancel-listener';
import { ChatWorker } from './chat-worker.service';
import { ContextBudget } from './context-budget';
import { TitleWriter } from './title-writer';
import { MessageRunner } from './message-runner';
import { ModelCatalog } from './model-catalog';
import { AI_PROVIDER, AiProvider } from './providers/ai-provider';
import { MockProvider } from './providers/mock.provider';
import { OllamaProvider } from './providers/ollama.provider';
import { OpenAiProvider } from './providers/openai.provider';

/** The AI worker (reader of the partitions' incoming streams) and the model providers behind it. */
@Module({
  imports: [EventBusModule, HistoryModule],
  providers: [
    {
      provide: AI_PROVIDER,
      inject: [AppConfig],
      useFactory: (config: AppConfig): AiProvider => {
        switch (config.ai.provider) {
          case 'mock':
            return new MockProvider(config.ai.mockTokenDelayMs, config.ai.model);
          case 'openai':
            return new OpenAiProvider(config.ai.openai);
          case 'ollama':
            return new OllamaProvider(config.ai.ollamaHost, config.ai.model, config.context.windowTokens);
        }
      },
    },
    MessageRunner,
    ContextBudget,
    TitleWriter,
    ModelCatalog,
    CancelListener,
    ChatWorker,
  ],
  exports: [AI_PROVIDER, ChatWorker, ModelCatalog],
})
export class AiModule {}
