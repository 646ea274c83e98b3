import { Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer } from 'ws';
import { clientAddress } from '../app/client-address';
import { SessionTokens } from '../auth/session-tokens.service';
import { AppConfig } from '../config/app-config';
import { isValidId } from '../event-bus/stream-names';
import { isStreamId } from '../event-bus/stream-reply';
import { ConnectionCaps } from '../limits/connection-caps';
import { EventBucket } from '../limits/event-bucket';
import { resyncPayload } from './chat.gateway';
import { ResumableEvents } from './resumable-events';
import { Metrics } from '../observability/metrics.service';

const PATH = /^\/ws\/([^/?#]+)\/?$/;

/** A socket that keeps sending this many refused events in a row is closed: it is not a client slowing down. */
const REFUSALS_PER_BURST_BEFORE_CLOSE = 3;

/**
 * `ws://HOST:PORT/ws/:sessionId?token=...[&lastEventId=...]`: the session's events as JSON text
 * frames `{"event": name, ...payload}`, for clients without Socket.IO (`wscat`). Same auth and
 * resume rules as the other ways in. Upgrades on other paths are left to Socket.IO.
 *
 * Whatever a client does ends at its own socket: bad frames close it with the code ws assigns
 * (1009 too big, 1007 not UTF-8, 1002 protocol error), floods close it with 1008, and every socket
 * has an 'error' listener from the moment the upgrade is ours, since an 'error' event without one
 * throws and would take the whole process with it.
 */
@Injectable()
export class PlainWsServer implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(PlainWsServer.name);
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: 4096 });
  private server: Server | null = null;
  private readonly onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => void this.upgrade(req, socket, head);

  constructor(
    private readonly adapterHost: HttpAdapterHost,
    private readonly tokens: SessionTokens,
    private readonly resumable: ResumableEvents,
    private readonly metrics: Metrics,
    private readonly caps: ConnectionCaps,
    private readonly config: AppConfig,
  ) {}

  private heartbeat: NodeJS.Timeout | null = null;
  private readonly alive = new WeakSet<WebSocket>();

  onApplicationBootstrap(): void {
    // A client that does not answer a ping within 30 s is gone (half-open): drop it and its listener.
    this.heartbeat = setInterval(() => {
      for (const client of this.wss.clients) {
        if (!this.alive.has(client)) {
          client.terminate();
          continue;
        }
        this.alive.delete(client);
        client.ping();
      }
    }, 30_000);
    this.heartbeat.unref();
    const server: unknown = this.adapterHost.httpAdapter?.getHttpServer();
    if (!server || typeof (server as Server).on !== 'function') return; // no HTTP server (worker process)
    this.server = server as Server;
    this.server.on('upgrade', this.onUpgrade);
  }

  onApplicationShutdown(): void {
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.server?.off('upgrade', this.onUpgrade);
    for (const client of this.wss.clients) client.close(1001, 'server shutting down');
    this.wss.close();
  }

  private async upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    // Anything thrown here would be an unhandled rejection: every step stays inside the try.
    try {
      const raw = req.url ?? '/';
      const match = PATH.exec(raw.split('?')[0]);
      if (!match) return; // Socket.IO's path, or nothing of ours
      // Node's HTTP server drops its own 'error' listener when it hands over an upgrade, and a client
      // may reset the connection while its token is checked: without a listener that error throws.
      // It stays for the socket's life; ws adds its own once the upgrade is done.
      socket.on('error', (err) => this.logger.debug(`ws upgrade socket error: ${err.message}`));
      // Valid ids never need decoding: the raw segment is checked as it is.
      const sessionId = match[1];
      const url = new URL(raw.replace(/^\/+/, '/'), 'http://localhost');
      const lastEventId = url.searchParams.get('lastEventId');
      if (!isValidId(sessionId)) return reject(socket, 400, 'Bad Request');
      if (lastEventId !== null && !isStreamId(lastEventId)) return reject(socket, 400, 'Bad Request');
      const check = await this.tokens.verify(sessionId, url.searchParams.get('token'));
      if (check === 'unauthorized') return reject(socket, 401, 'Unauthorized');
      if (check === 'forbidden') return reject(socket, 403, 'Forbidden');
      if (socket.destroyed) return; // gone while its token was checked: no place to take
      const release = this.caps.takeBoth(clientAddress(req, this.config.http.trustProxy), sessionId);
      if (typeof release !== 'function') return reject(socket, 429, 'Too Many Requests');
      // Tied to the TCP socket, not the WebSocket: ws destroys a socket it cannot upgrade without
      // ever calling back, and the place must come back then too.
      socket.once('close', release);
      this.wss.handleUpgrade(req, socket, head, (ws) => void this.serve(ws, sessionId, lastEventId));
    } catch (err) {
      this.logger.warn(`ws handshake failed: ${(err as Error).message}`);
      reject(socket, 503, 'Service Unavailable');
    }
  }

  private async serve(ws: WebSocket, sessionId: string, lastEventId: string | null): Promise<void> {
    const send = (frame: object) => {
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(frame));
    };
    let detach: () => void = () => undefined;
    this.alive.add(ws);
    // A bad frame (over maxPayload, invalid UTF-8, unmasked...): ws has already started closing the
    // socket with the matching code. Debug level: a client can cause one per connection it opens.
    ws.on('error', (err) => this.logger.debug(`ws ${sessionId}: ${err.message}`));
    ws.on('pong', () => this.alive.add(ws));
    this.metrics.connectedClients.inc({ transport: 'websocket' });
    ws.on('close', () => {
      this.metrics.connectedClients.dec({ transport: 'websocket' });
      detach();
    });
    const { socketEventsPerMinute, socketEventBurst } = this.config.limits;
    const bucket = new EventBucket(socketEventsPerMinute, socketEventBurst);
    ws.on('message', () => {
      if (ws.readyState !== WebSocket.OPEN) return; // frames already read when we closed it
      // Every message counts, and one over the limit gets no answer: answering is the cost saved.
      if (bucket.take()) return send({ event: 'error', message: 'this endpoint only sends events; use POST /chat/send' });
      if (bucket.refusedInARow > REFUSALS_PER_BURST_BEFORE_CLOSE * socketEventBurst) ws.close(1008, 'too many messages');
    });
    try {
      detach = await this.resumable.open(sessionId, lastEventId, {
        deliver: (event) => send({ event: event.type, ...event.payload, eventId: event.eventId }),
        resync: () => send({ event: 'chat.resync', ...resyncPayload(sessionId) }),
      });
      if (ws.readyState !== WebSocket.OPEN) detach();
    } catch (err) {
      this.logger.warn(`ws replay for session ${sessionId} failed: ${(err as Error).message}`);
      ws.close(1011, 'replay failed');
    }
  }
}

/**
 * An HTTP answer to an upgrade we refuse, then the socket is closed once it is written (as ws's own
 * refusals do): upgraded sockets have no HTTP timeouts, so one left open would stay open. A socket
 * the client already reset or ended gets nothing.
 */
function reject(socket: Duplex, status: number, text: string): void {
  if (socket.destroyed || !socket.writable) {
    socket.destroy();
    return;
  }
  socket.once('finish', () => socket.destroy());
  socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
}
