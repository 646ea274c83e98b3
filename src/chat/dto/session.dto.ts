import { ApiProperty } from '@nestjs/swagger';

export class CreateSessionResponseDto {
  @ApiProperty({ example: 'b6f1c1a2-3c1e-4d7f-9a55-0c1f2e3d4a5b' })
  sessionId: string;
  @ApiProperty({ description: 'Send as `Authorization: Bearer <token>` and in the Socket.IO handshake `auth.token`', example: 'b6f1c1a2-3c1e-4d7f-9a55-0c1f2e3d4a5b.kX9...' })
  token: string;
}
