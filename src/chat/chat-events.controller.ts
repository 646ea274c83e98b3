import {
  BadRequestException,
  BeforeApplicationShutdown,
  Controller,
  Get,
  Headers,
  Param,
  Query,
  Req,
  Res,
  UseGuards,
} from '@nestjs/common';
import { ApiBearerAuth, ApiHeader, ApiOperation, ApiParam, ApiProduces, ApiQuery, ApiTags } from '@nestjs/swagger';
import type { Request, Response } from 'express';
import { AllowQueryToken } from '../auth/allow-query-token.decorator';
import { SessionAuthGuard } from '../auth/session-auth.guard';
import { isStreamId } from '../event-bus/stream-reply';
import { resyncPayload } from './chat.gateway';
import { ResumableEvents } from './resumable-events';
import { Metrics } from '../observability/metrics.service';
import { IdParamPipe } from './session-id.pipe';
import { ConnectionCaps } from '../limits/connection-caps';
import { RetryLaterException } from '../limits/send-limits.service';

const HEARTBEAT_MS = 15_000;

/** Server-sent events: the session's events as `id:` / `event:` / `data:` frames, resumable. */
@ApiTags('chat')
@ApiBearerAuth()
@UseGuards(SessionAuthGuard)
@Controller('chat')
export class ChatEventsController implements BeforeApplicationShutdown {
  private readonly open = new Set<Response>();
  private stopping = false;

  constructor(
    private readonly resumable: ResumableEvents,
    private readonly metrics: Metrics,
    private readonly caps: ConnectionCaps,
  ) {}

  @Get(':sessionId/events')
  @AllowQueryToken()
  @ApiOperation({
    summary: "The session's events as server-sent events",
    description:
      'Each frame: `id:` the eventId, `event:` the event name, `data:` the JSON payload. Resumes after the standard ' +
      '`Last-Event-ID` header (or `lastEventId` query). EventSource cannot send headers: pass the token as `?token=`. ' +
      'A `chat.resync` event means events after the given id are gone: reload the history.',
  })
  @ApiParam({ name: 'sessionId' })
  @ApiHeader({ name: 'Last-Event-ID', required: false })
  @ApiQuery({ name: 'lastEventId', required: false })
  @ApiQuery({ name: 'token', required: false })
  @ApiProduces('text/event-stream')
  async stream(
    @Param('sessionId', new IdParamPipe('sessionId')) sessionId: string,
    @Headers('last-event-id') header: string | undefined,
    @Query('lastEventId') query: string | undefined,
    @Req() req: Request,
    @Res() res: Response,
  ): Promise<void> {
    const lastEventId = header ?? query ?? null;
    if (lastEventId !== null && !isStreamId(lastEventId))
      throw new BadRequestException('Last-Event-ID must be an event id such as 1732531200000-0');
    // Streams ended at shutdown reconnect at once, maybe to this process again: refused here, they
    // go elsewhere instead of holding the HTTP server's close.
    if (this.stopping) throw new RetryLaterException(503, 'this server is shutting down; reconnect', 2);
    const place = this.caps.takeBoth(req.ip ?? req.socket.remoteAddress ?? '', sessionId);
    if (place === 'address-full') throw new RetryLaterException(429, 'too many open connections from this address', 10);
    if (place === 'session-full') throw new RetryLaterException(429, 'too many open connections for this session', 10);
    res.status(200);
    res.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
    res.setHeader('Cache-Control', 'no-cache, no-transform');
    res.setHeader('Connection', 'keep-alive');
    res.setHeader('X-Accel-Buffering', 'no'); // nginx: do not buffer the stream
    res.flushHeaders();
    res.write('retry: 2000\n\n');
    this.open.add(res);
    this.metrics.connectedClients.inc({ transport: 'sse' });

    const write = (event: string, id: string | null, data: object) => {
      if (res.writableEnded) return;
      res.write(`${id ? `id: ${id}\n` : ''}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    };
    const heartbeat = setInterval(() => res.write(': keep-alive\n\n'), HEARTBEAT_MS);
    let detach = () => undefined as void;
    let closed = false;
    const close = () => {
      if (closed) return;
      closed = true;
      this.metrics.connectedClients.dec({ transport: 'sse' });
      clearInterval(heartbeat);
      detach();
      place();
      this.open.delete(res);
    };
    req.on('close', close);
    try {
      detach = await this.resumable.open(sessionId, lastEventId, {
        // chat.status is live only (never in the session log): no `id:` line, so the browser's
        // Last-Event-ID stays on an event a resume can start from.
        deliver: (event) =>
          write(event.type, event.type === 'chat.status' ? null : event.eventId, { ...event.payload, eventId: event.eventId }),
        resync: () => write('chat.resync', null, resyncPayload(sessionId)),
      });
      if (req.destroyed) close();
    } catch {
      close();
      res.end();
    }
  }

  /**
   * Before the HTTP server closes, which waits for every open response: a stream left open would hold
   * the shutdown until its deadline. Clients reconnect (`retry:`) to another instance and resume from
   * their Last-Event-ID.
   */
  beforeApplicationShutdown(): void {
    this.stopping = true;
    for (const res of this.open) res.end();
    this.open.clear();
  }
}
