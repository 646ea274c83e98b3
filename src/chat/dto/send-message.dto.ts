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

/** Fields a message carries, over HTTP and Socket.IO alike. */
export class MessageInputDto {
  @ApiProperty({
    description: 'The user message (at most MAX_MESSAGE_CHARS characters)',
    example: 'Explain Redis Streams in two sentences.',
  })
  @IsString()
  // The length limit (MAX_MESSAGE_CHARS) is a runtime setting, checked by ChatService.
  @Matches(VISIBLE_CHARACTER, { message: 'content must not be empty' })
  content: string;

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
}
