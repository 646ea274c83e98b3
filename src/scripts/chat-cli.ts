import { parseArgs } from 'node:util';
import { io } from 'socket.io-client';
import { terminalText, TerminalTextFilter } from './terminal-text';

/**
 * `npm run chat -- "your message"`: creates a session (or reuses --session/--token), connects to the
 * Socket.IO namespace /chat, sends the message and prints the answer as it streams in.
 *
 * Everything printed that came from the server (the answer above all: model output is untrusted)
 * goes through terminal-text first, so it cannot drive the terminal with escape sequences.
 */
const USAGE =
  'usage: npm run chat -- [--url http://localhost:3000] [--think low|medium|high] [--model NAME] [--session ID --token TOKEN] "message"\n' +
  '       npm run chat -- --models [--url http://localhost:3000]';

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      url: { type: 'string', default: 'http://localhost:3000' },
      think: { type: 'string' },
      model: { type: 'string' },
      models: { type: 'boolean', default: false },
      session: { type: 'string' },
      token: { type: 'string' },
    },
  });
  const url = values.url.replace(/\/+$/, '');
  if (values.models) return listModels(url);
  const content = positionals.join(' ').trim();
  if (!content) throw new Error(USAGE);

  let sessionId = values.session;
  let token = values.token;
  if (!sessionId || !token) {
    const res = await fetch(`${url}/sessions`, { method: 'POST' });
    if (!res.ok) throw new Error(`POST /sessions answered ${res.status}: ${terminalText(await res.text())}`);
    ({ sessionId, token } = (await res.json()) as { sessionId: string; token: string });
    console.error(`session ${terminalText(String(sessionId))}\ntoken   ${terminalText(String(token))}\n`);
  }

  const socket = io(`${url}/chat`, { auth: { sessionId, token }, transports: ['websocket'] });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('connect_error', (err) => reject(new Error(`cannot connect: ${err.message}`)));
  });

  let messageId: string | null = null;
  let thinking = false;
  // One filter per stream: a sequence split across two deltas is still recognised.
  const thinkingText = new TerminalTextFilter();
  const answerText = new TerminalTextFilter();
  const done = new Promise<number>((resolve) => {
    socket.on('chat.started', (e: { messageId: string; attempt: number; contextOmitted?: boolean }) => {
      if (e.messageId !== messageId) return;
      if (e.contextOmitted === true && e.attempt === 1) console.error('[earlier messages were left out to fit the model’s context window]');
      if (!(e.attempt > 1)) return;
      // A retry starts both streams afresh; an unfinished sequence of the failed attempt is dropped.
      thinkingText.reset();
      answerText.reset();
      process.stdout.write(`\n[retry, attempt ${terminalText(String(e.attempt))}]\n`);
    });
    socket.on('chat.thinking', (e: { messageId: string; delta: string }) => {
      if (e.messageId !== messageId) return;
      if (!thinking) process.stdout.write('\x1b[2m[thinking] ');
      thinking = true;
      process.stdout.write(thinkingText.write(String(e.delta)));
    });
    socket.on('chat.delta', (e: { messageId: string; delta: string }) => {
      if (e.messageId !== messageId) return;
      if (thinking) process.stdout.write('\x1b[0m\n\n');
      thinking = false;
      process.stdout.write(answerText.write(String(e.delta)));
    });
    socket.on('chat.completed', (e: { messageId: string; model?: string; usage: { promptTokens: number; completionTokens: number } }) => {
      if (e.messageId !== messageId) return;
      const { promptTokens, completionTokens } = e.usage;
      const by = e.model ? `${terminalText(e.model)}, ` : '';
      console.log(
        `\n\n[completed: ${by}${terminalText(String(promptTokens))} prompt tokens, ${terminalText(String(completionTokens))} completion tokens]`,
      );
      resolve(0);
    });
    socket.on('chat.failed', (e: { messageId: string; error: { code: string; message: string } }) => {
      if (e.messageId !== messageId) return;
      console.error(`\n[failed: ${terminalText(String(e.error.code))}] ${terminalText(String(e.error.message))}`);
      resolve(1);
    });
    socket.on('chat.cancelled', (e: { messageId: string }) => {
      if (e.messageId === messageId) resolve(1);
    });
  });

  const options = { ...(values.think ? { think: values.think } : {}), ...(values.model ? { model: values.model } : {}) };
  const ack = (await socket.emitWithAck('chat.send', { content, ...options })) as { messageId: string } | { error: { message: string } };
  if ('error' in ack) throw new Error(ack.error.message);
  messageId = ack.messageId;
  const code = await done;
  socket.close();
  process.exit(code);
}

/** `--models`: what GET /models offers, the default marked. */
async function listModels(url: string): Promise<void> {
  const res = await fetch(`${url}/models`);
  if (!res.ok) throw new Error(`GET /models answered ${res.status}: ${terminalText(await res.text())}`);
  const list = (await res.json()) as { default: string; models: string[]; reachable: boolean };
  for (const model of list.models) console.log(`${model === list.default ? '*' : ' '} ${terminalText(model)}`);
  if (!list.reachable) console.error('(the model server could not be asked: this is the configured list)');
}

main().catch((err: unknown) => {
  // Messages may quote the server (an answer's body, a refusal, a connect error).
  console.error(terminalText(err instanceof Error ? err.message : String(err)));
  process.exit(1);
});
