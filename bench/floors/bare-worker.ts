/**
 * Latency floor, worker side: the least a worker on this stack does per message. A blocking
 * XREADGROUP loop on its own connection takes commands; each is streamed from the (fake) Ollama
 * through the official client over the worker's transport, every chunk XADDed as a `chat.delta`, then
 * `chat.completed`, then XACK. No turn order, history, progress snapshots, slots or cancels.
 */
import { Redis } from 'ioredis';
import { Ollama } from 'ollama';
import { NodeHttpFetch } from '../../src/ai/providers/node-http-fetch';
import { parseReadReply } from '../../src/event-bus/stream-reply';
import { floorParams, runFloorChild } from './child-protocol';

const { redisUrl, host, model, incoming, outgoing, group } = floorParams<{
  redisUrl: string;
  host: string;
  model: string;
  incoming: string;
  outgoing: string;
  group: string;
}>();
const commands = new Redis(redisUrl, { enableAutoPipelining: true, maxRetriesPerRequest: 1 });
const blocking = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
const transport = new NodeHttpFetch();
const never = new AbortController().signal;
const client = new Ollama({ host, fetch: transport.fetchWith(never) });

const publish = (type: string, payload: Record<string, unknown>) =>
  commands.xadd(outgoing, '*', 'type', type, 'data', JSON.stringify(payload));

async function answer(id: string, command: { sessionId: string; messageId: string; content: string }): Promise<void> {
  const ref = { sessionId: command.sessionId, messageId: command.messageId };
  let content = '';
  const stream = await client.chat({ model, stream: true, messages: [{ role: 'user', content: command.content }] });
  for await (const part of stream) {
    if (!part.message.content) continue;
    content += part.message.content;
    void publish('chat.delta', { ...ref, delta: part.message.content });
  }
  await publish('chat.completed', { ...ref, content });
  await commands.xack(incoming, group, id);
}

const reading = true;
async function consume(): Promise<void> {
  while (reading) {
    for (const { id, fields } of parseReadReply(
      await blocking.xreadgroup('GROUP', group, 'bare', 'COUNT', 64, 'BLOCK', 500, 'STREAMS', incoming, '>'),
    )) {
      answer(id, JSON.parse(fields[1]) as { sessionId: string; messageId: string; content: string }).catch((err: Error) =>
        process.stderr.write(`${err.stack}\n`),
      );
    }
  }
}

void commands
  .xgroup('CREATE', incoming, group, '$', 'MKSTREAM')
  .catch((err: Error) => (/BUSYGROUP/.test(err.message) ? null : Promise.reject(err)))
  .then(() => {
    consume().catch((err: Error) => {
      process.stderr.write(`consumer failed: ${err.stack}\n`);
      process.exit(1);
    });
    runFloorChild({}, { stop: () => ({}) });
  });
