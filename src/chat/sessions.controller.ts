import { Controller, HttpCode, Ip, Param, Post, UseGuards } from '@nestjs/common';
import {
  ApiBearerAuth,
  ApiCreatedResponse,
  ApiForbiddenResponse,
  ApiOperation,
  ApiParam,
  ApiTags,
  ApiTooManyRequestsResponse,
  ApiUnauthorizedResponse,
} from '@nestjs/swagger';
import { randomUUID } from 'node:crypto';
import { SessionAuthGuard } from '../auth/session-auth.guard';
import { SessionTokens } from '../auth/session-tokens.service';
import { NewSessionLimit } from '../limits/new-session-limit';
import { ErrorResponseDto } from './dto/history.dto';
import { SessionTokenResponseDto } from './dto/session.dto';
import { IdParamPipe } from './session-id.pipe';

@ApiTags('sessions')
@Controller('sessions')
export class SessionsController {
  constructor(
    private readonly tokens: SessionTokens,
    private readonly limit: NewSessionLimit,
  ) {}

  @Post()
  @HttpCode(201)
  @ApiOperation({
    summary: 'Start a chat session',
    description: 'Returns a new session id and the token that grants access to it, with its expiry.',
  })
  @ApiCreatedResponse({ type: SessionTokenResponseDto })
  @ApiTooManyRequestsResponse({
    description: 'Too many new sessions from this address this minute; see Retry-After',
    type: ErrorResponseDto,
  })
  async create(@Ip() address: string | undefined): Promise<SessionTokenResponseDto> {
    await this.limit.check(address);
    const sessionId = randomUUID();
    return this.answer(sessionId);
  }

  @Post(':sessionId/token')
  @HttpCode(201)
  @UseGuards(SessionAuthGuard)
  @ApiBearerAuth()
  @ApiOperation({
    summary: 'Reissue the session token',
    description:
      'A fresh token for the same session, valid for the full lifetime again. Requires a current token of that session; ' +
      'the old token keeps working until its own expiry.',
  })
  @ApiParam({ name: 'sessionId' })
  @ApiCreatedResponse({ type: SessionTokenResponseDto })
  @ApiUnauthorizedResponse({ description: 'Missing, invalid, expired or revoked token', type: ErrorResponseDto })
  @ApiForbiddenResponse({ description: 'The token belongs to another session', type: ErrorResponseDto })
  reissue(@Param('sessionId', new IdParamPipe('sessionId')) sessionId: string): Promise<SessionTokenResponseDto> {
    return this.answer(sessionId);
  }

  private async answer(sessionId: string): Promise<SessionTokenResponseDto> {
    const { token, expiresAt } = await this.tokens.issue(sessionId);
    return { sessionId, token, expiresAt: expiresAt.toISOString() };
  }
}
