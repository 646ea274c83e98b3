import { ApiProperty } from '@nestjs/swagger';

/** A session token and when it stops working; what POST /sessions and POST /sessions/:id/token answer. */
export class SessionTokenResponseDto {
  @ApiProperty({ example: 'b6f1c1a2-3c1e-4d7f-9a55-0c1f2e3d4a5b' })
  sessionId: string;
  @ApiProperty({
    description:
      'Send as `Authorization: Bearer <token>` and in the Socket.IO handshake `auth.token`. Stops working at expiresAt ' +
      'or when the session is deleted; get a fresh one before then with POST /sessions/{sessionId}/token.',
    example: 'b6f1c1a2-3c1e-4d7f-9a55-0c1f2e3d4a5b.t5kq3c.kX9...',
  })
  token: string;
  @ApiProperty({ description: 'When the token expires (ISO 8601, UTC)', example: '2026-12-25T12:00:00.000Z' })
  expiresAt: string;
}
