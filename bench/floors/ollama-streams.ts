/**
 * Floor: the least a streamed model reply costs the process that reads it. `streams` loops, each
 * asking the (fake) Ollama for a reply of `tokens` tokens through the official `ollama` client,
 * reading every chunk, and asking again; nothing is published anywhere. `transport` is the worker's
 * (NodeHttpFetch, the cheapest we know) or the client's default (the global fetch, undici).
 */
import { Ollama } from 'ollama';
import { NodeHttpFetch } from '../../src/ai/providers/node-http-fetch';
import { floorParams, runFloorChild } from './child-protocol';

const { host, model, streams, tokens, delayMs, transport } = floorParams<{
  host: string;
  model: string;
  streams: number;
  tokens: number;
  delayMs: number;
  transport: 'node-http' | 'fetch';
}>();
const nodeHttp = new NodeHttpFetch();
const never = new AbortController().signal;
const client = new Ollama(transport === 'node-http' ? { host, fetch: nodeHttp.fetchWith(never) } : { host });

let running = false;
let received = 0;
let replies = 0;
let nonce = 0;
let loops: Promise<void>[] = [];
let atStart = { tokens: 0, replies: 0 };

async function ask(): Promise<void> {
  while (running) {
    const content = `bench f${(nonce++).toString(36)} ${tokens} ${delayMs}`;
    const stream = await client.chat({ model, stream: true, messages: [{ role: 'user', content }] });
    for await (const part of stream) {
      if (part.message.content) received++;
    }
    replies++;
  }
}

runFloorChild(
  {},
  {
    start: () => {
      atStart = { tokens: received, replies };
      running = true;
      loops = [];
      for (let i = 0; i < streams; i++) loops.push(ask());
    },
    stop: async () => {
      const counted = { tokens: received - atStart.tokens, replies: replies - atStart.replies }; // at the moment the CPU was read
      running = false;
      await Promise.all(loops);
      return counted;
    },
  },
);
