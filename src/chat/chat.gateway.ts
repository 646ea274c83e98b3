import { BeforeApplicationShutdown, Logger, OnApplicationShutdown } from '@nestjs/common';
import {
  ConnectedSocket,
  MessageBody,
  OnGatewayConnection,
  OnGatewayDisconnect,
  OnGatewayInit,
  SubscribeMessage,
  WebSocketGateway,
  WebSocketServer,
} from '@nestjs/websockets';
import type { Namespace, Socket } from 'socket.io';
import { toErrorBody, ErrorBody } from '../app/http-errors.filter';
import { validatePayload } from '../app/validation';
import { SessionTokens } from '../auth/session-tokens.service';
import { ChatEventMap, ChatEventType, DeliveredEvent } from '../event-bus/envelopes';
import { isValidId } from '../event-bus/stream-names';
import { isStreamId } from '../event-bus/stream-reply';
import { ResumableEvents } from './resumable-events';
import { Metrics } from '../observability/metrics.service';
import { AppConfig } from '../config/app-config';
import { clientAddress } from '../app/client-address';
import { ConnectionCaps, Release } from '../limits/connection-caps';
import { EventBucket } from '../limits/event-bucket';
import { ChatEventsRelay } from './chat-events.relay';
import { ChatService } from './chat.service';
import { CancelMessageDto } from './dto/cancel-message.dto';
import { EditMessageDto, MessageInputDto, RegenerateMessageDto } from './dto/send-message.dto';

/** Sent instead of a replay when the events after the client's lastEventId are gone. */
export interface ResyncPayload {
  sessionId: string;
  reason: 'events_expired';
  message: string;
}

/** What the server emits: each event's payload plus its eventId. A wrong payload does not compile. */
export type ServerToClientEvents = { [K in ChatEventType]: (payload: ChatEventMap[K] & { eventId: string }) => void } & {
  'chat.resync': (payload: ResyncPayload) => void;
};

interface SocketData {
  sessionId: string;
  lastEventId: string | null;
  /** Ends the socket's delivery: its place in the room or its resume, and its watch of the partition. */
  detach?: () => void;
  /** Gives back the socket's place under the session's connection cap. */
  release?: Release;
  /** When the handshake's token expires (ms); null without tokens. */
  tokenExpiresAt: number | null;
}

type ChatSocket = Socket<Record<string, never>, ServerToClientEvents, Record<string, never>, SocketData>;
type ChatNamespace = Namespace<Record<string, never>, ServerToClientEvents, Record<string, never>, SocketData>;

export const roomOf = (sessionId: string) => `session:${sessionId}`;

export function resyncPayload(sessionId: string): ResyncPayload {
  return {
    sessionId,
    reason: 'events_expired',
    message:
      'Some events after your lastEventId are no longer kept: reload GET /chat/:sessionId/history, then resume from its lastEventId.',
  };
}

/**
 * Socket.IO namespace /chat. Auth happens in the handshake middleware (before any room is joined);
 * a socket only ever receives, sends and cancels within its own session: events reach it through
 * its session's room, or, when it resumes from a lastEventId, through the session hub.
 */
@WebSocketGateway({ namespace: '/chat' })
export class ChatGateway
  implements OnGatewayInit, OnGatewayConnection, OnGatewayDisconnect, BeforeApplicationShutdown, OnApplicationShutdown
{
  private readonly logger = new Logger(ChatGateway.name);
  private stopping = false;
  /** Engine.io connections that have (or are opening) a /chat socket. */
  private readonly chatConnections = new WeakSet<object>();
  @WebSocketServer() private server: ChatNamespace;

  constructor(
    private readonly tokens: SessionTokens,
    private readonly chat: ChatService,
    private readonly relay: ChatEventsRelay,
    private readonly resumable: ResumableEvents,
    private readonly metrics: Metrics,
    private readonly config: AppConfig,
    private readonly caps: ConnectionCaps,
  ) {}

  afterInit(server: ChatNamespace): void {
    server.use((socket, next) => {
      // One /chat socket per engine.io connection (socket.io-client opens a connection per socket of
      // a namespace): CONNECT packets pipelined on one connection would otherwise each pass the
      // handshake while counting once against the address's connection cap.
      if (this.chatConnections.has(socket.conn)) return next(new Error('already connected to /chat on this connection'));
      this.chatConnections.add(socket.conn);
      const done = (failure: string | null) => {
        if (failure) this.chatConnections.delete(socket.conn);
        next(failure ? new Error(failure) : undefined);
      };
      this.authenticate(socket).then(done, (err: unknown) => {
        this.logger.warn(`handshake check failed: ${(err as Error).message}`);
        done('unavailable');
      });
    });
    this.relay.onEvent((event) => this.emit(event));
  }

  /**
   * Only sockets that passed the middleware get here. Either way the relay watches the session's
   * partition first, so nothing written from then on can pass the socket by. Without lastEventId
   * the socket then joins its session's room (one broadcast per event). With it, the socket is
   * served by ResumableEvents: every event after that id, then the live ones, without gap or
   * duplicate.
   */
  async handleConnection(socket: ChatSocket): Promise<void> {
    this.limitEvents(socket);
    this.metrics.connectedClients.inc({ transport: 'socket.io' });
    const { sessionId, lastEventId } = socket.data;
    try {
      if (!lastEventId) {
        const unwatch = await this.relay.watch(sessionId);
        if (socket.disconnected) return unwatch(); // gone meanwhile: a dead socket must not join
        const room = roomOf(sessionId);
        // Joined in the same turn as the watch resolved: no event can be relayed in between.
        void socket.join(room);
        socket.data.detach = () => {
          unwatch();
          void socket.leave(room);
        };
      } else {
        socket.data.detach = await this.resumable.open(sessionId, lastEventId, {
          deliver: (event) => socket.emit(event.type, { ...event.payload, eventId: event.eventId }),
          resync: () => socket.emit('chat.resync', resyncPayload(sessionId)),
        });
      }
      if (socket.disconnected) socket.data.detach();
    } catch (err) {
      this.logger.warn(`opening the events of session ${sessionId} failed: ${(err as Error).message}`);
      socket.disconnect(true);
    }
  }

  handleDisconnect(socket: ChatSocket): void {
    this.chatConnections.delete(socket.conn);
    this.metrics.connectedClients.dec({ transport: 'socket.io' });
    socket.data.detach?.();
    socket.data.release?.();
  }

  /**
   * Every event a socket sends takes a token first, whatever it is (a send, a cancel, a repeat, an
   * invalid or unknown event), so a flood costs a counter here instead of Redis round trips that
   * would slow every other user. Refused events are answered 429 when they want an answer; a socket
   * that keeps sending regardless is disconnected.
   */
  private limitEvents(socket: ChatSocket): void {
    const { socketEventsPerMinute: perMinute, socketEventBurst: burst } = this.config.limits;
    const bucket = new EventBucket(perMinute, burst);
    socket.use((packet, next) => {
      const expiresAt = socket.data.tokenExpiresAt;
      if (expiresAt !== null && Date.now() >= expiresAt) {
        // The socket outlived its token: the client reconnects with a fresh one.
        socket.disconnect(true);
        return;
      }
      if (bucket.take()) return next();
      const ack: unknown = packet[packet.length - 1];
      if (typeof ack === 'function') {
        const message = `too many events on this socket (at most ${burst} at once, ${perMinute} per minute); retry in ${bucket.retryAfterSeconds()} s`;
        (ack as (reply: { error: ErrorBody }) => void)({ error: { statusCode: 429, error: 'Too Many Requests', message } });
      }
      if (bucket.refusedInARow > 3 * burst) socket.disconnect(true);
    });
  }

  /** Every send is acknowledged, whatever goes wrong: nothing escapes to Nest's `exception` event. */
  @SubscribeMessage('chat.send')
  onSend(@ConnectedSocket() socket: ChatSocket, @MessageBody() body: unknown): Promise<{ messageId: string } | { error: ErrorBody }> {
    return acknowledged(MessageInputDto, body, async (input) => {
      const result = await this.chat.send({ ...input, sessionId: socket.data.sessionId, address: this.addressOf(socket) });
      return { messageId: result.messageId };
    });
  }

  @SubscribeMessage('chat.regenerate')
  onRegenerate(
    @ConnectedSocket() socket: ChatSocket,
    @MessageBody() body: unknown,
  ): Promise<{ messageId: string; replaces: string } | { error: ErrorBody }> {
    return acknowledged(RegenerateMessageDto, body, async (input) => {
      const result = await this.chat.regenerate({ ...input, sessionId: socket.data.sessionId, address: this.addressOf(socket) });
      return { messageId: result.messageId, replaces: input.messageId };
    });
  }

  @SubscribeMessage('chat.edit')
  onEdit(
    @ConnectedSocket() socket: ChatSocket,
    @MessageBody() body: unknown,
  ): Promise<{ messageId: string; replaces: string } | { error: ErrorBody }> {
    return acknowledged(EditMessageDto, body, async (input) => {
      const result = await this.chat.edit({ ...input, sessionId: socket.data.sessionId, address: this.addressOf(socket) });
      return { messageId: result.messageId, replaces: input.messageId };
    });
  }

  @SubscribeMessage('chat.cancel')
  onCancel(@ConnectedSocket() socket: ChatSocket, @MessageBody() body: unknown): Promise<{ ok: true } | { error: ErrorBody }> {
    return acknowledged(CancelMessageDto, body, async (input) => {
      await this.chat.cancel(socket.data.sessionId, input.messageId);
      return { ok: true as const };
    });
  }

  /**
   * Runs after every beforeApplicationShutdown hook, i.e. after the in-process worker had its grace
   * period: answers finished meanwhile still reach this instance's sockets. New handshakes are
   * refused from the moment shutdown begins.
   */
  beforeApplicationShutdown(): void {
    this.stopping = true;
  }

  onApplicationShutdown(): void {
    this.server?.disconnectSockets(true);
  }

  /** The client's address, derived as Express derives `req.ip` (same trust function). */
  private addressOf(socket: ChatSocket): string {
    return clientAddress(socket.request, this.config.http.trustProxy);
  }

  /** Returns an error text for connect_error, or null when the socket may join. */
  private async authenticate(socket: ChatSocket): Promise<string | null> {
    const auth: unknown = socket.handshake.auth;
    const { sessionId, token } = (typeof auth === 'object' && auth !== null ? auth : {}) as Record<string, unknown>;
    if (this.stopping) return 'unavailable';
    if (!isValidId(sessionId)) return 'unauthorized';
    let expiresAt: number | null = null;
    if (this.tokens.enabled) {
      const reading = await this.tokens.read(token);
      // CONTRACT: any bad token, including another session's, fails with `unauthorized`.
      if ('refused' in reading || reading.sessionId !== sessionId) return 'unauthorized';
      expiresAt = reading.expiresAt * 1000;
    }
    const { lastEventId } = (typeof auth === 'object' && auth !== null ? auth : {}) as Record<string, unknown>;
    if (lastEventId !== undefined && lastEventId !== null && !isStreamId(lastEventId)) return 'invalid lastEventId';
    // Gone while its token was checked: its 'close' has fired already and would never give the place back.
    if (socket.conn.readyState !== 'open') return 'closed';
    const release = this.caps.takeSession(sessionId);
    if (!release) return 'too many connections for this session';
    socket.data.release = release;
    // A connection that closes before the socket joins never reaches handleDisconnect.
    socket.conn.once('close', release);
    socket.data.tokenExpiresAt = expiresAt;
    socket.data.sessionId = sessionId;
    socket.data.lastEventId = isStreamId(lastEventId) ? lastEventId : null;
    return null;
  }

  private emit(event: DeliveredEvent): void {
    this.server.to(roomOf(event.payload.sessionId)).emit(event.type, { ...event.payload, eventId: event.eventId });
  }
}

/**
 * A client event's acknowledgement: its payload validated as `dto` (400 otherwise), then `handle`'s
 * answer, or the error as the HTTP API would answer it. Nothing escapes to Nest's `exception` event.
 */
async function acknowledged<T extends object, R>(
  dto: new () => T,
  body: unknown,
  handle: (input: T) => Promise<R>,
): Promise<R | { error: ErrorBody }> {
  try {
    const input = await validatePayload(dto, body);
    if (!input.ok) return { error: { statusCode: 400, error: 'Bad Request', message: input.message } };
    return await handle(input.value);
  } catch (err) {
    return { error: toErrorBody(err) };
  }
}
