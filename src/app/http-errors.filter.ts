import { ArgumentsHost, Catch, ExceptionFilter, HttpException, Logger } from '@nestjs/common';
import type { Response } from 'express';
import { isRedisUnavailable } from '../event-bus/redis-errors';
import { RetryLaterException } from '../limits/send-limits.service';

export interface ErrorBody {
  statusCode: number;
  error: string;
  message: string;
}

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  409: 'Conflict',
  413: 'Payload Too Large',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

/**
 * Errors of body-parser and Express (malformed JSON, a body too large, a bad percent-encoding)
 * carry a status and the parser's own text, which quotes the client's input: they get fixed
 * sentences. Nest hands them over wrapped in an HttpException whose cause is the original.
 */
function requestParseProblem(err: unknown): ErrorBody | null {
  const source = err instanceof HttpException ? err.cause : err;
  const status = (source as { status?: unknown } | null)?.status;
  if (!(source instanceof Error) || source instanceof HttpException || typeof status !== 'number' || status < 400 || status >= 500)
    return null;
  const type = (source as { type?: unknown }).type;
  const message =
    type === 'entity.parse.failed' || source instanceof SyntaxError
      ? 'malformed JSON body'
      : type === 'entity.too.large'
        ? 'request body too large'
        : source instanceof URIError
          ? 'malformed percent-encoding in the URL'
          : 'invalid request';
  return { statusCode: status, error: REASONS[status] ?? 'Error', message };
}

/** Turns any error into the contract's JSON shape; internals never leak to the client. */
export function toErrorBody(err: unknown): ErrorBody {
  const parseProblem = requestParseProblem(err);
  if (parseProblem) return parseProblem;
  if (err instanceof HttpException) {
    const status = err.getStatus();
    const response = err.getResponse();
    let message = err.message;
    if (typeof response === 'object' && response !== null) {
      const m = (response as { message?: unknown }).message;
      if (typeof m === 'string') message = m;
      else if (Array.isArray(m)) message = m.filter((x) => typeof x === 'string').join('; ');
    } else if (typeof response === 'string') {
      message = response;
    }
    return { statusCode: status, error: REASONS[status] ?? 'Error', message };
  }
  if (isRedisUnavailable(err)) {
    return { statusCode: 503, error: REASONS[503], message: 'The message store (Redis) is unavailable; retry shortly' };
  }
  return { statusCode: 500, error: REASONS[500], message: 'internal error' };
}

function isHealthReport(err: unknown): err is HttpException {
  if (!(err instanceof HttpException) || err.getStatus() !== 503) return false;
  const body = err.getResponse();
  return typeof body === 'object' && body !== null && 'details' in body && 'status' in body;
}

@Catch()
export class HttpErrorsFilter implements ExceptionFilter {
  private readonly logger = new Logger('HttpErrors');

  catch(err: unknown, host: ArgumentsHost): void {
    if (host.getType() !== 'http') return;
    const body = toErrorBody(err);
    if (body.statusCode >= 500) {
      const detail = err instanceof Error ? (err.stack ?? err.message) : String(err);
      if (body.statusCode === 503) this.logger.warn(`503: ${err instanceof Error ? err.message : String(err)}`);
      else this.logger.error(detail);
    }
    const response = host.switchToHttp().getResponse<Response>();
    if (isHealthReport(err)) {
      // Terminus' 503 body names each dependency and its state: that report is the answer.
      response.status(503).json(err.getResponse());
      return;
    }
    if (err instanceof RetryLaterException) response.setHeader('Retry-After', String(err.retryAfterSeconds));
    else if (body.statusCode === 503) response.setHeader('Retry-After', '2');
    response.status(body.statusCode).json(body);
  }
}
