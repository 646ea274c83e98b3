import type { IncomingMessage } from 'node:http';
import proxyaddr from 'proxy-addr';
import type { TrustProxy } from '../config/trust-proxy';

/**
 * The client's address for per-address limits, derived exactly as Express derives `req.ip`: the
 * connecting peer, or, through each trusted proxy in turn, the next `X-Forwarded-For` hop. Used for
 * HTTP upgrades and Socket.IO handshakes, whose requests Express never sees; Express itself is given
 * the same compiled trust function, so every transport agrees.
 */
export function clientAddress(request: IncomingMessage, trust: TrustProxy): string {
  // proxy-addr reads `req.connection`, which Node keeps as an alias of `req.socket`.
  return proxyaddr(request, trust);
}
