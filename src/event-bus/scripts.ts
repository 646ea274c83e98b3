import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { RedisClient } from './redis-client';
import { SessionKeys } from './stream-names';

/**
 * The Lua scripts of the message state machine (docs/design.md), each in its own `.lua` file and
 * registered on a connection with ioredis `defineCommand` (EVALSHA, loaded again by ioredis after
 * NOSCRIPT). Every script starts with `clock.lua`; state scripts also share `lib.lua` and one key list; every one touches one partition's slot.
 */
const STATE_SCRIPTS = ['send', 'start', 'emit', 'finish', 'cancel', 'clear', 'lost', 'title'] as const;
const OTHER_SCRIPTS = { release: 1, heartbeat: 1, alive: 1, forget: 1, leave_group: 1 } as const;

export type StateScript = (typeof STATE_SCRIPTS)[number];
export type OtherScript = keyof typeof OTHER_SCRIPTS;

/** Every state script's KEYS, in lib.lua's order. */
export const STATE_KEY_COUNT = 10;

/** Beside this file (dist/ or src/); jest's ES-module mode has no __dirname, and runs from the project root. */
const DIR = typeof __dirname === 'string' ? join(__dirname, 'scripts') : join(process.cwd(), 'src', 'event-bus', 'scripts');

function source(name: string): string {
  return readFileSync(join(DIR, `${name}.lua`), 'utf8');
}

let sources: Map<string, { numberOfKeys: number; lua: string }> | null = null;

function allSources(): Map<string, { numberOfKeys: number; lua: string }> {
  if (!sources) {
    const clock = source('clock');
    const lib = `${clock}\n${source('lib')}`;
    sources = new Map();
    for (const name of STATE_SCRIPTS) sources.set(name, { numberOfKeys: STATE_KEY_COUNT, lua: `${lib}\n${source(name)}` });
    for (const [name, numberOfKeys] of Object.entries(OTHER_SCRIPTS)) sources.set(name, { numberOfKeys, lua: `${clock}\n${source(name)}` });
  }
  return sources;
}

const commandName = (name: string) => `chat_${name}`;

/** Registers every script on a connection (once per connection). */
export function defineScripts(connection: RedisClient): void {
  for (const [name, definition] of allSources()) connection.defineCommand(commandName(name), definition);
}

/** A script's reply: its named result first, then what that result carries. */
export interface ScriptReply {
  result: string;
  values: unknown[];
}

type Registered = Record<string, (...args: (string | number)[]) => Promise<unknown>>;

export async function runScript(
  connection: RedisClient,
  name: StateScript | OtherScript,
  keys: string[],
  args: (string | number)[],
): Promise<ScriptReply> {
  const command = (connection as unknown as Registered)[commandName(name)];
  if (typeof command !== 'function') throw new Error(`script ${name} is not registered on this connection`);
  const reply: unknown = await command.call(connection, ...keys, ...args);
  if (!Array.isArray(reply) || typeof reply[0] !== 'string') throw new Error(`unexpected reply to the ${name} script`);
  return { result: reply[0], values: reply.slice(1) as unknown[] };
}

/** KEYS of every state script, in lib.lua's order. */
export function stateKeys(session: SessionKeys): string[] {
  const p = session.partition;
  return [
    session.hash,
    session.order,
    session.queue,
    session.events,
    p.outgoing,
    p.incoming,
    p.backlog,
    session.deleted,
    session.revoked,
    p.dead,
  ];
}
