import { Global, Module } from '@nestjs/common';
import { ConfigModule } from '@nestjs/config';
import { AppConfig } from './app-config';
import { Environment, validateEnvironment } from './environment';

/** Set by ConfigModule's one validation of the environment, read by the AppConfig provider. */
let validated: Environment | null = null;

/**
 * ConfigModule merges `.env` (if present) with the process environment and validates the result
 * once, when the module is loaded: start-up fails with one message naming each bad variable, before
 * anything else starts. Every module receives the typed AppConfig built from that validation.
 */
@Global()
@Module({
  imports: [ConfigModule.forRoot({ cache: true, validate: (raw) => (validated = validateEnvironment(raw)) })],
  providers: [
    {
      provide: AppConfig,
      useFactory: () => {
        if (!validated) throw new Error('the environment was not validated: ConfigModule.forRoot did not run');
        return new AppConfig(validated);
      },
    },
  ],
  exports: [AppConfig],
})
export class AppConfigModule {}
