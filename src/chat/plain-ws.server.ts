import { Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer } from 'ws';
import { SessionTokens } from '../auth/session-tokens.service';
import { isValidId } from '../event-bus/stream-names';
import { isStreamId } from '../event-bus/stream-reply';
import { resyncPayload } from './chat.gateway';
import { ResumableEvents } from './resumable-events';
import { Metrics } from '../observability/metrics.service';

const PATH = /^\/ws\/([^/?#]+)\/?$/;

/**
 * `ws://HOST:PORT/ws/:sessionId?token=...[&lastEventId=...]`: the session's events as JSON text
 * frames `{"event": name, ...payload}`, for clients without Socket.IO (`wscat`). Same auth and
 * resume rules as the other ways in. Upgrades on other paths are left to Socket.IO.
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
      // Valid ids never need decoding: the raw segment is checked as it is.
      const sessionId = match[1];
      const url = new URL(raw.replace(/^\/+/, '/'), 'http://localhost');
      const lastEventId = url.searchParams.get('lastEventId');
      if (!isValidId(sessionId)) return reject(socket, 400, 'Bad Request');
      if (lastEventId !== null && !isStreamId(lastEventId)) return reject(socket, 400, 'Bad Request');
      const check = await this.tokens.verify(sessionId, url.searchParams.get('token'));
      if (check === 'unauthorized') return reject(socket, 401, 'Unauthorized');
      if (check === 'forbidden') return reject(socket, 403, 'Forbidden');
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
    ws.on('pong', () => this.alive.add(ws));
    this.metrics.connectedClients.inc({ transport: 'websocket' });
    ws.on('close', () => {
      this.metrics.connectedClients.dec({ transport: 'websocket' });
      detach();
    });
    ws.on('message', () => send({ event: 'error', message: 'this endpoint only sends events; use POST /chat/send' }));
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

function reject(socket: Duplex, status: number, text: string): void {
  socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
}
