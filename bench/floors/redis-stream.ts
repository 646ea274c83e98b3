/**
 * Floor: the least an event costs on Redis Streams with ioredis. Writers XADD event-sized entries
 * (auto-pipelined, like the app's command connection) as fast as replies come back; one reader tails
 * the stream with a blocking XREAD on its own connection and parses each entry's JSON, as a relay
 * does. No history, turn order or session-log copy.
 */
import { Redis } from 'ioredis';
import { parseReadReply } from '../../src/event-bus/stream-reply';
import { floorParams, runFloorChild } from './child-protocol';

const { redisUrl, writers, stream } = floorParams<{ redisUrl: string; writers: number; stream: string }>();
const commands = new Redis(redisUrl, { enableAutoPipelining: true, maxRetriesPerRequest: 1 });
const blocking = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
const data = JSON.stringify({
  sessionId: '3f0c8a52-6f8e-4a53-9d7e-0b6f1f7c2a10',
  messageId: '9b1d4c7e-2a3f-4e5d-8c6b-7a8f9e0d1c2b',
  delta: ' token',
});

let running = false;
let written = 0;
let read = 0;
let loops: Promise<void>[] = [];
let atStart = { written: 0, read: 0 };

async function write(): Promise<void> {
  while (running) {
    await commands.xadd(stream, 'MAXLEN', '~', '100000', '*', 'v', '1', 'type', 'chat.delta', 'data', data);
    written++;
  }
}

async function tail(): Promise<void> {
  let last = '$';
  while (running) {
    for (const { id, fields } of parseReadReply(await blocking.xread('COUNT', 500, 'BLOCK', 200, 'STREAMS', stream, last))) {
      last = id;
      if ((JSON.parse(fields[5]) as { delta?: string }).delta !== undefined) read++;
    }
  }
}

void Promise.all([commands.ping(), blocking.ping()]).then(() =>
  runFloorChild(
    {},
    {
      start: () => {
        atStart = { written, read };
        running = true;
        loops = [tail()];
        for (let i = 0; i < writers; i++) loops.push(write());
      },
      stop: async () => {
        const counted = { written: written - atStart.written, read: read - atStart.read }; // at the moment the CPU was read
        running = false;
        await Promise.all(loops);
        return counted;
      },
    },
  ),
);
