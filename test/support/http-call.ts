import { expect } from '@jest/globals';
/** HTTP helpers for the bad-input suites: a request with the contract's error shape checked. */

export const REASONS: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  409: 'Conflict',
  413: 'Payload Too Large',
  429: 'Too Many Requests',
  503: 'Service Unavailable',
};

/** What must never reach a client: stack frames, file paths, error internals. */
export const LEAK = /\bat [\w$.<>[\]]+ \(|\bat (file|node):|node_modules|\/dist\/|\/src\/|\.[cm]?[jt]s:\d+|"stack"|"cause"|"name":/;

export interface CallOptions {
  /** Sent as `Authorization: Bearer <token>`. */
  token?: string | null;
  /** The literal Authorization header (null: none); wins over `token`. */
  authorization?: string | null;
  /** Extra request headers. */
  headers?: Record<string, string>;
  json?: unknown;
  raw?: string;
  contentType?: string;
}

export interface Reply {
  status: number;
  headers: Headers;
  text: string;
  body: Record<string, unknown> | null;
}

export async function call(baseUrl: string, method: string, path: string, options: CallOptions = {}): Promise<Reply> {
  const headers: Record<string, string> = { ...options.headers };
  let body: string | undefined;
  if (options.raw !== undefined) {
    body = options.raw;
    headers['content-type'] = options.contentType ?? 'application/json';
  } else if (options.json !== undefined) {
    body = JSON.stringify(options.json);
    headers['content-type'] = options.contentType ?? 'application/json';
  }
  if (options.authorization !== undefined) {
    if (options.authorization !== null) headers.authorization = options.authorization;
  } else if (options.token) {
    headers.authorization = `Bearer ${options.token}`;
  }
  const res = await fetch(`${baseUrl}${path}`, { method, headers, body });
  const text = await res.text();
  let parsed: Record<string, unknown> | null = null;
  try {
    parsed = text ? (JSON.parse(text) as Record<string, unknown>) : null;
  } catch {
    parsed = null;
  }
  return { status: res.status, headers: res.headers, text, body: parsed };
}

/** The contract's error answer: status, JSON content type, exactly {statusCode, error, message}, nothing internal. */
export function expectError(reply: Reply, status: number, message: RegExp, label = ''): void {
  expect({ label, status: reply.status, body: reply.body }).toEqual({
    label,
    status,
    body: { statusCode: status, error: REASONS[status], message: expect.stringMatching(message) },
  });
  expect(reply.headers.get('content-type')).toMatch(/^application\/json/);
  expect(reply.text).not.toMatch(LEAK);
}

/** A Socket.IO acknowledgement carrying the contract's error. */
export function expectAckError(ack: unknown, status: number, message: RegExp): void {
  expect(ack).toEqual({ error: { statusCode: status, error: REASONS[status], message: expect.stringMatching(message) } });
  expect(JSON.stringify(ack)).not.toMatch(LEAK);
}
