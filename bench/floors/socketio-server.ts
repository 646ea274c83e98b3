/**
 * Floor: the least a delivered token event costs in Socket.IO. A bare Socket.IO server where each
 * client joins its own room (as a session's sockets do) and the server emits event-sized `chat.delta`
 * packets to the rooms in turn at a fixed rate; no Redis, no relay.
 */
import { createServer } from 'node:http';
import { Server } from 'socket.io';
import { floorParams, runFloorChild } from './child-protocol';

const { ratePerSec } = floorParams<{ ratePerSec: number }>();
const io = new Server({ transports: ['websocket'], serveClient: false });
const rooms: string[] = [];
io.on('connection', (socket) => {
  const room = String(socket.handshake.query.room);
  void socket.join(room);
  rooms.push(room);
});

let emitted = 0;
let windowEmitted = 0;
let timer: NodeJS.Timeout | null = null;
const payload = { sessionId: '3f0c8a52-6f8e-4a53-9d7e-0b6f1f7c2a10', messageId: '9b1d4c7e-2a3f-4e5d-8c6b-7a8f9e0d1c2b', delta: ' token' };

function emitDue(startedAt: number): void {
  const due = Math.floor(((performance.now() - startedAt) / 1000) * ratePerSec);
  for (; windowEmitted < due; windowEmitted++, emitted++)
    io.to(rooms[emitted % rooms.length]).emit('chat.delta', { ...payload, eventId: String(emitted) });
}

const httpServer = createServer();
io.attach(httpServer);
httpServer.listen(0, '127.0.0.1', () => {
  const address = httpServer.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  runFloorChild(
    { port },
    {
      start: () => {
        const startedAt = performance.now();
        windowEmitted = 0;
        timer = setInterval(() => emitDue(startedAt), 1);
      },
      stop: () => {
        if (timer) clearInterval(timer);
        return { emitted: windowEmitted };
      },
    },
  );
});
