/**
 * Floor: the least an HTTP send can cost. A bare node:http server that reads a JSON body, parses it
 * and answers 202 with a JSON body, as POST /chat/send does, with no framework, validation or Redis.
 */
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { runFloorChild } from './child-protocol';

let requests = 0;
const server = http.createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { sessionId?: string };
    const reply = JSON.stringify({ messageId: randomUUID(), sessionId: body.sessionId, status: 'queued' });
    res.writeHead(202, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(reply) });
    res.end(reply);
    requests++;
  });
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  let atStart = 0;
  runFloorChild({ port }, { start: () => (atStart = requests), stop: () => ({ requests: requests - atStart }) });
});
