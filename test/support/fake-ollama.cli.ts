/**
 * Run the fake Ollama server on its own, e.g. to use the app without a GPU or to benchmark it:
 *
 *   npx ts-node --transpile-only test/support/fake-ollama.cli.ts --port 11434
 *
 * then point the app at it (OLLAMA_HOST=http://127.0.0.1:11434). Every chat gets the default
 * deterministic reply: `You said: <your message>`, streamed token by token.
 */
import { parseArgs } from 'node:util';
import { DEFAULT_MODEL, FakeOllama } from './fake-ollama';

const USAGE = `Usage: fake-ollama.cli.ts [options]

  --port <n>             port to listen on (default 11434, 0 = any free port)
  --host <addr>          address to bind (default 127.0.0.1)
  --token-delay-ms <n>   delay between streamed chunks (default 20, so a human can watch the stream)
  --pull-delay-ms <n>    delay between /api/pull progress lines (default 5)
  --models <a,b,...>     models the server has (default ${DEFAULT_MODEL})
  -h, --help             show this help`;

interface CliOptions {
  port: number;
  host: string;
  tokenDelayMs: number;
  pullDelayMs: number;
  models: string[];
}

class UsageError extends Error {}

function nonNegativeInteger(flag: string, raw: string, max = Number.MAX_SAFE_INTEGER): number {
  const value = Number(raw);
  if (raw.trim() === '' || !Number.isInteger(value) || value < 0 || value > max) {
    throw new UsageError(`--${flag} must be an integer between 0 and ${max}, got "${raw}"`);
  }
  return value;
}

/** Returns undefined when help was asked for; throws UsageError (or parseArgs' own error) on bad input. */
function parseCli(args: string[]): CliOptions | undefined {
  const { values } = parseArgs({
    args,
    strict: true,
    allowPositionals: false,
    options: {
      port: { type: 'string', default: '11434' },
      host: { type: 'string', default: '127.0.0.1' },
      'token-delay-ms': { type: 'string', default: '20' },
      'pull-delay-ms': { type: 'string', default: '5' },
      models: { type: 'string', default: DEFAULT_MODEL },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) return undefined;

  const models = values.models
    .split(',')
    .map((name) => name.trim())
    .filter((name) => name !== '');
  if (models.length === 0) throw new UsageError('--models needs at least one model name');

  return {
    port: nonNegativeInteger('port', values.port, 65_535),
    host: values.host,
    tokenDelayMs: nonNegativeInteger('token-delay-ms', values['token-delay-ms']),
    pullDelayMs: nonNegativeInteger('pull-delay-ms', values['pull-delay-ms']),
    models,
  };
}

async function main(): Promise<void> {
  let options: CliOptions | undefined;
  try {
    options = parseCli(process.argv.slice(2));
  } catch (error) {
    console.error(error instanceof Error ? error.message : String(error));
    console.error(USAGE);
    process.exitCode = 2;
    return;
  }
  if (!options) {
    console.log(USAGE);
    return;
  }

  const fake = new FakeOllama({
    models: options.models,
    defaultTokenDelayMs: options.tokenDelayMs,
    pullDelayMs: options.pullDelayMs,
  });
  const url = await fake.start(options.port, options.host);
  console.log(`fake ollama listening on ${url}`);

  // Stop on the first signal. The handlers are removed right away, so a second Ctrl-C falls
  // back to Node's default behaviour and kills the process even if stopping got stuck.
  const shutDown = (signal: NodeJS.Signals) => {
    process.off('SIGINT', shutDown);
    process.off('SIGTERM', shutDown);
    console.log(`received ${signal}, stopping fake ollama`);
    fake.stop().then(
      () => console.log('fake ollama stopped'),
      (error: unknown) => {
        console.error('failed to stop fake ollama:', error);
        process.exitCode = 1;
      },
    );
  };
  process.on('SIGINT', shutDown);
  process.on('SIGTERM', shutDown);
}

main().catch((error: unknown) => {
  console.error('fake ollama failed to start:', error instanceof Error ? error.message : error);
  process.exitCode = 1;
});
