import 'reflect-metadata';
import { Presets, SingleBar } from 'cli-progress';
import { Ollama } from 'ollama';
import { AppConfig } from '../config/app-config';
import { maskUrlPassword, validateEnvironment } from '../config/environment';

/**
 * `npm run model:pull`: pulls OLLAMA_MODEL into the Ollama at OLLAMA_HOST, with a progress bar on a
 * terminal and a line per 10 % elsewhere (docker compose logs). Skips the pull when the model is
 * already there, so an offline restart does not fail (`--force` pulls anyway, to update it).
 */
async function main(): Promise<void> {
  const config = new AppConfig(validateEnvironment(process.env));
  if (config.ai.provider !== 'ollama') {
    // An OpenAI-compatible server (vLLM, llama-server, LM Studio) loads the model it was started
    // with; there is nothing to pull through its API.
    console.log(
      config.ai.provider === 'openai'
        ? `AI_PROVIDER=openai: the server at ${maskUrlPassword(config.ai.openai.baseUrl)} serves its own models; pull or load "${config.ai.model}" there (see the README, "OpenAI-compatible servers"). Nothing to do here.`
        : `AI_PROVIDER=${config.ai.provider}: no model to pull.`,
    );
    return;
  }
  const { ollamaHost, model } = config.ai;
  const client = new Ollama({ host: ollamaHost });
  const force = process.argv.includes('--force');

  const { models } = await client.list();
  if (!force && models.some((m) => m.name === model || m.model === model || m.name === `${model}:latest`)) {
    console.log(`${model} is already in ${ollamaHost} (use --force to pull updates).`);
    return;
  }

  console.log(`Pulling ${model} into ${ollamaHost} …`);
  const progress = process.stdout.isTTY ? new BarProgress() : new LineProgress();
  const stream = await client.pull({ model, stream: true });
  for await (const update of stream) {
    if (update.total && update.digest) progress.layer(update.digest, update.status, update.completed ?? 0, update.total);
    else progress.status(update.status);
  }
  progress.end();
  console.log(`${model} is ready.`);
}

interface Progress {
  layer(digest: string, status: string, completed: number, total: number): void;
  status(text: string): void;
  end(): void;
}

class BarProgress implements Progress {
  private readonly bar = new SingleBar(
    { format: ' {status} |{bar}| {percentage}% {done}/{size}', hideCursor: true },
    Presets.shades_classic,
  );
  private current: string | null = null;

  layer(digest: string, status: string, completed: number, total: number): void {
    if (this.current !== digest) {
      this.end();
      this.bar.start(total, 0, { status: status.slice(0, 24), done: mb(0), size: mb(total) });
      this.current = digest;
    }
    this.bar.update(completed, { done: mb(completed) });
  }

  status(text: string): void {
    this.end();
    console.log(` ${text}`);
  }

  end(): void {
    if (this.current) this.bar.stop();
    this.current = null;
  }
}

class LineProgress implements Progress {
  private readonly reported = new Map<string, number>();

  layer(digest: string, status: string, completed: number, total: number): void {
    const tenth = Math.floor((completed / total) * 10);
    if ((this.reported.get(digest) ?? -1) >= tenth) return;
    this.reported.set(digest, tenth);
    console.log(` ${status}: ${tenth * 10}% of ${mb(total)}`);
  }

  status(text: string): void {
    console.log(` ${text}`);
  }

  end(): void {}
}

function mb(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(0)} MB`;
}

main().catch((err: unknown) => {
  console.error(`model pull failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
