import 'reflect-metadata';
import { SingleBar, Presets } from 'cli-progress';
import { Ollama } from 'ollama';
import { AppConfig } from '../config/app-config';
import { validateEnvironment } from '../config/environment';

/** `npm run model:pull`: pulls OLLAMA_MODEL into the Ollama at OLLAMA_HOST, with a progress bar. */
async function main(): Promise<void> {
  const config = new AppConfig(validateEnvironment(process.env));
  const { ollamaHost, model } = config.ai;
  const client = new Ollama({ host: ollamaHost });
  console.log(`Pulling ${model} into ${ollamaHost} …`);
  const bar = new SingleBar(
    { format: ' {status} |{bar}| {percentage}% {done}/{size}', hideCursor: true },
    Presets.shades_classic,
  );
  let barFor: string | null = null;
  const stream = await client.pull({ model, stream: true });
  for await (const progress of stream) {
    if (progress.total && progress.digest) {
      if (barFor !== progress.digest) {
        if (barFor) bar.stop();
        bar.start(progress.total, 0, { status: progress.status.slice(0, 24), done: mb(0), size: mb(progress.total) });
        barFor = progress.digest;
      }
      bar.update(progress.completed ?? 0, { done: mb(progress.completed ?? 0) });
    } else {
      if (barFor) bar.stop();
      barFor = null;
      console.log(` ${progress.status}`);
    }
  }
  if (barFor) bar.stop();
  console.log(`${model} is ready.`);
}

function mb(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(0)} MB`;
}

main().catch((err: unknown) => {
  console.error(`model pull failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
