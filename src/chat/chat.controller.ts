import { Body, Controller, Delete, Get, HttpCode, Ip, Param, Post, UseGuards } from '@nestjs/common';
import {
  ApiAcceptedResponse,
  ApiBadRequestResponse,
  ApiBearerAuth,
  ApiBody,
  ApiConflictResponse,
  ApiForbiddenResponse,
  ApiNoContentResponse,
  ApiNotFoundResponse,
  ApiOkResponse,
  ApiOperation,
  ApiParam,
  ApiServiceUnavailableResponse,
  ApiTags,
  ApiTooManyRequestsResponse,
  ApiUnauthorizedResponse,
} from '@nestjs/swagger';
import { SessionAuthGuard } from '../auth/session-auth.guard';
import { SessionTokens } from '../auth/session-tokens.service';
import { ChatService } from './chat.service';
import { ErrorResponseDto, HistoryResponseDto } from './dto/history.dto';
import { MessageInputDto, MessageOptionsDto, SendMessageDto, SendMessageResponseDto } from './dto/send-message.dto';
import { IdParamPipe } from './session-id.pipe';

@ApiTags('chat')
@ApiBearerAuth()
@ApiUnauthorizedResponse({ description: 'Missing or invalid token', type: ErrorResponseDto })
@ApiForbiddenResponse({ description: 'The token belongs to another session', type: ErrorResponseDto })
@ApiServiceUnavailableResponse({ description: 'Redis is unreachable; retry shortly', type: ErrorResponseDto })
@UseGuards(SessionAuthGuard)
@Controller('chat')
export class ChatController {
  constructor(
    private readonly chat: ChatService,
    private readonly tokens: SessionTokens,
  ) {}

  @Post('send')
  @HttpCode(202)
  @ApiOperation({
    summary: 'Send a message',
    description:
      "Queues the message for an AI worker. The answer streams to the session's Socket.IO room (namespace /chat) " +
      'as chat.started, chat.thinking, chat.delta and finally chat.completed, chat.failed or chat.cancelled.',
  })
  @ApiAcceptedResponse({ type: SendMessageResponseDto })
  @ApiBadRequestResponse({ description: 'Invalid input; the message names the field', type: ErrorResponseDto })
  @ApiTooManyRequestsResponse({ description: 'Rate limit of the session or the address; see Retry-After', type: ErrorResponseDto })
  send(@Body() body: SendMessageDto, @Ip() address: string): Promise<SendMessageResponseDto> {
    return this.chat.send({ ...body, address });
  }

  @Get(':sessionId/history')
  @ApiOperation({ summary: 'The conversation so far, oldest first' })
  @ApiParam({ name: 'sessionId' })
  @ApiOkResponse({ type: HistoryResponseDto })
  async history(@Param('sessionId', new IdParamPipe('sessionId')) sessionId: string): Promise<HistoryResponseDto> {
    return { sessionId, ...(await this.chat.getHistory(sessionId)) };
  }

  @Post(':sessionId/messages/:messageId/cancel')
  @HttpCode(202)
  @ApiOperation({
    summary: 'Stop a message',
    description:
      'A queued message never starts; a running one has its Ollama request aborted at once and ends with chat.cancelled, ' +
      'its partial answer kept in the history (status cancelled). A message that already ended is left as it is.',
  })
  @ApiParam({ name: 'sessionId' })
  @ApiParam({ name: 'messageId' })
  @ApiAcceptedResponse({ description: 'Cancel requested' })
  @ApiNotFoundResponse({ description: 'No such message in this session', type: ErrorResponseDto })
  async cancel(
    @Param('sessionId', new IdParamPipe('sessionId')) sessionId: string,
    @Param('messageId', new IdParamPipe('messageId')) messageId: string,
  ): Promise<void> {
    await this.chat.cancel(sessionId, messageId);
  }

  @Post(':sessionId/messages/:messageId/regenerate')
  @HttpCode(202)
  @ApiOperation({
    summary: 'Regenerate the last answer',
    description:
      "Asks the session's last message again, as a new message that replaces it (question and answer) in the history: " +
      'every tab gets chat.user_message with `replaces`, then the new answer streams. The message must be the last and have ended. ' +
      'think and model default to the replaced message’s; clientMessageId makes it idempotent.',
  })
  @ApiParam({ name: 'sessionId' })
  @ApiParam({ name: 'messageId' })
  @ApiAcceptedResponse({ type: SendMessageResponseDto })
  @ApiNotFoundResponse({ description: 'No such message in this session', type: ErrorResponseDto })
  @ApiConflictResponse({ description: 'The message is no longer the last, or has not ended', type: ErrorResponseDto })
  @ApiBadRequestResponse({ description: 'Invalid input; the message names the field', type: ErrorResponseDto })
  @ApiTooManyRequestsResponse({ description: 'Rate limit of the session or the address; see Retry-After', type: ErrorResponseDto })
  @ApiBody({ type: MessageOptionsDto, required: false })
  regenerate(
    @Param('sessionId', new IdParamPipe('sessionId')) sessionId: string,
    @Param('messageId', new IdParamPipe('messageId')) messageId: string,
    @Body() body: MessageOptionsDto,
    @Ip() address: string,
  ): Promise<SendMessageResponseDto> {
    return this.chat.regenerate({ ...body, sessionId, messageId, address });
  }

  @Post(':sessionId/messages/:messageId/edit')
  @HttpCode(202)
  @ApiOperation({
    summary: 'Edit the last message',
    description:
      "Replaces the session's last message (question and answer) with new text, answered as a new message: every tab gets " +
      'chat.user_message with `replaces`. The message must be the last and have ended; clientMessageId makes it idempotent.',
  })
  @ApiParam({ name: 'sessionId' })
  @ApiParam({ name: 'messageId' })
  @ApiAcceptedResponse({ type: SendMessageResponseDto })
  @ApiBadRequestResponse({ description: 'Invalid input; the message names the field', type: ErrorResponseDto })
  @ApiNotFoundResponse({ description: 'No such message in this session', type: ErrorResponseDto })
  @ApiConflictResponse({ description: 'The message is no longer the last, or has not ended', type: ErrorResponseDto })
  @ApiTooManyRequestsResponse({ description: 'Rate limit of the session or the address; see Retry-After', type: ErrorResponseDto })
  edit(
    @Param('sessionId', new IdParamPipe('sessionId')) sessionId: string,
    @Param('messageId', new IdParamPipe('messageId')) messageId: string,
    @Body() body: MessageInputDto,
    @Ip() address: string,
  ): Promise<SendMessageResponseDto> {
    return this.chat.edit({ ...body, sessionId, messageId, address });
  }

  @Delete(':sessionId')
  @HttpCode(204)
  @ApiOperation({
    summary: 'Delete the conversation',
    description: 'Clears the history, stops what is still queued or running, and revokes the session: its tokens stop working everywhere.',
  })
  @ApiParam({ name: 'sessionId' })
  @ApiNoContentResponse({ description: 'History cleared, tokens revoked' })
  async clear(@Param('sessionId', new IdParamPipe('sessionId')) sessionId: string): Promise<void> {
    // The revocation is part of the delete's one script: tokens and text go together.
    await this.chat.clear(sessionId, this.tokens.revocationSeconds);
  }
}
