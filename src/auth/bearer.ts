/**
 * RFC 7235: the auth scheme is case-insensitive and separated from its credentials by one or more
 * spaces; surrounding whitespace is not part of either. `bearer x`, `BEARER  x` and `Bearer x` are
 * one and the same.
 */
const BEARER = /^[ \t]*bearer(?:[ \t]+(.*?))?[ \t]*$/i;

/** The token of a Bearer Authorization header; null when there is none (no header, another scheme, no token). */
export function bearerToken(header: unknown): string | null {
  if (typeof header !== 'string') return null;
  const token = BEARER.exec(header)?.[1];
  return token ? token : null;
}
