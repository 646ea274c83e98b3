import { CanActivate, ExecutionContext, ForbiddenException, Injectable, UnauthorizedException } from '@nestjs/common';
import type { Request } from 'express';
import { isValidId } from '../event-bus/stream-names';
import { SessionTokens } from './session-tokens.service';

/**
 * HTTP auth for `/chat/...`: `Authorization: Bearer <token>` must belong to the session named by the
 * `:sessionId` route parameter or the body's `sessionId`. A malformed session id is left to the
 * validation pipe (400); a missing/wrong token is 401, another session's token 403.
 */
@Injectable()
export class SessionAuthGuard implements CanActivate {
  constructor(private readonly tokens: SessionTokens) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    if (!this.tokens.enabled) return true;
    const request = context.switchToHttp().getRequest<Request>();
    const header = request.headers.authorization;
    // Browsers' EventSource cannot set headers: a `token` query parameter is accepted too.
    const query: unknown = request.query?.token;
    const token = typeof header === 'string' && header.startsWith('Bearer ') ? header.slice(7).trim() : typeof query === 'string' ? query : null;
    if (!token) throw new UnauthorizedException('missing bearer token: send Authorization: Bearer <token from POST /sessions>');
    const fromParams: unknown = request.params?.sessionId;
    const body: unknown = request.body;
    const fromBody: unknown = typeof body === 'object' && body !== null ? (body as Record<string, unknown>).sessionId : undefined;
    const sessionId = fromParams ?? fromBody;
    const owner = await this.tokens.ownerOf(token);
    if (owner === null) throw new UnauthorizedException('invalid token');
    // A malformed session id is reported by validation (400) once the caller is known to hold a token.
    if (isValidId(sessionId) && owner !== sessionId) throw new ForbiddenException('this token belongs to another session');
    return true;
  }
}
