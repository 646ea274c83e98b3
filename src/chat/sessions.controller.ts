import { Controller, HttpCode, Post } from '@nestjs/common';
import { ApiCreatedResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { randomUUID } from 'node:crypto';
import { SessionTokens } from '../auth/session-tokens.service';
import { CreateSessionResponseDto } from './dto/session.dto';

@ApiTags('sessions')
@Controller('sessions')
export class SessionsController {
  constructor(private readonly tokens: SessionTokens) {}

  @Post()
  @HttpCode(201)
  @ApiOperation({ summary: 'Start a chat session', description: 'Returns a new session id and the token that grants access to it.' })
  @ApiCreatedResponse({ type: CreateSessionResponseDto })
  async create(): Promise<CreateSessionResponseDto> {
    const sessionId = randomUUID();
    return { sessionId, token: await this.tokens.issue(sessionId) };
  }
}
