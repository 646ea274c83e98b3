import { BeforeApplicationShutdown, Logger, OnApplicationShutdown } from '@nestjs/common';
import {
  ConnectedSocket,
  MessageBody,
  OnGatewayConnection,
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
import { ChatEventsRelay } from './chat-events.relay';
import { ChatService } from './chat.service';
import { CancelMessageDto } from './dto/cancel-message.dto';
import { MessageInputDto } from './dto/send-message.dto';

/** What the server emits: each event's payload plus its eventId. A wrong payload does not compile. */
export type ServerToClientEvents = { [K in ChatEventType]: (payload: ChatEventMap[K] & { eventId: string }) => void };

interface SocketData {
  sessionId: string;
}

type ChatSocket = Socket<Record<string, never>, ServerToClientEvents, Record<string, never>, SocketData>;
type ChatNamespace = Namespace<Record<string, never>, ServerToClientEvents, Record<string, never>, SocketData>;

export const roomOf = (sessionId: string) => `session:${sessionId}`;

/**
 * Socket.IO namespace /chat. Auth happens in the handshake middleware (before any room is joined);
 * each socket joins its session's room; events from chat:outgoing are relayed into rooms only.
 */
@WebSocketGateway({ namespace: '/chat' })
export class ChatGateway implements OnGatewayInit, OnGatewayConnection, BeforeApplicationShutdown, OnApplicationShutdown {
  private readonly logger = new Logger(ChatGateway.name);
  private stopping = false;
  @WebSocketServer() private server: ChatNamespace;

  constructor(
    private readonly tokens: SessionTokens,
    private readonly chat: ChatService,
    private readonly relay: ChatEventsRelay,
  ) {}

  afterInit(server: ChatNamespace): void {
    server.use((socket, next) => {
      this.authenticate(socket).then(
        (failure) => next(failure ? new Error(failure) : undefined),
        (err: unknown) => {
          this.logger.warn(`handshake check failed: ${(err as Error).message}`);
          next(new Error('unavailable'));
        },
      );
    });
    this.relay.start((event) => this.emit(event));
  }

  handleConnection(socket: ChatSocket): void {
    // Only sockets that passed the middleware get here.
    void socket.join(roomOf(socket.data.sessionId));
  }

  @SubscribeMessage('chat.send')
  async onSend(@ConnectedSocket() socket: ChatSocket, @MessageBody() body: unknown): Promise<{ messageId: string } | { error: ErrorBody }> {
    const input = await validatePayload(MessageInputDto, body);
    if (!input.ok) return { error: { statusCode: 400, error: 'Bad Request', message: input.message } };
    try {
      const result = await this.chat.send({ ...input.value, sessionId: socket.data.sessionId, address: socket.handshake.address });
      return { messageId: result.messageId };
    } catch (err) {
      return { error: toErrorBody(err) };
    }
  }

  @SubscribeMessage('chat.cancel')
  async onCancel(@ConnectedSocket() socket: ChatSocket, @MessageBody() body: unknown): Promise<{ ok: true } | { error: ErrorBody }> {
    const input = await validatePayload(CancelMessageDto, body);
    if (!input.ok) return { error: { statusCode: 400, error: 'Bad Request', message: input.message } };
    try {
      await this.chat.cancel(socket.data.sessionId, input.value.messageId);
      return { ok: true };
    } catch (err) {
      return { error: toErrorBody(err) };
    }
  }

  /**
   * Runs after every beforeApplicationShutdown hook, i.e. after the in-process worker had its grace
   * period: answers finished meanwhile still reach this instance's sockets. New handshakes are
   * refused from the moment shutdown begins.
   */
  beforeApplicationShutdown(): void {
    this.stopping = true;
  }

  async onApplicationShutdown(): Promise<void> {
    await this.relay.stop();
    this.server?.disconnectSockets(true);
  }

  /** Returns an error text for connect_error, or null when the socket may join. */
  private async authenticate(socket: ChatSocket): Promise<string | null> {
    const auth: unknown = socket.handshake.auth;
    const { sessionId, token } = (typeof auth === 'object' && auth !== null ? auth : {}) as Record<string, unknown>;
    if (this.stopping) return 'unavailable';
    if (!isValidId(sessionId)) return 'unauthorized';
    // CONTRACT: any bad token, including another session's, fails with `unauthorized`.
    if ((await this.tokens.verify(sessionId, token)) !== 'ok') return 'unauthorized';
    socket.data.sessionId = sessionId;
    return null;
  }

  private emit(event: DeliveredEvent): void {
    const payload = { ...event.payload, eventId: event.eventId };
    // The mapped type pairs each event name with its payload; TS cannot follow the union here.
    this.server.to(roomOf(event.payload.sessionId)).emit(event.type, payload as never);
  }
}
