import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsIn, IsNotEmpty, IsOptional, IsString, Matches, MaxLength } from 'class-validator';
import { THINK_LEVELS, ThinkLevel } from '../../event-bus/envelopes';
import { ID_PATTERN, ID_RULE } from '../../event-bus/stream-names';

/**
 * A message must show something: whitespace, control and format characters (zero-width space and
 * joiners, BOM, bidi marks, tags), variation selectors and the blank Hangul/Braille fillers alone
 * render as nothing and count as empty.
 */
const VISIBLE_CHARACTER = /[^\s\p{Cc}\p{Cf}\p{Variation_Selector}\u115F\u1160\u3164\uFFA0\u2800]/u;

/** Model names as Ollama and OpenAI-compatible servers spell them (`gpt-oss:20b`, `openai/gpt-oss-20b`). */
const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,199}$/;

/** The options of a message: a regenerate carries these alone. */
export class MessageOptionsDto {
  @ApiPropertyOptional({
    description: 'Makes the send idempotent: repeating it in the same session returns the same messageId and queues nothing new',
    example: 'c-0001',
  })
  @IsOptional()
  @IsString()
  @Matches(ID_PATTERN, { message: `clientMessageId ${ID_RULE}` })
  clientMessageId?: string;

  @ApiPropertyOptional({ description: 'gpt-oss reasoning effort', enum: THINK_LEVELS, example: 'low' })
  @IsOptional()
  @IsIn(THINK_LEVELS)
  think?: ThinkLevel;

  @ApiPropertyOptional({ description: 'A model of GET /models (default: the configured model)', example: 'gpt-oss:20b' })
  @IsOptional()
  @IsString()
  @Matches(MODEL_NAME, { message: 'model must be a model name of GET /models' })
  model?: string;
}

/** Fields a message carries, over HTTP and Socket.IO alike. */
export class MessageInputDto extends MessageOptionsDto {
  @ApiProperty({
    description: 'The user message (at most MAX_MESSAGE_CHARS characters)',
    example: 'Explain Redis Streams in two sentences.',
  })
  @IsString()
  // The length limit (MAX_MESSAGE_CHARS) is a runtime setting, checked by ChatService.
  @Matches(VISIBLE_CHARACTER, { message: 'content must not be empty' })
  content: string;
}

export class SendMessageDto extends MessageInputDto {
  @ApiProperty({ description: 'Session id from POST /sessions', example: 'b6f1c1a2-3c1e-4d7f-9a55-0c1f2e3d4a5b' })
  @IsString()
  @IsNotEmpty()
  @MaxLength(64)
  @Matches(ID_PATTERN, { message: `sessionId ${ID_RULE}` })
  sessionId: string;
}

export class SendMessageResponseDto {
  @ApiProperty({ example: '0a7d6c1e-9d8b-4f1e-8f5e-2b9c3d4e5f60' })
  messageId: string;
  @ApiProperty({ example: 'b6f1c1a2-3c1e-4d7f-9a55-0c1f2e3d4a5b' })
  sessionId: string;
  @ApiProperty({ enum: ['queued'], example: 'queued' })
  status: 'queued';
  @ApiPropertyOptional({ description: 'Regenerate and edit: the message this one replaced (question and answer)' })
  replaces?: string;
}

/** Socket.IO `chat.regenerate`: the session's last message asked again. */
export class RegenerateMessageDto extends MessageOptionsDto {
  @ApiProperty({ description: "The session's last message (it must have ended)", example: '0a7d6c1e-9d8b-4f1e-8f5e-2b9c3d4e5f60' })
  @IsString()
  @Matches(ID_PATTERN, { message: `messageId ${ID_RULE}` })
  messageId: string;
}

/** Socket.IO `chat.edit`: the session's last message replaced by new text. */
export class EditMessageDto extends MessageInputDto {
  @ApiProperty({ description: "The session's last message (it must have ended)", example: '0a7d6c1e-9d8b-4f1e-8f5e-2b9c3d4e5f60' })
  @IsString()
  @Matches(ID_PATTERN, { message: `messageId ${ID_RULE}` })
  messageId: string;
}
