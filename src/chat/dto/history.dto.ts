import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { MESSAGE_STATUSES, MessageStatus } from '../../history/stored-message';

export class FailureReasonDto {
  @ApiProperty({ example: 'model_not_found' })
  code: string;
  @ApiProperty({
    example:
      'The model "gpt-oss:20b" is not available on the Ollama server at http://localhost:11434. Pull it with `ollama pull gpt-oss:20b`.',
  })
  message: string;
}

export class UsageDto {
  @ApiProperty({ example: 42 })
  promptTokens: number;
  @ApiProperty({ example: 128 })
  completionTokens: number;
}

export class HistoryMessageDto {
  @ApiProperty({ description: 'A user message and its reply share the messageId', example: '0a7d6c1e-9d8b-4f1e-8f5e-2b9c3d4e5f60' })
  messageId: string;
  @ApiProperty({ enum: ['user', 'assistant'] })
  role: 'user' | 'assistant';
  @ApiProperty({ example: 'Redis Streams are an append-only log...' })
  content: string;
  @ApiProperty({ enum: MESSAGE_STATUSES, description: 'State of the message (the same on its user and assistant entries)' })
  status: MessageStatus;
  @ApiProperty({ example: '2026-11-25T12:00:00.000Z' })
  createdAt: string;
  @ApiPropertyOptional({ description: 'gpt-oss reasoning text' })
  thinking?: string;
  @ApiPropertyOptional({ type: FailureReasonDto })
  error?: FailureReasonDto;
  @ApiPropertyOptional({ description: 'User: the model asked for (absent: the default); assistant: the model that answered' })
  model?: string;
  @ApiPropertyOptional({ type: UsageDto, description: 'A completed answer: its token counts, as in chat.completed' })
  usage?: UsageDto;
  @ApiPropertyOptional({ description: "An answer: older messages were left out of its context to fit the model's window" })
  contextOmitted?: boolean;
  @ApiPropertyOptional({ description: 'On an answer still streaming: the eventId its partial content reaches' })
  resumeFrom?: string;
}

export class HistoryResponseDto {
  @ApiProperty()
  sessionId: string;
  @ApiProperty({ type: [HistoryMessageDto], description: 'Oldest first' })
  messages: HistoryMessageDto[];
  @ApiProperty({
    nullable: true,
    type: String,
    description: 'Resume the live events after this id (Socket.IO auth.lastEventId, SSE Last-Event-ID) to continue where this history ends',
  })
  lastEventId: string | null;
  @ApiPropertyOptional({ description: 'A short title the model wrote after the first answer' })
  title?: string;
}

export class ErrorResponseDto {
  @ApiProperty({ example: 400 })
  statusCode: number;
  @ApiProperty({ example: 'Bad Request' })
  error: string;
  @ApiProperty({ example: 'content must not be empty' })
  message: string;
}
