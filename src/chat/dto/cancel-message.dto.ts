import { ApiProperty } from '@nestjs/swagger';
import { IsString, Matches } from 'class-validator';
import { ID_PATTERN, ID_RULE } from '../../event-bus/stream-names';

/** Payload of the socket's `chat.cancel`. */
export class CancelMessageDto {
  @ApiProperty({ example: '0a7d6c1e-9d8b-4f1e-8f5e-2b9c3d4e5f60' })
  @IsString()
  @Matches(ID_PATTERN, { message: `messageId ${ID_RULE}` })
  messageId: string;
}
