/**
 * The built-in web page (GET /) in a real browser: Debian's Chromium driven by playwright-core,
 * against the built app (child process), a real redis-server and the fake Ollama.
 *
 * Never a downloaded browser: Chromium must be at /usr/bin/chromium (`sudo apt-get install chromium`;
 * .ci/run installs it). Screenshots go to test-artifacts/ (git-ignored).
 *
 * The Markdown renderer's own XSS corpus is in browser-markdown.e2e-spec.ts; here the page as a whole:
 * a person's text is shown as text, the model's goes through the renderer.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, Browser, BrowserContext, Page } from 'playwright-core';
import { AppProcess } from './support/app-process';
import { type ChatRequestBody, DEFAULT_MODEL, FakeOllama, tokenize } from './support/fake-ollama';
import { freshTestRedis, type TestRedis, testRedisEnv } from './support/test-redis';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const ARTIFACTS = join(process.cwd(), 'test-artifacts');
const MAX_MESSAGE_CHARS = 2000;
const DESKTOP = { width: 1100, height: 820 };
const PHONE = { width: 375, height: 740 };
const OTHER_MODEL = 'qwen3:8b';
/** A small context window, so that a few long messages no longer fit (the context-note test). */
const NUM_CTX = 1024;
const CONTEXT_RESERVE = 256;

const NO_CHROMIUM_MESSAGE =
  `The browser test needs Debian's Chromium at ${CHROMIUM}, and it is missing. Install it with ` +
  '`sudo apt-get install -y chromium` (.ci/run does this on a fresh machine), or point CHROMIUM_PATH at a Chromium binary.';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The last user message of a model request. */
const lastUser = (body: ChatRequestBody) => [...body.messages].reverse().find((m) => m.role === 'user')?.content ?? '';

/**
 * A title request (the app asks the model to name a chat after its first answer): its user message
 * quotes the first turn as "User: …\n\nAssistant: …" (src/ai/title-writer.ts).
 */
const isTitleRequest = (body: ChatRequestBody) => /^User: [\s\S]*\n\nAssistant: /.test(lastUser(body));

/** A chat entry as the page keeps it in localStorage (src/public/js/chats.js). */
interface ChatEntry {
  sessionId: string;
  token: string;
  title: string;
  titleSource: 'first' | 'model' | 'user' | null;
  model: string | null;
  updatedAt: number;
}

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
  const watch = (p: Page) => {
    p.setDefaultTimeout(10_000);
    p.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
    p.on('console', (msg) => {
      if (/Content Security Policy|Refused to/i.test(msg.text())) problems.push(`CSP: ${msg.text()}`);
    });
  };

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(NO_CHROMIUM_MESSAGE);
    mkdirSync(ARTIFACTS, { recursive: true });
    redis = await freshTestRedis();
    fake = new FakeOllama({ models: [DEFAULT_MODEL, OTHER_MODEL] });
    await fake.start();
    app = await AppProcess.start({
      env: {
        ...testRedisEnv(),
        OLLAMA_HOST: fake.url,
        MAX_MESSAGE_CHARS: String(MAX_MESSAGE_CHARS),
        OLLAMA_NUM_CTX: String(NUM_CTX),
        CONTEXT_RESERVE_TOKENS: String(CONTEXT_RESERVE),
        // The page shows the titles the model writes (AppProcess turns them off by default).
        TITLES: 'true',
      },
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
    watch(page);
  });

  afterEach(async () => {
    await context?.setOffline(false);
    await page?.emulateMedia({ colorScheme: 'light' });
    fake.reset();
    fake.models.add(DEFAULT_MODEL).add(OTHER_MODEL);
    const seen = problems.splice(0);
    expect(seen).toEqual([]);
  });

  afterAll(async () => {
    await browser?.close();
    await app?.stop();
    await fake?.stop();
    await redis?.quit();
  });

  /** The chat page with empty storage (so no chats: a new one), once it is connected. */
  async function openChat(viewport = DESKTOP, url = app.url): Promise<Page> {
    await page.setViewportSize(viewport);
    // Storage belongs to the origin: cleared from a page of it.
    if (!page.url().startsWith(url)) await page.goto(url);
    await page.evaluate(() => {
      localStorage.clear();
      sessionStorage.clear();
    });
    await page.goto(url);
    await waitConnected(page);
    return page;
  }

  /** Another tab of the same browser (same localStorage, so the same chat list), on the chat opened last. */
  async function secondTab(): Promise<Page> {
    const other = await context.newPage();
    watch(other);
    await other.setViewportSize(DESKTOP);
    await other.goto(app.url);
    await waitConnected(other);
    return other;
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
          // markdown-it ends each block with a newline: not part of what the page shows.
          answer: text('.assistant .body').trimEnd(),
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

  /** Polls until `read` answers something `accept` takes. */
  async function until<T>(read: () => Promise<T>, accept: (value: T) => boolean, what: string, timeoutMs = 10_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = await read();
      if (accept(value)) return value;
      if (Date.now() > deadline) throw new Error(`${what} never happened; last seen: ${JSON.stringify(value)}`);
      await sleep(25);
    }
  }

  /** The chat list as the page keeps it (newest activity first is the sidebar's order, not storage's). */
  const storedChats = (page: Page) => page.evaluate(() => JSON.parse(localStorage.getItem('ai-assistant.chats') ?? '[]') as ChatEntry[]);

  /** The chat shown in the tab (marked in the sidebar). */
  async function openEntry(page: Page): Promise<ChatEntry | undefined> {
    const id = await page.locator('#chat-list li[aria-current]').getAttribute('data-session-id');
    return (await storedChats(page)).find((c) => c.sessionId === id);
  }

  /** The sidebar's chats, top to bottom: title and whether it is the open one. */
  const sidebar = (page: Page) =>
    page.evaluate(() =>
      Array.from(document.querySelectorAll<HTMLElement>('#chat-list li')).map((li) => ({
        id: li.dataset.sessionId ?? '',
        title: li.querySelector('.chat-title')?.textContent ?? '',
        open: li.hasAttribute('aria-current'),
      })),
    );

  const chatItem = (page: Page, sessionId: string) => page.locator(`#chat-list li[data-session-id="${sessionId}"]`);

  /** The model requests of chat messages (not the app's title requests), in arrival order. */
  const chatRequests = () => fake.requests.filter((r) => !isTitleRequest(r.body));
  const requestFor = (question: string) => chatRequests().find((r) => lastUser(r.body) === question);

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
    // The reasoning level chosen in the selector reached Ollama; the answer says which model wrote it.
    expect(requestFor('How do I print hi in JS?')!.body).toMatchObject({ model: DEFAULT_MODEL, think: 'high', stream: true });
    expect(done.meta).toContain(DEFAULT_MODEL);
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

    expect(await page.evaluate(() => (window as unknown as { __xss?: unknown }).__xss)).toBeUndefined();
  });

  it('Stop cancels the answer being streamed: the page shows it stopped and Ollama sees the request aborted', async () => {
    fake.setDefault({ content: Array.from({ length: 300 }, (_, i) => ` word${i}`), tokenDelayMs: 30 });
    const page = await openChat();
    await send(page, 'Write a very long essay.');
    const streaming = await waitForLastTurn(page, (t) => t.status === 'streaming' && t.answer.length > 20);
    await page.locator('#stop').click();

    const stopped = await waitForLastTurn(page, (t) => t.status === 'cancelled');
    await fake.waitForAbort(fake.requests.indexOf(requestFor('Write a very long essay.')!));
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

  it('New chat starts an empty conversation in a new session; a reload keeps it; a session the server refuses is dropped', async () => {
    const page = await openChat();
    await send(page, 'first conversation');
    await waitForLastTurn(page, (t) => t.status === 'completed');
    const before = await openEntry(page);

    await page.locator('#new-chat').click();
    await waitConnected(page);
    await page.waitForFunction(() => document.querySelectorAll('#log .turn').length === 0);
    const after = await until(
      () => openEntry(page),
      (e) => !!e && e.sessionId !== before?.sessionId,
      'the new chat being marked open',
    );
    expect(await page.locator('#empty').isVisible()).toBe(true);
    // New chat again on an empty chat: no second empty one.
    await page.locator('#new-chat').click();
    expect((await storedChats(page)).length).toBe(2);

    await send(page, 'second conversation');
    const done = await waitForLastTurn(page, (t) => t.status === 'completed');
    expect(done.answer).toBe('You said: second conversation');
    await page.reload();
    await waitConnected(page);
    const shown = await turns(page);
    expect(shown.map((t) => t.user)).toEqual(['second conversation']);
    expect((await openEntry(page))?.sessionId).toBe(after?.sessionId);

    // A session the server refuses (e.g. Redis lost its secret): the page drops it from the list,
    // opens the other chat and says so.
    await page.evaluate((sid) => {
      const list = JSON.parse(localStorage.getItem('ai-assistant.chats') ?? '[]') as { sessionId: string; token: string }[];
      for (const c of list) if (c.sessionId === sid) c.token = `${sid}.forged`;
      localStorage.setItem('ai-assistant.chats', JSON.stringify(list));
    }, after!.sessionId);
    await page.reload();
    await waitConnected(page);
    await page.locator('#banner').waitFor({ state: 'visible' });
    expect(await page.locator('#banner').textContent()).toMatch(/removed from your list/);
    expect((await turns(page)).map((t) => t.user)).toEqual(['first conversation']);
    expect((await storedChats(page)).map((c) => c.sessionId)).toEqual([before!.sessionId]);

    // The last one refused too: a new conversation is started.
    await page.evaluate(() => {
      const list = JSON.parse(localStorage.getItem('ai-assistant.chats') ?? '[]') as { sessionId: string; token: string }[];
      list[0].token = `${list[0].sessionId}.forged`;
      localStorage.setItem('ai-assistant.chats', JSON.stringify(list));
    });
    await page.reload();
    await waitConnected(page);
    expect(await page.locator('#banner').textContent()).toMatch(/new one was started/);
    expect(await page.locator('#log .turn').count()).toBe(0);
    const replaced = await storedChats(page);
    expect(replaced.length).toBe(1);
    expect(replaced[0].sessionId).not.toBe(before?.sessionId);
    expect(replaced[0].token).not.toContain('forged');
  });

  it('moves the single session the earlier page kept into the chat list', async () => {
    const res = await fetch(`${app.url}/sessions`, { method: 'POST' });
    const session = (await res.json()) as { sessionId: string; token: string; expiresAt: string };
    const sent = await fetch(`${app.url}/chat/send`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${session.token}` },
      body: JSON.stringify({ sessionId: session.sessionId, content: 'from the old page' }),
    });
    expect(sent.status).toBe(202);
    await page.goto(app.url);
    await page.evaluate((s) => {
      localStorage.clear();
      sessionStorage.clear();
      localStorage.setItem('ai-assistant.session', JSON.stringify({ ...s, issuedAt: Date.now() }));
    }, session);
    await page.reload();
    await waitConnected(page);
    const done = await waitForLastTurn(page, (t) => t.status === 'completed');
    expect(done.user).toBe('from the old page');
    const list = await storedChats(page);
    expect(list).toEqual([expect.objectContaining({ sessionId: session.sessionId, token: session.token })]);
    // Titled from its first message (or already by the model, whose title quotes it here).
    expect(list[0].title).toContain('from the old page');
    expect(await page.evaluate(() => localStorage.getItem('ai-assistant.session'))).toBeNull();
  });

  it('fits a 375 px wide phone screen; the chat list is a drawer there', async () => {
    fake.setDefault({
      thinking: tokenize('Short answer with code.'),
      content: tokenize(
        'Use a **loop**:\n\n```python\nfor i in range(10): print("a fairly long line of code that must scroll sideways", i)\n```\n\n' +
          '- keep it simple\n- see https://docs.python.org/3/tutorial/controlflow.html#for-statements for more',
      ),
    });
    const page = await openChat(PHONE);
    await send(page, 'How do I loop in Python? Please keep it short.');
    await waitForLastTurn(page, (t) => t.status === 'completed');
    const fits = () =>
      page.evaluate(() => {
        const inView = (id: string) => {
          const r = document.getElementById(id)!.getBoundingClientRect();
          return r.width > 0 && r.left >= 0 && r.right <= window.innerWidth;
        };
        return {
          page: document.documentElement.scrollWidth,
          scroller: document.getElementById('scroller')!.scrollWidth - document.getElementById('scroller')!.clientWidth,
          send: inView('send'),
          menu: inView('menu'),
          model: inView('model'),
          newChat: inView('new-chat'),
        };
      });
    // The list is out of the way (and out of the tab order) until the menu button opens it.
    expect(await fits()).toEqual({ page: 375, scroller: 0, send: true, menu: true, model: true, newChat: false });
    expect(await page.locator('#sidebar').isVisible()).toBe(false);
    await page.screenshot({ path: join(ARTIFACTS, 'chat-375.png') });

    await page.locator('#menu').click();
    await page.locator('#sidebar .chat-open').first().waitFor({ state: 'visible' });
    await sleep(300); // the slide-in transition, for the screenshot
    expect(await page.locator('#menu').getAttribute('aria-expanded')).toBe('true');
    expect((await fits()).newChat).toBe(true);
    await page.screenshot({ path: join(ARTIFACTS, 'chat-375-drawer.png') });
    // Escape closes it and gives the focus back to the menu button.
    await page.keyboard.press('Escape');
    await page.locator('#sidebar').waitFor({ state: 'hidden' });
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('menu');

    // New chat from the drawer, then back to the first chat from it: the drawer closes on each choice.
    await page.locator('#menu').click();
    await page.locator('#new-chat').click();
    await page.locator('#sidebar').waitFor({ state: 'hidden' });
    await page.waitForFunction(() => document.querySelectorAll('#log .turn').length === 0);
    await page.locator('#menu').click();
    await page.locator('#chat-list li:not([aria-current]) .chat-open').click();
    await page.locator('#sidebar').waitFor({ state: 'hidden' });
    await waitForLastTurn(page, (t) => t.user === 'How do I loop in Python? Please keep it short.' && t.status === 'completed');
  });

  it('keeps the chats in a list: switching while an answer streams, titles, rename, delete, reload', async () => {
    const words = Array.from({ length: 150 }, (_, i) => ` n${i}`);
    fake.setDefault((body) => {
      if (isTitleRequest(body)) return { content: tokenize(lastUser(body).includes('Count') ? 'Counting to 150' : 'A short greeting') };
      return lastUser(body).startsWith('Count') ? { content: words, tokenDelayMs: 30 } : {};
    });
    const page = await openChat();
    await send(page, 'Count to 150 for me, slowly.');
    await waitForLastTurn(page, (t) => t.status === 'streaming' && t.answer.includes('n5 '));
    const counting = (await openEntry(page))!;
    // Titled at once with the first message.
    expect(await sidebar(page)).toEqual([{ id: counting.sessionId, title: 'Count to 150 for me, slowly.', open: true }]);

    // A second chat while the first one's answer streams on (switching away does not stop it).
    await page.locator('#new-chat').click();
    await page.waitForFunction(() => document.querySelectorAll('#log .turn').length === 0);
    await waitConnected(page);
    await send(page, 'Hello from the second chat');
    await waitForLastTurn(page, (t) => t.status === 'completed');
    const greeting = (await openEntry(page))!;
    expect(greeting.sessionId).not.toBe(counting.sessionId);
    // Newest activity first.
    expect(await sidebar(page)).toEqual([
      { id: greeting.sessionId, title: 'Hello from the second chat', open: true },
      { id: counting.sessionId, title: 'Count to 150 for me, slowly.', open: false },
    ]);
    expect(fake.requests.some((r) => r.aborted)).toBe(false);

    // Back to the first chat while it still streams: its partial answer, then the rest, once each.
    await chatItem(page, counting.sessionId).locator('.chat-open').click();
    const resumed = await waitForLastTurn(page, (t) => t.user === 'Count to 150 for me, slowly.' && t.answer.length > 0);
    expect(resumed.status).toBe('streaming');
    await page.screenshot({ path: join(ARTIFACTS, 'chat-list.png') });
    const done = await waitForLastTurn(page, (t) => t.status === 'completed', 15_000);
    expect(done.answer).toBe(words.join('').trim());
    expect((await turns(page)).length).toBe(1);

    // The model's title replaces the first message's (live for the open chat, from the history for the other).
    await until(
      () => sidebar(page),
      (s) => s.some((c) => c.title === 'Counting to 150'),
      "the model's title",
    );
    expect(await page.title()).toBe('Counting to 150 · ai-assistant');
    await chatItem(page, greeting.sessionId).locator('.chat-open').click();
    await waitForLastTurn(page, (t) => t.user === 'Hello from the second chat');
    await until(
      () => sidebar(page),
      (s) => s.some((c) => c.title === 'A short greeting'),
      "the other chat's title, from its history",
    );

    // Rename inline: Escape cancels, Enter keeps it; nothing replaces a title the person chose.
    await chatItem(page, counting.sessionId).locator('.chat-rename').click();
    const input = page.locator('#chat-list .rename-input');
    expect(await input.inputValue()).toBe('Counting to 150');
    await input.fill('Not this');
    await input.press('Escape');
    expect(await chatItem(page, counting.sessionId).locator('.chat-title').textContent()).toBe('Counting to 150');
    await chatItem(page, counting.sessionId).locator('.chat-rename').click();
    await input.fill('My counting chat');
    await page.screenshot({ path: join(ARTIFACTS, 'chat-rename.png') });
    await input.press('Enter');
    expect(await chatItem(page, counting.sessionId).locator('.chat-title').textContent()).toBe('My counting chat');
    expect((await storedChats(page)).find((c) => c.sessionId === counting.sessionId)).toMatchObject({
      title: 'My counting chat',
      titleSource: 'user',
    });

    // A reload keeps the list, its order and the open chat.
    await page.reload();
    await waitConnected(page);
    expect(await sidebar(page)).toEqual([
      { id: greeting.sessionId, title: 'A short greeting', open: true },
      { id: counting.sessionId, title: 'My counting chat', open: false },
    ]);
    // Another tab shows the same list, on the chat opened last.
    const other = await secondTab();
    expect(await sidebar(other)).toEqual(await sidebar(page));

    // Delete the open chat (asked first): gone on the server, and its neighbour opens.
    await chatItem(page, greeting.sessionId).locator('.chat-delete').click();
    await page.locator('#chat-list .confirm-row').waitFor();
    await page.screenshot({ path: join(ARTIFACTS, 'chat-delete-confirm.png') });
    await page.locator('#chat-list .confirm-delete').click();
    await until(
      () => sidebar(page),
      (s) => s.length === 1,
      'the deleted chat leaving the list',
    );
    await waitForLastTurn(page, (t) => t.user === 'Count to 150 for me, slowly.');
    expect(await sidebar(page)).toEqual([{ id: counting.sessionId, title: 'My counting chat', open: true }]);
    const history = await fetch(`${app.url}/chat/${greeting.sessionId}/history`, {
      headers: { authorization: `Bearer ${greeting.token}` },
    });
    expect(history.status).toBe(401);
    // The other tab had it open: it moves to the remaining chat and says why.
    await waitForLastTurn(other, (t) => t.user === 'Count to 150 for me, slowly.');
    expect(await other.locator('#banner').textContent()).toContain('deleted in another tab');
    expect(await sidebar(other)).toEqual([{ id: counting.sessionId, title: 'My counting chat', open: true }]);
    await other.close();

    // Delete the last one: a new, empty chat takes its place.
    await chatItem(page, counting.sessionId).locator('.chat-delete').click();
    await page.locator('#chat-list .confirm-delete').click();
    await until(
      () => sidebar(page),
      (s) => s.length === 1 && s[0].id !== counting.sessionId,
      'a new chat replacing the last one',
    );
    expect((await sidebar(page))[0]).toMatchObject({ title: 'New chat', open: true });
    expect(await page.locator('#log .turn').count()).toBe(0);
    await page.reload();
    await waitConnected(page);
    expect((await sidebar(page)).length).toBe(1);
  });

  it("offers the server's models, remembers one per chat and sends it", async () => {
    const page = await openChat();
    expect(await page.locator('#model option').allTextContents()).toEqual([DEFAULT_MODEL, OTHER_MODEL]);
    expect(await page.locator('#model').isEnabled()).toBe(true);
    expect(await page.locator('#model').inputValue()).toBe(DEFAULT_MODEL);

    await page.selectOption('#model', OTHER_MODEL);
    await send(page, 'Which model are you?');
    const done = await waitForLastTurn(page, (t) => t.status === 'completed');
    expect(requestFor('Which model are you?')!.body.model).toBe(OTHER_MODEL);
    expect(done.meta).toContain(OTHER_MODEL);
    const first = (await openEntry(page))!;
    expect(first.model).toBe(OTHER_MODEL);
    await page.screenshot({ path: join(ARTIFACTS, 'model-picker.png') });

    // A new chat takes the model picked last; picking another there leaves the first chat's alone.
    await page.locator('#new-chat').click();
    await page.waitForFunction(() => document.querySelectorAll('#log .turn').length === 0);
    await waitConnected(page);
    expect(await page.locator('#model').inputValue()).toBe(OTHER_MODEL);
    await page.selectOption('#model', DEFAULT_MODEL);
    await send(page, 'And now?');
    await waitForLastTurn(page, (t) => t.status === 'completed');
    expect(requestFor('And now?')!.body.model).toBe(DEFAULT_MODEL);

    await chatItem(page, first.sessionId).locator('.chat-open').click();
    await waitForLastTurn(page, (t) => t.user === 'Which model are you?');
    expect(await page.locator('#model').inputValue()).toBe(OTHER_MODEL);
    await page.reload();
    await waitConnected(page);
    expect(await page.locator('#model').inputValue()).toBe(OTHER_MODEL);
  });

  it('Regenerate and Edit replace the last message, in this tab and in another one', async () => {
    let answers = 0;
    fake.setDefault((body) =>
      isTitleRequest(body) ? { content: tokenize('Questions') } : { content: tokenize(`Answer ${++answers} to: ${lastUser(body)}`) },
    );
    const page = await openChat();
    await send(page, 'first question');
    await waitForLastTurn(page, (t) => t.status === 'completed');
    await send(page, 'second question');
    const before = await waitForLastTurn(page, (t) => t.status === 'completed' && t.user === 'second question');
    expect(before.answer).toBe('Answer 2 to: second question');

    // Only the last message offers them, once it has ended.
    const log = page.locator('#log .turn');
    expect(await log.first().locator('.regenerate').isVisible()).toBe(false);
    expect(await log.first().locator('.edit').isVisible()).toBe(false);
    await log.last().locator('.regenerate').waitFor({ state: 'visible' });
    expect(await log.last().locator('.regenerate').isEnabled()).toBe(true);
    expect(await log.last().locator('.edit').isVisible()).toBe(true);

    const other = await secondTab();
    expect((await turns(other)).map((t) => t.answer)).toEqual(['Answer 1 to: first question', 'Answer 2 to: second question']);

    // Regenerate: a new answer to the same question replaces the old message, here and in the other tab.
    await log.last().locator('.regenerate').click();
    const regenerated = await waitForLastTurn(page, (t) => t.status === 'completed' && t.answer === 'Answer 3 to: second question');
    expect(regenerated.user).toBe('second question');
    expect(regenerated.messageId).not.toBe(before.messageId);
    expect((await turns(page)).length).toBe(2);
    await waitForLastTurn(other, (t) => t.status === 'completed' && t.answer === 'Answer 3 to: second question');
    expect((await turns(other)).map((t) => t.messageId)).toEqual((await turns(page)).map((t) => t.messageId));
    // The model saw the earlier turn but not the answer it replaces.
    const asked = chatRequests()
      .at(-1)!
      .body.messages.map((m) => m.content);
    expect(asked).toContain('Answer 1 to: first question');
    expect(asked).not.toContain('Answer 2 to: second question');
    await page.screenshot({ path: join(ARTIFACTS, 'regenerate.png') });

    // Edit: Escape leaves it as it was; Save sends the new text in place of the old message.
    await log.last().locator('.edit').click();
    const box = log.last().locator('.edit-input');
    expect(await box.inputValue()).toBe('second question');
    await box.press('Escape');
    expect(await box.count()).toBe(0);
    expect((await lastTurn(page)).user).toBe('second question');
    await log.last().locator('.edit').click();
    await box.fill('second question, edited');
    await page.screenshot({ path: join(ARTIFACTS, 'edit.png') });
    await box.press('Enter');
    const edited = await waitForLastTurn(page, (t) => t.status === 'completed' && t.user === 'second question, edited');
    expect(edited.answer).toBe('Answer 4 to: second question, edited');
    expect((await turns(page)).map((t) => t.user)).toEqual(['first question', 'second question, edited']);
    await waitForLastTurn(other, (t) => t.status === 'completed' && t.user === 'second question, edited');
    expect((await turns(other)).map((t) => t.user)).toEqual(['first question', 'second question, edited']);
    await other.close();

    // The server agrees.
    await page.reload();
    await waitConnected(page);
    expect((await turns(page)).map((t) => [t.user, t.answer])).toEqual([
      ['first question', 'Answer 1 to: first question'],
      ['second question, edited', 'Answer 4 to: second question, edited'],
    ]);
  });

  it("notes on an answer when older messages were left out to fit the model's context window", async () => {
    // About 280 tokens a message (the fake echoes it back, so a turn is twice that): the window
    // (NUM_CTX less CONTEXT_RESERVE) holds the first turn and a new message, not two turns and one.
    const long = (n: number) => Array.from({ length: 70 }, (_, i) => `topic${n}x${i}`).join(' ');
    const page = await openChat();
    let noted = -1;
    for (let n = 1; n <= 6 && noted < 0; n++) {
      await send(page, long(n));
      const t = await waitForLastTurn(page, (t) => t.status === 'completed' && t.user === long(n));
      if (await page.locator('#log .turn').last().locator('.context-note').isVisible()) noted = n;
      expect(t.answer).toBe(`You said: ${long(n)}`);
    }
    expect(noted).toBeGreaterThan(1);
    const note = page.locator('#log .turn').last().locator('.context-note');
    expect(await note.textContent()).toBe("Earlier messages were left out to fit the model's context window.");
    expect(await page.locator('#log .turn').first().locator('.context-note').isVisible()).toBe(false);
    // The model indeed did not get the first question.
    expect(requestFor(long(noted))!.body.messages.map((m) => m.content)).not.toContain(long(1));
    await page.screenshot({ path: join(ARTIFACTS, 'context-note.png') });
  });

  it('shows the model picker disabled when the server offers one model', async () => {
    // An API process alone (no worker: it must not take the main app's messages), on a fake with one model.
    const single = new FakeOllama();
    await single.start();
    const api = await AppProcess.start({ env: { ...testRedisEnv(), OLLAMA_HOST: single.url, WORKER_ENABLED: 'false' } });
    try {
      await openChat(DESKTOP, api.url);
      await page.locator('#model-picker').waitFor({ state: 'visible' });
      expect(await page.locator('#model option').allTextContents()).toEqual([DEFAULT_MODEL]);
      expect(await page.locator('#model').isDisabled()).toBe(true);
    } finally {
      await page.goto('about:blank');
      await api.stop();
      await single.stop();
    }
  });

  it('exports the conversation as Markdown and JSON, lists the shortcuts on "?", and follows a dark colour scheme', async () => {
    fake.setDefault((body) => (isTitleRequest(body) ? { content: tokenize('Export test') } : { content: tokenize('A **bold** answer.') }));
    const page = await openChat();
    await send(page, 'Export me');
    await waitForLastTurn(page, (t) => t.status === 'completed');

    const exported = async (button: string) => {
      await page.locator('#more > summary').click();
      const [download] = await Promise.all([page.waitForEvent('download'), page.locator(button).click()]);
      return { name: download.suggestedFilename(), text: readFileSync(await download.path(), 'utf8') };
    };
    const md = await exported('#export-md');
    expect(md.name).toMatch(/\.md$/);
    expect(md.text).toContain('## You\n\nExport me\n');
    expect(md.text).toContain(`## Assistant (${DEFAULT_MODEL})\n\nA **bold** answer.\n`);
    const json = await exported('#export-json');
    expect(json.name).toMatch(/\.json$/);
    expect(JSON.parse(json.text)).toMatchObject({
      messages: [{ question: 'Export me', answer: 'A **bold** answer.', status: 'completed', model: DEFAULT_MODEL }],
    });

    // "?" outside a text field opens the list; in the message box it is just a character.
    await page.locator('#input').fill('');
    await page.locator('#input').press('?');
    expect(await page.locator('#shortcuts').isVisible()).toBe(false);
    expect(await page.locator('#input').inputValue()).toBe('?');
    await page.locator('#input').blur();
    await page.keyboard.press('?');
    await page.locator('#shortcuts').waitFor({ state: 'visible' });
    await page.screenshot({ path: join(ARTIFACTS, 'shortcuts.png') });
    await page.keyboard.press('Escape');
    await page.locator('#shortcuts').waitFor({ state: 'hidden' });

    await page.emulateMedia({ colorScheme: 'dark' });
    const background = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    const [r, g, b] = background.match(/\d+/g)!.map(Number);
    expect(r + g + b).toBeLessThan(150);
    await page.screenshot({ path: join(ARTIFACTS, 'chat-dark.png') });
  });
});
