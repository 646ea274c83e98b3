import { INestApplicationContext } from '@nestjs/common';
import { IoAdapter } from '@nestjs/platform-socket.io';
import type { IncomingMessage } from 'node:http';
import type { Server, ServerOptions } from 'socket.io';
import { AppConfig } from '../config/app-config';
import { ConnectionCaps } from '../limits/connection-caps';
import { bodyLimitBytes } from './body-limit';
import { clientAddress } from './client-address';

/** An engine.io connection that has joined no namespace by then is closed. */
const CONNECT_TIMEOUT_MS = 10_000;

/**
 * Socket.IO with the service's CORS origins, a capped message size, a cap on open connections per
 * client address (counted per engine.io connection, before any namespace or auth), and the default
 * namespace `/` closed: only `/chat` serves anything.
 */
export class ConfiguredIoAdapter extends IoAdapter {
  constructor(
    app: INestApplicationContext,
    private readonly config: AppConfig,
    private readonly caps: ConnectionCaps,
  ) {
    super(app);
  }

  override createIOServer(port: number, options?: ServerOptions): Server {
    const origins = this.config.http.corsOrigins;
    const addressOf = (request: IncomingMessage) => clientAddress(request, this.config.http.trustProxy);
    const configured: Partial<ServerOptions> = {
      ...options,
      maxHttpBufferSize: bodyLimitBytes(this.config),
      connectTimeout: CONNECT_TIMEOUT_MS,
      // Refused before a session is created: the client sees an HTTP 403 on its handshake.
      allowRequest: (request, callback) => {
        const full = !this.caps.addressHasRoom(addressOf(request));
        callback(full ? 'too many connections from this address' : null, !full);
      },
      ...(origins ? { cors: { origin: origins, credentials: true } } : {}),
    };
    // IoAdapter fills in the defaults for whatever is left out.
    const server = super.createIOServer(port, configured as ServerOptions);
    // allowRequest only looks; the place is taken per connection (concurrent handshakes may all
    // have looked before any took one) and given back when it closes.
    server.engine.on('connection', (raw: { request: IncomingMessage; close(): void; once(event: 'close', listener: () => void): void }) => {
      const release = this.caps.takeAddress(addressOf(raw.request));
      if (!release) {
        raw.close();
        return;
      }
      raw.once('close', release);
    });
    server.of('/').use((_socket, next) => next(new Error('unknown namespace: connect to /chat')));
    return server;
  }
}
