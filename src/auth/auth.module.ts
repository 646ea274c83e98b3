import { Module } from '@nestjs/common';
import { EventBusModule } from '../event-bus/event-bus.module';
import { NewSessionLimit } from '../limits/new-session-limit';
import { SessionAuthGuard } from './session-auth.guard';
import { SessionTokens } from './session-tokens.service';

/**
 * Session tokens for HTTP routes and socket handshakes, and the per-address limit on minting them
 * (provided here because SessionsController, which issues tokens, already imports this module).
 */
@Module({
  imports: [EventBusModule],
  providers: [SessionTokens, SessionAuthGuard, NewSessionLimit],
  exports: [SessionTokens, SessionAuthGuard, NewSessionLimit],
})
export class AuthModule {}
