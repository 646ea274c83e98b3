import { AppConfig } from '../config/app-config';

/**
 * The largest request body (HTTP JSON) or Socket.IO message accepted: a maximal message in its
 * longest JSON form (every UTF-16 unit written as a 6-byte `\uXXXX` escape, which is how some
 * clients send non-ASCII text) plus room for the other fields. Anything larger cannot be valid.
 */
export function bodyLimitBytes(config: AppConfig): number {
  return config.limits.maxMessageChars * 6 + 16 * 1024;
}
