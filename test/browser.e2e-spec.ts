/**
 * The built-in web page (GET /) in a real browser: Debian's Chromium driven by playwright-core,
 * against the built app (child process), a real redis-server and the fake Ollama.
 *
 * Never a downloaded browser: Chromium must be at /usr/bin/chromium (`sudo apt-get install chromium`;
 * .ci/run installs it). Screenshots go to test-artifacts/ (git-ignored).
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, Browser, BrowserContext, Page } from 'playwright-core';
import { AppProcess } from './support/app-process';
import { DEFAULT_MODEL, FakeOllama, tokenize } from './support/fake-ollama';
import { freshTestRedis, type TestRedis, testRedisEnv } from './support/test-redis';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const ARTIFACTS = join(process.cwd(), 'test-artifacts');
const MAX_MESSAGE_CHARS = 2000;
const DESKTOP = { width: 1100, height: 820 };

const NO_CHROMIUM_MESSAGE =
  `The browser test needs Debian's Chromium at ${CHROMIUM}, and it is missing. Install it with ` +
  '`sudo apt-get install -y chromium` (.ci/run does this on a fresh machine), or point CHROMIUM_PATH at a Chromium binary.';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** What the page shows for one message (a turn): read in the page. */
interface TurnView {
  messageId: string;
  user: string | null;
  status: string | null;
  answer: string;
  answerHtml: string;
  thinking: string;
  thinkingVisible: boolean;
  thinkingOpen: boolean;
  meta: string;
  error: string;
}

describe('web page in Chromium', () => {
  let redis: TestRedis;
  let fake: FakeOllama;
  let app: AppProcess;
  let browser: Browser;
  /** One profile and tab for all tests (a new one costs seconds); each test starts with empty storage. */
  let context: BrowserContext;
  let page: Page;
  /** Uncaught page errors and CSP refusals, per page: the page must produce none. */
  const problems: string[] = [];

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(NO_CHROMIUM_MESSAGE);
    mkdirSync(ARTIFACTS, { recursive: true });
    redis = await freshTestRedis();
    fake = new FakeOllama();
    await fake.start();
    app = await AppProcess.start({
      env: { ...testRedisEnv(), OLLAMA_HOST: fake.url, MAX_MESSAGE_CHARS: String(MAX_MESSAGE_CHARS) },
    });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--headless=new',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    context = await browser.newContext({ viewport: DESKTOP, deviceScaleFactor: 1 });
    page = await context.newPage();
    page.setDefaultTimeout(10_000);
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
    page.on('console', (msg) => {
      if (/Content Security Policy|Refused to/i.test(msg.text())) problems.push(`CSP: ${msg.text()}`);
    });
  });

  afterEach(async () => {
    await context?.setOffline(false);
    fake.reset();
    fake.models.add(DEFAULT_MODEL);
    const seen = problems.splice(0);
    expect(seen).toEqual([]);
  });

  afterAll(async () => {
    await browser?.close();
    await app?.stop();
    await fake?.stop();
    await redis?.quit();
  });

  /** The chat page with empty storage (so a new session), once it is connected. */
  async function openChat(viewport = DESKTOP): Promise<Page> {
    await page.setViewportSize(viewport);
    if (page.url().startsWith(app.url)) await page.evaluate(() => localStorage.clear());
    await page.goto(app.url);
    await waitConnected(page);
    return page;
  }

  const waitConnected = (page: Page) => page.locator('#state[data-state="connected"]').waitFor();

  /** Types into the message box and presses Enter (the keyboard path). */
  async function send(page: Page, text: string, { type = false } = {}): Promise<void> {
    const input = page.locator('#input');
    await input.focus();
    if (type) await input.pressSequentially(text);
    else await input.fill(text);
    await input.press('Enter');
  }

  /** The turns (user message + answer) shown, oldest first. */
  function turns(page: Page): Promise<TurnView[]> {
    return page.evaluate(() =>
      Array.from(document.querySelectorAll<HTMLElement>('#log .turn')).map((turn) => {
        const text = (selector: string) => turn.querySelector(selector)?.textContent ?? '';
        const details = turn.querySelector<HTMLDetailsElement>('.thinking');
        return {
          messageId: turn.dataset.messageId ?? '',
          user: turn.querySelector('.user-text')?.textContent ?? null,
          status: turn.querySelector<HTMLElement>('.assistant')?.dataset.status ?? null,
          answer: text('.assistant .body'),
          answerHtml: turn.querySelector('.assistant .body')?.innerHTML ?? '',
          thinking: text('.thinking-text'),
          thinkingVisible: !!details && !details.hidden,
          thinkingOpen: !!details && details.open,
          meta: text('.assistant .meta'),
          error: text('.assistant .error-box'),
        };
      }),
    );
  }

  async function lastTurn(page: Page): Promise<TurnView> {
    const all = await turns(page);
    if (!all.length) throw new Error('no message is shown');
    return all[all.length - 1];
  }

  /** Polls the last turn until `accept` holds. */
  async function waitForLastTurn(page: Page, accept: (t: TurnView) => boolean, timeoutMs = 10_000): Promise<TurnView> {
    const deadline = Date.now() + timeoutMs;
    let last: TurnView | undefined;
    for (;;) {
      const all = await turns(page);
      last = all[all.length - 1];
      if (last && accept(last)) return last;
      if (Date.now() > deadline) throw new Error(`the last message never reached the expected state; it shows: ${JSON.stringify(last)}`);
      await sleep(25);
    }
  }

  const storedSession = (page: Page) =>
    page.evaluate(() => JSON.parse(localStorage.getItem('ai-assistant.session') ?? 'null') as { sessionId: string; token: string } | null);

  it('sends with Enter, shows gpt-oss thinking live, streams the answer and renders its Markdown', async () => {
    const thinking =
      'The user wants to print a greeting in JavaScript. console.log is the simplest way, and it works in browsers and in Node alike.';
    const answer = 'Here is **one** way:\n\n```js\nconsole.log("hi");\n```\n\nIt prints `hi`.';
    fake.setDefault({ thinking: tokenize(thinking), content: tokenize(answer), tokenDelayMs: 40 });
    const page = await openChat();
    await page.selectOption('#think', 'high');
    await send(page, 'How do I print hi in JS?', { type: true });

    // The reasoning is shown live, open, while the answer has not begun.
    const live = await waitForLastTurn(page, (t) => t.thinkingVisible && t.thinking.length > 0 && t.status === 'streaming');
    expect(live.user).toBe('How do I print hi in JS?');
    expect(live.thinkingOpen).toBe(true);
    expect(live.answer).toBe('');
    expect(await page.locator('#stop').isEnabled()).toBe(true);

    // The answer grows in steps, then completes.
    const lengths = new Set<number>();
    const done = await waitForLastTurn(page, (t) => {
      if (t.status === 'streaming' && t.answer) lengths.add(t.answer.length);
      return t.status === 'completed';
    });
    expect(lengths.size).toBeGreaterThanOrEqual(3);
    expect(done.thinking).toBe(thinking);
    expect(done.thinkingOpen).toBe(false); // folded away once the answer came
    expect(done.meta).toMatch(/tokens/);
    expect(await page.locator('#stop').isEnabled()).toBe(false);

    const last = page.locator('#log .turn').last();
    expect(await last.locator('.assistant .body pre > code.language-js').textContent()).toBe('console.log("hi");');
    expect(await last.locator('.assistant .body strong').textContent()).toBe('one');
    expect(await last.locator('.assistant .body p code').textContent()).toBe('hi');
    // The reasoning level chosen in the selector reached Ollama.
    expect(fake.requests.at(-1)!.body).toMatchObject({ model: DEFAULT_MODEL, think: 'high', stream: true });
    // The message box was emptied and kept the focus (keyboard use goes on).
    expect(await page.locator('#input').inputValue()).toBe('');
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('input');

    // The thinking area opens on demand (keyboard: Enter on its summary).
    await last.locator('.thinking > summary').focus();
    await page.keyboard.press('Enter');
    expect(await last.locator('.thinking').evaluate((d) => (d as HTMLDetailsElement).open)).toBe(true);

    // A second message, for a fuller screenshot.
    fake.setDefault({
      thinking: tokenize('A short list will do.'),
      content: tokenize(
        'Three options:\n\n1. `console.log`\n2. `alert` — in a browser\n3. `process.stdout.write` in Node\n\n| call | where |\n|---|---|\n| console.log | anywhere |\n| alert | browser |',
      ),
    });
    await send(page, 'Any other ways?');
    await waitForLastTurn(page, (t) => t.status === 'completed' && t.user === 'Any other ways?');
    expect(await page.locator('#log .turn').last().locator('ol > li').count()).toBe(3);
    expect(await page.locator('#log .turn').last().locator('table td').count()).toBe(4);
    await page.screenshot({ path: join(ARTIFACTS, 'chat.png') });

    // The level is remembered across reloads.
    await page.reload();
    await waitConnected(page);
    expect(await page.locator('#think').inputValue()).toBe('high');
  });

  it('shows HTML and <script> from the model and the user as text, never runs it', async () => {
    const evil = 'Look: <img src=x onerror="window.__xss=1"> and <script>window.__xss=2</script>';
    const reply = `${evil}\n\n**bold** [bad](javascript:window.__xss=4) [good](https://example.com/docs) <a href="javascript:window.__xss=6">x</a>`;
    fake.setDefault({ content: tokenize(reply) });
    const userText = '<b>hi</b> <img src=x onerror="window.__xss=3"> <script>window.__xss=5</script> `code`';
    const page = await openChat();
    await send(page, userText);
    const done = await waitForLastTurn(page, (t) => t.status === 'completed');

    expect(await page.evaluate(() => (window as unknown as { __xss?: unknown }).__xss)).toBeUndefined();
    expect(done.user).toBe(userText);
    expect(done.answer).toContain('<img src=x onerror="window.__xss=1">');
    expect(done.answer).toContain('<script>window.__xss=2</script>');
    expect(done.answer).toContain('[bad](javascript:window.__xss=4)');
    const dom = await page.evaluate(() => {
      const log = document.getElementById('log')!;
      const all = Array.from(log.querySelectorAll('*'));
      return {
        dangerous: log.querySelectorAll('img, script, iframe, object, embed, svg, style, b').length,
        handlers: all.flatMap((el) => Array.from(el.attributes).map((a) => a.name)).filter((n) => n.startsWith('on')),
        links: Array.from(log.querySelectorAll('a')).map((a) => ({ href: a.getAttribute('href'), rel: a.rel, target: a.target })),
        bold: log.querySelector('.assistant strong')?.textContent,
      };
    });
    expect(dom).toEqual({
      dangerous: 0,
      handlers: [],
      links: [{ href: 'https://example.com/docs', rel: 'noopener noreferrer', target: '_blank' }],
      bold: 'bold',
    });

    // The renderer alone, on nastier input: only its own tags and attributes, links only to http(s).
    const payloads = [
      '<svg onload=alert(1)>',
      '"><img src=x onerror=alert(1)>',
      '[x](https://a.example/"onmouseover="alert(1))',
      '[x](javascript:alert(1))',
      '[x](JAVASCRIPT:alert(1)) [y](data:text/html,<script>alert(1)</script>)',
      '```"><script>alert(1)</script>\ncode </code></pre><img src=x onerror=alert(1)>\n```',
      '```js onload=alert(1)\nunclosed <b>fence',
      '`<img src=x onerror=alert(1)>` **<i>x</i>** _<u>y</u>_',
      '| <b>a</b> | b |\n|---|---|\n| <img src=x onerror=alert(1)> | [z](https://z.example) |',
      '- <script>alert(1)</script>\n  - [ ] <b>task</b>\n1. x\n> <iframe src=javascript:alert(1)>',
      '# <h1 onclick=alert(1)>t\nhttps://ok.example/?a=1&b="2"<img src=x>',
      '\u0000 0\u0000 <b>nul</b>',
    ];
    const audit = await page.evaluate((inputs) => {
      const allowedTags = new Set(
        'P BR STRONG EM DEL CODE PRE DIV SPAN BUTTON A H1 H2 H3 H4 H5 H6 UL OL LI INPUT BLOCKQUOTE HR TABLE THEAD TBODY TR TH TD'.split(
          ' ',
        ),
      );
      const allowedAttrs = new Set(['class', 'href', 'target', 'rel', 'start', 'style', 'type', 'disabled', 'checked', 'data-copy']);
      const md = (window as unknown as { Markdown: { renderMarkdown(s: string): string } }).Markdown;
      const bad: string[] = [];
      for (const input of inputs) {
        const template = document.createElement('template');
        template.innerHTML = md.renderMarkdown(input);
        for (const el of Array.from(template.content.querySelectorAll('*'))) {
          if (!allowedTags.has(el.tagName)) bad.push(`${input} → <${el.tagName}>`);
          for (const a of Array.from(el.attributes)) {
            if (!allowedAttrs.has(a.name)) bad.push(`${input} → ${el.tagName}[${a.name}]`);
            if (a.name === 'href' && !/^https?:\/\//.test(a.value)) bad.push(`${input} → href ${a.value}`);
            if (a.name === 'style' && !/^text-align:(left|right|center)$/.test(a.value)) bad.push(`${input} → style ${a.value}`);
          }
        }
      }
      return bad;
    }, payloads);
    expect(audit).toEqual([]);
    // An unclosed fence (an answer still streaming) already renders as a code block.
    const partial = await page.evaluate(() =>
      (window as unknown as { Markdown: { renderMarkdown(s: string): string } }).Markdown.renderMarkdown('Try:\n```py\nprint(1)'),
    );
    expect(partial).toContain('<pre><code class="language-py">print(1)</code></pre>');
    expect(await page.evaluate(() => (window as unknown as { __xss?: unknown }).__xss)).toBeUndefined();
  });

  it('Stop cancels the answer being streamed: the page shows it stopped and Ollama sees the request aborted', async () => {
    fake.setDefault({ content: Array.from({ length: 300 }, (_, i) => ` word${i}`), tokenDelayMs: 30 });
    const page = await openChat();
    const first = fake.requests.length;
    await send(page, 'Write a very long essay.');
    const streaming = await waitForLastTurn(page, (t) => t.status === 'streaming' && t.answer.length > 20);
    await page.locator('#stop').click();

    const stopped = await waitForLastTurn(page, (t) => t.status === 'cancelled');
    await fake.waitForAbort(first);
    expect(stopped.meta).toMatch(/Stopped/);
    expect(stopped.answer.startsWith(streaming.answer.trim())).toBe(true);
    expect(stopped.answer).not.toContain('word299');
    expect(await page.locator('#stop').isEnabled()).toBe(false);
    // The history agrees after a reload.
    await page.reload();
    await waitConnected(page);
    expect((await lastTurn(page)).status).toBe('cancelled');
  });

  it('a reload during an answer shows the partial answer and continues it without gaps or repeats', async () => {
    // Long enough that the answer is still streaming when the reloaded page is back, even on a busy machine.
    const words = Array.from({ length: 140 }, (_, i) => ` w${i}`);
    fake.setDefault({ thinking: tokenize('Counting slowly.'), content: words, tokenDelayMs: 30 });
    const page = await openChat();
    await send(page, 'Count for me.');
    // The history keeps a snapshot of the partial answer about once a second: reload after that.
    await waitForLastTurn(page, (t) => t.status === 'streaming' && t.answer.includes('w40'));

    const history = page.waitForResponse((res) => /\/chat\/[^/]+\/history$/.test(new URL(res.url()).pathname));
    await page.reload();
    const body = (await (await history).json()) as { messages: { role: string; status: string; content: string }[]; lastEventId: string };
    const partial = body.messages.find((m) => m.role === 'assistant')!;
    expect(partial.status).toBe('streaming');
    expect(partial.content.length).toBeGreaterThan(0);

    // Right after the reload the partial answer is there, still streaming.
    const resumed = await waitForLastTurn(page, (t) => t.answer.length > 0);
    expect(resumed.status).toBe('streaming');
    expect(resumed.user).toBe('Count for me.');
    await waitConnected(page);
    const done = await waitForLastTurn(page, (t) => t.status === 'completed', 15_000);
    expect(done.answer).toBe(words.join('').trim());
    expect(done.thinking).toBe('Counting slowly.');
    expect((await turns(page)).length).toBe(1);
  });

  it('shows a readable error when the model is not pulled', async () => {
    fake.models.clear();
    const page = await openChat();
    await send(page, 'hello?');
    const failed = await waitForLastTurn(page, (t) => t.status === 'failed');
    expect(failed.error).toContain('ollama pull gpt-oss:20b');
    expect(failed.error).toContain('model_not_found');
    // The command is shown as code, ready to copy.
    expect(await page.locator('#log .turn').last().locator('.error-box code').first().textContent()).toBe('ollama pull gpt-oss:20b');
    expect(await page.locator('#stop').isEnabled()).toBe(false);
  });

  it('explains a refused send and keeps the text; shows the connection state', async () => {
    const page = await openChat();
    const tooLong = 'x'.repeat(MAX_MESSAGE_CHARS + 1);
    await send(page, tooLong);
    const banner = page.locator('#banner');
    await banner.waitFor({ state: 'visible' });
    expect(await banner.textContent()).toContain(`at most ${MAX_MESSAGE_CHARS} characters`);
    expect(await page.locator('#input').inputValue()).toBe(tooLong);
    expect(await page.locator('#log .turn').count()).toBe(0);

    await page.context().setOffline(true);
    await page.locator('#state[data-state="offline"]').waitFor();
    expect(await page.locator('#state').textContent()).toContain('Offline');
    await page.context().setOffline(false);
    await waitConnected(page);
  });

  it('New chat starts an empty conversation in a new session; a reload keeps it', async () => {
    const page = await openChat();
    await send(page, 'first conversation');
    await waitForLastTurn(page, (t) => t.status === 'completed');
    const before = await storedSession(page);

    await page.locator('#new-chat').click();
    await waitConnected(page);
    await page.waitForFunction(() => document.querySelectorAll('#log .turn').length === 0);
    const after = await storedSession(page);
    expect(after?.sessionId).toBeTruthy();
    expect(after?.sessionId).not.toBe(before?.sessionId);
    expect(await page.locator('#empty').isVisible()).toBe(true);

    await send(page, 'second conversation');
    const done = await waitForLastTurn(page, (t) => t.status === 'completed');
    expect(done.answer).toBe('You said: second conversation');
    await page.reload();
    await waitConnected(page);
    const shown = await turns(page);
    expect(shown.map((t) => t.user)).toEqual(['second conversation']);
    expect((await storedSession(page))?.sessionId).toBe(after?.sessionId);

    // A session the server refuses (e.g. Redis lost its secret): the page starts a new one and says so.
    await page.evaluate(
      (sid) => localStorage.setItem('ai-assistant.session', JSON.stringify({ sessionId: sid, token: `${sid}.forged` })),
      after!.sessionId,
    );
    await page.reload();
    await waitConnected(page);
    expect(await page.locator('#banner').textContent()).toMatch(/new one was started/);
    expect(await page.locator('#log .turn').count()).toBe(0);
    const replaced = await storedSession(page);
    expect(replaced?.sessionId).not.toBe(after?.sessionId);
    expect(replaced?.token).not.toContain('forged');
  });

  it('fits a 375 px wide phone screen', async () => {
    fake.setDefault({
      thinking: tokenize('Short answer with code.'),
      content: tokenize(
        'Use a **loop**:\n\n```python\nfor i in range(10): print("a fairly long line of code that must scroll sideways", i)\n```\n\n' +
          '- keep it simple\n- see https://docs.python.org/3/tutorial/controlflow.html#for-statements for more',
      ),
    });
    const page = await openChat({ width: 375, height: 740 });
    await send(page, 'How do I loop in Python? Please keep it short.');
    await waitForLastTurn(page, (t) => t.status === 'completed');
    const fits = await page.evaluate(() => ({
      page: document.documentElement.scrollWidth,
      scroller: document.getElementById('scroller')!.scrollWidth - document.getElementById('scroller')!.clientWidth,
      sendVisible: document.getElementById('send')!.getBoundingClientRect().right <= window.innerWidth,
      newChatVisible: document.getElementById('new-chat')!.getBoundingClientRect().right <= window.innerWidth,
    }));
    expect(fits).toEqual({ page: 375, scroller: 0, sendVisible: true, newChatVisible: true });
    await page.screenshot({ path: join(ARTIFACTS, 'chat-375.png') });
  });
});
