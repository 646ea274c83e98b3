import { expect } from '@jest/globals';
/** `npm run model:pull` against the fake Ollama, through the real `ollama` client. */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { FakeOllama } from './support/fake-ollama';

const run = promisify(execFile);
const SCRIPT = join(process.env.APP_DIST ?? join(process.cwd(), 'dist'), 'scripts', 'model-pull.js');

describe('model:pull', () => {
  let ollama: FakeOllama;

  beforeAll(async () => {
    ollama = new FakeOllama({ models: ['some-other:1b'] });
    await ollama.start();
  });

  afterAll(async () => {
    await ollama.stop();
  });

  it('pulls the configured model with progress, then skips it once present', async () => {
    const env = { PATH: process.env.PATH ?? '', OLLAMA_HOST: ollama.url, OLLAMA_MODEL: 'gpt-oss:20b' };
    const first = await run(process.execPath, [SCRIPT], { env });
    expect(first.stdout).toContain(`Pulling gpt-oss:20b into ${ollama.url}`);
    expect(first.stdout).toMatch(/pulling \w+: 100% of/);
    expect(first.stdout).toContain('gpt-oss:20b is ready.');
    expect([...ollama.models]).toContain('gpt-oss:20b');

    const second = await run(process.execPath, [SCRIPT], { env });
    expect(second.stdout).toContain('gpt-oss:20b is already in');
  });

  it('fails with a readable message when Ollama is not there', async () => {
    const env = { PATH: process.env.PATH ?? '', OLLAMA_HOST: 'http://127.0.0.1:9' };
    await expect(run(process.execPath, [SCRIPT], { env })).rejects.toMatchObject({ stderr: expect.stringContaining('model pull failed') });
  });

  it("with AI_PROVIDER=openai says that loading the model is the server's business, and pulls nothing", async () => {
    const env = {
      PATH: process.env.PATH ?? '',
      AI_PROVIDER: 'openai',
      OLLAMA_HOST: ollama.url,
      OLLAMA_MODEL: 'never-pulled:1b',
      OPENAI_BASE_URL: 'http://user:secret@127.0.0.1:9/v1',
      OPENAI_MODEL: 'openai/gpt-oss-20b',
    };
    const { stdout } = await run(process.execPath, [SCRIPT], { env });
    expect(stdout).toContain('serves its own models; pull or load "openai/gpt-oss-20b" there');
    expect(stdout).not.toContain('secret');
    expect([...ollama.models]).not.toContain('never-pulled:1b');
  });
});
