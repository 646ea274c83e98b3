import { Global, Module } from '@nestjs/common';
import { ConfigModule } from '@nestjs/config';
import { AppConfig } from './app-config';
import { validateEnvironment } from './environment';

/**
 * Loads `.env` (if present) and the process environment once, validates it (start-up fails naming
 * each bad variable) and exposes the typed AppConfig to every module.
 */
@Global()
@Module({
  imports: [ConfigModule.forRoot({ cache: true, validate: validateEnvironment })],
  providers: [
    {
      provide: AppConfig,
      // ConfigModule has validated and merged .env into process.env; this is the one read of it.
      useFactory: () => new AppConfig(validateEnvironment(process.env)),
    },
  ],
  exports: [AppConfig],
})
export class AppConfigModule {}
