/**
 * Latency floor, API side: the least an API on this stack does between a send and a socket. POST
 * /chat/send puts the command on a stream (one XADD) and answers 202; one blocking XREAD loop on
 * its own connection relays every event of the outgoing stream to the session's room on the `/chat`
 * namespace (the socket's `auth.sessionId`). No validation, history, order, idempotency or session
 * log: the events and payloads are just those the bench's clients read.
 */
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import { Redis } from 'ioredis';
import { Server } from 'socket.io';
import { parseReadReply } from '../../src/event-bus/stream-reply';
import { floorParams, runFloorChild } from './child-protocol';

const { redisUrl, incoming, outgoing } = floorParams<{ redisUrl: string; incoming: string; outgoing: string }>();
const commands = new Redis(redisUrl, { enableAutoPipelining: true, maxRetriesPerRequest: 1 });
const blocking = new Redis(redisUrl, { maxRetriesPerRequest: 1 });

const http = createServer((req, res) => {
  if (req.method !== 'POST' || req.url !== '/chat/send') {
    res.writeHead(404).end();
    return;
  }
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const { sessionId, content } = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { sessionId: string; content: string };
    const messageId = randomUUID();
    commands.xadd(incoming, '*', 'data', JSON.stringify({ sessionId, messageId, content })).then(
      () => {
        const reply = JSON.stringify({ messageId, sessionId, status: 'queued' });
        res.writeHead(202, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(reply) }).end(reply);
      },
      () => res.writeHead(503).end(),
    );
  });
});
const io = new Server(http, { serveClient: false });
const chat = io.of('/chat');
chat.on('connection', (socket) => {
  void socket.join(String((socket.handshake.auth as { sessionId?: unknown }).sessionId));
});

const relaying = true;
async function relay(): Promise<void> {
  let last = '$';
  while (relaying) {
    for (const { id, fields } of parseReadReply(await blocking.xread('COUNT', 500, 'BLOCK', 500, 'STREAMS', outgoing, last))) {
      last = id;
      const payload = JSON.parse(fields[3]) as { sessionId: string };
      chat.to(payload.sessionId).emit(fields[1], payload);
    }
  }
}

http.listen(0, '127.0.0.1', () => {
  const address = http.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  const relayed = relay();
  relayed.catch((err: Error) => {
    process.stderr.write(`relay failed: ${err.stack}\n`);
    process.exit(1);
  });
  runFloorChild({ port }, { stop: () => ({}) });
});
