import { Module } from '@nestjs/common';
import { EventBusModule } from '../event-bus/event-bus.module';
import { SessionAuthGuard } from './session-auth.guard';
import { SessionTokens } from './session-tokens.service';

/** Session tokens for HTTP routes and socket handshakes. */
@Module({
  imports: [EventBusModule],
  providers: [SessionTokens, SessionAuthGuard],
  exports: [SessionTokens, SessionAuthGuard],
})
export class AuthModule {}
