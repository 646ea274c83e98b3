import { CanActivate, ExecutionContext, ForbiddenException, Injectable, UnauthorizedException } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { Request } from 'express';
import { isValidId } from '../event-bus/stream-names';
import { ALLOW_QUERY_TOKEN } from './allow-query-token.decorator';
import { bearerToken } from './bearer';
import { SessionTokens, TokenRefusal } from './session-tokens.service';

const REFUSALS: Record<TokenRefusal, string> = {
  invalid: 'invalid token',
  expired: 'invalid token: it has expired; start a new session (POST /sessions)',
  revoked: 'invalid token: its session was deleted',
};

/**
 * HTTP auth for `/chat/...` and `/sessions/:sessionId/...`: `Authorization: Bearer <token>` must
 * belong to the session named by the `:sessionId` route parameter or the body's `sessionId`. A
 * malformed session id is left to the validation pipe (400); a missing, bad, expired or revoked
 * token is 401, another session's token 403. Only routes marked @AllowQueryToken() (EventSource
 * cannot send headers) also take `?token=`; elsewhere it is ignored.
 */
@Injectable()
export class SessionAuthGuard implements CanActivate {
  constructor(
    private readonly tokens: SessionTokens,
    private readonly reflector: Reflector,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    if (!this.tokens.enabled) return true;
    const request = context.switchToHttp().getRequest<Request>();
    const token = bearerToken(request.headers.authorization) ?? this.queryToken(context, request);
    if (!token) throw new UnauthorizedException('missing bearer token: send Authorization: Bearer <token from POST /sessions>');
    const fromParams: unknown = request.params?.sessionId;
    const body: unknown = request.body;
    const fromBody: unknown = typeof body === 'object' && body !== null ? (body as Record<string, unknown>).sessionId : undefined;
    const sessionId = fromParams ?? fromBody;
    const reading = await this.tokens.read(token);
    if ('refused' in reading) throw new UnauthorizedException(REFUSALS[reading.refused]);
    // A malformed session id is reported by validation (400) once the caller is known to hold a token.
    if (isValidId(sessionId) && reading.sessionId !== sessionId) throw new ForbiddenException('this token belongs to another session');
    return true;
  }

  private queryToken(context: ExecutionContext, request: Request): string | null {
    if (!this.reflector.get<boolean | undefined>(ALLOW_QUERY_TOKEN, context.getHandler())) return null;
    const query: unknown = request.query?.token;
    return typeof query === 'string' && query ? query : null;
  }
}
