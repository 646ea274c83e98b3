import { expect } from '@jest/globals';
/** The operator's view: Prometheus metrics, structured JSON logs without secrets, health forms. */
import { AppProcess } from './support/app-process';
import { ChatClient } from './support/chat-client';
import { eventually } from './support/eventually';
import { FakeOllama } from './support/fake-ollama';
import { freePort } from './support/redis-server';
import { freshTestRedis, type TestRedis, testRedisEnv } from './support/test-redis';

function metricValue(text: string, name: string, labels = ''): number | null {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `) || (labels === '' && l.startsWith(`${name} `)));
  return line ? Number(line.split(' ').at(-1)) : null;
}

describe('operations', () => {
  let redis: TestRedis;
  let ollama: FakeOllama;
  let api: AppProcess;
  let worker: AppProcess;
  let workerMetrics: string;

  beforeAll(async () => {
    redis = await freshTestRedis();
    ollama = new FakeOllama({ defaultTokenDelayMs: 5 });
    await ollama.start();
    // The API (PORT=0) takes its port first: a free port picked before it could be handed to it too.
    api = await AppProcess.start({ env: { ...testRedisEnv(), OLLAMA_HOST: ollama.url } });
    const port = await freePort();
    workerMetrics = `http://127.0.0.1:${port}/metrics`;
    worker = await AppProcess.start({
      entry: 'worker',
      env: { ...testRedisEnv(), OLLAMA_HOST: ollama.url, WORKER_METRICS_PORT: String(port) },
    });
  });

  afterAll(async () => {
    await worker?.stop();
    await api?.stop();
    await ollama?.stop();
    await redis?.quit();
  });

  it('counts messages, outcomes, first tokens and sockets in Prometheus format', async () => {
    const client = await ChatClient.open(api.url);
    const secret = 'my very private question';
    const sent = await client.send(secret, { think: 'low' });
    await client.waitForEnd(String(sent.body.messageId));

    const res = await fetch(`${api.url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/plain');
    const text = await res.text();
    expect(metricValue(text, 'ai_assistant_messages_accepted_total')).toBe(1);
    expect(metricValue(text, 'ai_assistant_connected_clients', '{transport="socket.io"}')).toBe(1);
    expect(text).toMatch(/^ai_assistant_queue\{state="lag"\} \d+/m);
    expect(text).toMatch(/^ai_assistant_queue\{state="pending"\} \d+/m);
    expect(text).toContain('ai_assistant_dead_letter_stream_length');
    expect(text).toContain('process_resident_memory_bytes');

    // the message was answered by the in-process worker or the standalone one: together, one completion
    const scrape = async () => `${await (await fetch(`${api.url}/metrics`)).text()}\n${await (await fetch(workerMetrics)).text()}`;
    const both = await eventually(
      scrape,
      (t) => (t.match(/^ai_assistant_messages_finished_total\{outcome="completed",code=""\} 1$/gm) ?? []).length === 1,
    );
    expect((both.match(/^ai_assistant_time_to_first_token_seconds_count 1$/gm) ?? []).length).toBe(1);
    expect((both.match(/^ai_assistant_tokens_per_second_count 1$/gm) ?? []).length).toBe(1);
    client.close();

    // a request whose query string carries the token (refused there: only SSE takes a query token):
    // its log line keeps only the path
    const historyPath = `/chat/${client.session.sessionId}/history`;
    expect((await fetch(`${api.url}${historyPath}?token=${encodeURIComponent(client.session.token)}`)).status).toBe(401);

    // logs: one JSON object per line; lines about the message carry its ids; no token, no content
    const lines = await eventually(
      () => `${api.log}${worker.log}`.split('\n').filter((l) => l.trim()),
      (ls) => ls.some((l) => l.includes(historyPath)),
    );
    const records = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    // one line per request, when it ends: method, path, status, duration
    const requests = records.filter((r) => r.msg === 'request completed');
    expect(requests).toContainEqual(
      expect.objectContaining({ method: 'POST', path: '/chat/send', statusCode: 202, ms: expect.any(Number) }),
    );
    expect(requests).toContainEqual(expect.objectContaining({ method: 'GET', path: historyPath, statusCode: 401 }));
    expect(requests.some((r) => String(r.path).startsWith('/metrics') || String(r.path).startsWith('/health'))).toBe(false);
    const aboutMessage = records.filter((r) => r.messageId === sent.body.messageId);
    expect(aboutMessage.length).toBeGreaterThan(0);
    expect(aboutMessage.every((r) => r.sessionId === client.session.sessionId)).toBe(true);
    const all = lines.join('\n');
    expect(all).not.toContain(client.session.token);
    expect(all).not.toContain(secret);
  });

  it('serves liveness and readiness', async () => {
    expect((await fetch(`${api.url}/health/live`)).status).toBe(200);
    const ready = await fetch(`${api.url}/health`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ status: 'ok', details: { redis: { status: 'up' }, ai: { status: 'up' } } });
  });
});
