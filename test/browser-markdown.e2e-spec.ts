/**
 * The page's Markdown module (src/public/js/markdown.js: markdown-it and highlight.js, served from
 * node_modules under /vendor) in Debian's Chromium, loaded with import() inside the real page of the
 * built app (so under its real CSP), against a real redis-server and the fake Ollama (the page
 * connects as it always does).
 *
 * Also measures streaming render costs (re-rendering everything per update vs StreamingMarkdown) and
 * writes them to test-artifacts/markdown-render.json; no time is asserted, only how much text the
 * incremental renderer handed to the parser. See bench/NOTES.md "Page: streaming Markdown render".
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { chromium, Browser, Page } from 'playwright-core';
import { AppProcess } from './support/app-process';
import { FakeOllama, tokenize } from './support/fake-ollama';
import { freshTestRedis, type TestRedis, testRedisEnv } from './support/test-redis';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const ARTIFACTS = join(process.cwd(), 'test-artifacts');
const MODULE_URL = '/js/markdown.js';

/** markdown.js as the page's modules import it. */
interface MarkdownModule {
  renderMarkdown(text: string): string;
  renderInline(text: string): string;
  StreamingMarkdown: new (element: Element) => { update(text: string): void; finish(text: string): void; readonly parsedChars: number };
}

/** A small deterministic PRNG (mulberry32): the same text and chunks on every run. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WORDS =
  'the stream worker redis message token session answer render block list table code value client server retry event group lane partition reply history socket'.split(
    ' ',
  );

/**
 * A long model answer of mixed Markdown, about `chars` long: headings, paragraphs with inline code,
 * emphasis and links, tight and loose lists (nested), fenced code in several languages (and one
 * unknown), tables, quotes.
 */
function mixedMarkdown(chars: number, seed: number): string {
  const rnd = prng(seed);
  const int = (lo: number, hi: number) => lo + Math.floor(rnd() * (hi - lo + 1));
  const pick = <T>(items: readonly T[]): T => items[Math.floor(rnd() * items.length)];
  const sentence = () => {
    const words = Array.from({ length: int(6, 18) }, () => {
      const w = pick(WORDS);
      const r = rnd();
      if (r < 0.06) return `\`${w}()\``;
      if (r < 0.1) return `**${w}**`;
      if (r < 0.13) return `*${w}*`;
      if (r < 0.15) return `[${w}](https://example.com/${w})`;
      if (r < 0.16) return `https://example.org/${w}`;
      return w;
    });
    const s = words.join(' ');
    return s[0].toUpperCase() + s.slice(1) + '.';
  };
  const paragraph = () => Array.from({ length: int(1, 4) }, sentence).join(' ');
  const code: Record<string, () => string> = {
    js: () => `const ${pick(WORDS)} = await fetch('/api/${pick(WORDS)}', { method: 'POST' }); // ${pick(WORDS)}`,
    python: () => `def ${pick(WORDS)}_${int(1, 99)}(x):\n    return [v * ${int(2, 9)} for v in x if v]  # ${pick(WORDS)}`,
    bash: () => `redis-cli XADD chat:${pick(WORDS)} '*' delta "${pick(WORDS)}" && echo ok`,
    ts: () => `export interface ${pick(WORDS)}Event { id: string; value: number | null }`,
    text: () => `${pick(WORDS)} ${pick(WORDS)}    ${int(0, 9999)}`,
    unknownlang: () => `${pick(WORDS)} := ${pick(WORDS)} ++ ${int(0, 99)}`,
  };
  const blocks: string[] = [];
  let length = 0;
  let section = 0;
  while (length < chars) {
    let block: string;
    switch (section++ % 9) {
      case 0:
        block = `${'#'.repeat(int(1, 3))} ${sentence().slice(0, -1)}`;
        break;
      case 1:
      case 5:
        block = paragraph();
        break;
      case 2:
        block = Array.from({ length: int(3, 7) }, (_, i) => (i > 0 && rnd() < 0.3 ? `  - ${sentence()}` : `- ${sentence()}`)).join('\n');
        break;
      case 3: {
        const lang = pick(Object.keys(code));
        block = '```' + lang + '\n' + Array.from({ length: int(4, 20) }, () => code[lang]()).join('\n') + '\n```';
        break;
      }
      case 4:
        // A loose ordered list: blank lines between items, one with a second paragraph.
        block = Array.from({ length: int(2, 5) }, (_, i) => `${i + 1}. ${sentence()}` + (rnd() < 0.3 ? `\n\n   ${sentence()}` : '')).join(
          '\n\n',
        );
        break;
      case 6: {
        const cols = int(2, 4);
        const row = () => '| ' + Array.from({ length: cols }, () => (rnd() < 0.2 ? `\`${pick(WORDS)}\`` : pick(WORDS))).join(' | ') + ' |';
        block = [row(), '|' + ' --- |'.repeat(cols), ...Array.from({ length: int(3, 10) }, row)].join('\n');
        break;
      }
      case 7:
        block = `> ${sentence()}\n> ${sentence()}`;
        break;
      default:
        block = paragraph() + '\n' + sentence();
    }
    blocks.push(block);
    length += block.length + 2;
  }
  return blocks.join('\n\n') + '\n';
}

/** Constructs that reach over blank lines, where a wrong cut would show. */
const TRICKY_MARKDOWN = [
  '- tight a\n- tight b\n\nafter the list',
  '- loose a\n\n- loose b\n\n  continued b\n\n- loose c',
  '- lazy item\nlazy continuation\n\n- same list',
  '1. one\n\n2. two\n\n10. ten',
  '- item with code:\n\n  ```js\n  let a = 1;\n\n  let b = 2;\n  ```\n\n- next',
  'para\n\n    indented code\n\n    still code\n\nback to text',
  '```\nfence with blank lines\n\n\n- not a list\n# not a heading\n```\n\nafter',
  '~~~~md\n```\ninner fence\n```\n~~~~\n\ntext',
  '> quote one\n\n> quote two\n\n| a | b |\n|---|:-:|\n| 1 | 2 |\n\n***\n\nend',
  'Heading\n===\n\n* star list\n\n+ plus list\n\n- [ ] open task\n- [x] done task',
  '````\nfour ticks\n```\nstill inside\n````\n\n\n\n# after many blanks',
].join('\n\n');

describe('Markdown module of the page, in Chromium', () => {
  let redis: TestRedis;
  let fake: FakeOllama;
  let app: AppProcess;
  let browser: Browser;
  let page: Page;
  /** Uncaught page errors, CSP refusals and dialogs (alert & co.): the page must produce none. */
  const problems: string[] = [];

  beforeAll(async () => {
    if (!existsSync(CHROMIUM))
      throw new Error(`This test needs Debian's Chromium at ${CHROMIUM} (sudo apt-get install -y chromium), or CHROMIUM_PATH.`);
    mkdirSync(ARTIFACTS, { recursive: true });
    redis = await freshTestRedis();
    fake = new FakeOllama();
    await fake.start();
    app = await AppProcess.start({ env: { ...testRedisEnv(), OLLAMA_HOST: fake.url } });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-sync'],
    });
    page = await browser.newPage({ viewport: { width: 1100, height: 820 } });
    page.setDefaultTimeout(10_000);
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
    page.on('console', (msg) => {
      if (/Content Security Policy|Refused to/i.test(msg.text())) problems.push(`CSP: ${msg.text()}`);
    });
    page.on('dialog', (dialog) => {
      problems.push(`dialog (${dialog.type()}): ${dialog.message()}`);
      void dialog.dismiss();
    });
    await page.goto(app.url);
    // Violations also as events (a console message could be missed or worded differently).
    await page.evaluate(() =>
      document.addEventListener('securitypolicyviolation', (e) =>
        console.error(`Refused to load (${e.violatedDirective}): ${e.blockedURI}`),
      ),
    );
  });

  afterEach(() => {
    expect(problems.splice(0)).toEqual([]);
  });

  afterAll(async () => {
    await browser?.close();
    await app?.stop();
    await fake?.stop();
    await redis?.quit();
  });

  it('shows hostile model output and user text as text: no markup of its own, no script runs, no unsafe link', async () => {
    const hostile = [
      '<script>window.__xss=1;alert(1)</script>',
      '<img src=x onerror="window.__xss=2;alert(2)"> <IMG SRC=x OnError=alert(2)>',
      '[a](javascript:alert(3)) [b](JaVaScRiPt:alert(3)) [c](&#106;avascript:alert(3)) [d](&#x6A;avascript&#x3A;alert(3))',
      '[e](java\tscript:alert(3)) [f](  javascript:alert(3)) [g](<javascript:alert(3)>) [h](javascript&colon;alert(3))',
      '[i](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==) [j](vbscript:msgbox(1)) [k](file:///etc/passwd)',
      '[ref link][evil]\n\n[evil]: javascript:alert(3)',
      '<svg onload="window.__xss=4;alert(4)"><circle r=1></circle></svg> <svg><script>alert(4)</script></svg>',
      '<iframe src="javascript:alert(5)"></iframe> <object data="javascript:alert(5)"></object> <embed src="javascript:alert(5)">',
      '![x](javascript:alert(6)) ![y](https://example.invalid/pixel.png?q=secret) ![z](data:image/svg+xml,<svg onload=alert(6)>)',
      '```"><img src=x onerror=alert(7)>\ncode\n```',
      '```js" onmouseover="alert(7)\nlet a = 1;\n```\n\n~~~<script>alert(7)</script>\nx\n~~~',
      '```__proto__\nx\n```\n\n```constructor\ny\n```\n\n```hasOwnProperty\nz\n```',
      '```"><script>alert(7)</script>\ncode </code></pre><img src=x onerror=alert(7)>\n```',
      '```js onload=alert(7)\nunclosed <b>fence',
      '| <b onmouseover=alert(8)>x</b> | <img src=x onerror=alert(8)> |\n|---|---|\n| <script>alert(8)</script> | [l](javascript:alert(8)) |',
      '<javascript:alert(9)> <https://example.com/ok> <mailto:someone@example.com> <data:text/html,<script>alert(9)</script>> javascript:alert(9)',
      'https://example.com/"onmouseover="alert(9) [x](https://a.example/"onmouseover="alert(9))',
      '<a href="javascript:alert(10)">x</a> <a href=https://ok.example onclick=alert(10)>y</a> &lt;script&gt;',
      '<style>body{display:none}</style> <meta http-equiv="refresh" content="0;url=javascript:alert(11)"> <base href="https://evil.example/">',
      '<form action="https://evil.example"><button formaction="javascript:alert(11)">go</button></form>',
      '<math><mtext><table><mglyph><style><img src=x onerror=alert(11)></style></mglyph></table></mtext></math>',
      '[t](https://ok.example "a\\" onmouseover=\\"alert(12)") [u](https://ok.example \'b" onclick="alert(12)\')',
      '[<img src=x onerror=alert(13)>](https://ok.example) `<img src=x onerror=alert(14)>` **<i>x</i>** _<u>y</u>_',
      '- [ ] <img src=x onerror=alert(15)>\n- [x] <script>alert(15)</script>\n  - [ ] <b>task</b>\n1. x\n> <iframe src=javascript:alert(15)>',
      '# <h1 onclick=alert(16)>t\nhttps://ok.example/?a=1&b="2"<img src=x>',
      '\u0000 0\u0000 <b>nul</b> [n](\u0000javascript:alert(17)) [m](jav&#x09;ascript:alert(17))',
      '>'.repeat(300) + ' deep quote <img src=x onerror=alert(18)>',
      '- '.repeat(200) + 'deep list <img src=x onerror=alert(18)>',
    ];
    const audit = await page.evaluate(
      async ({ url, inputs }) => {
        const md = (await import(url)) as MarkdownModule;
        const allowedTags = new Set(
          'P BR STRONG EM S CODE PRE DIV SPAN BUTTON A H1 H2 H3 H4 H5 H6 UL OL LI INPUT BLOCKQUOTE HR TABLE THEAD TBODY TR TH TD'.split(
            ' ',
          ),
        );
        const allowedAttrs = new Set([
          'class',
          'href',
          'title',
          'target',
          'rel',
          'start',
          'style',
          'type',
          'disabled',
          'checked',
          'data-copy',
        ]);
        // In the document, so an <img> that got through would load (and fire onerror).
        const host = document.createElement('div');
        document.body.append(host);
        const outputs: { input: string; how: string; el: HTMLElement }[] = [];
        const add = (input: string, how: string) => {
          const el = document.createElement('div');
          host.append(el);
          outputs.push({ input, how, el });
          return el;
        };
        for (const input of inputs) {
          add(input, 'renderMarkdown').innerHTML = md.renderMarkdown(input);
          add(input, 'renderInline').innerHTML = md.renderInline(input);
          // Streamed in 3-character pieces: every partial state is rendered (an unclosed tag, a half link).
          const streamed = new md.StreamingMarkdown(add(input, 'StreamingMarkdown'));
          for (let end = 3; end < input.length; end += 3) streamed.update(input.slice(0, end));
          streamed.finish(input);
        }
        await new Promise((resolve) => setTimeout(resolve, 300));
        const bad: string[] = [];
        for (const { input, how, el } of outputs) {
          const where = `${how}(${JSON.stringify(input.slice(0, 60))})`;
          if (el.querySelector('script, iframe, object, embed, img, svg, math, style, form, base, meta, link'))
            bad.push(`${where}: a forbidden element`);
          for (const node of Array.from(el.querySelectorAll('*'))) {
            if (!allowedTags.has(node.tagName)) bad.push(`${where}: <${node.tagName}>`);
            if (node.tagName === 'INPUT' && node.outerHTML.replace(/ checked=""/, '') !== '<input type="checkbox" disabled="">')
              bad.push(`${where}: ${node.outerHTML}`);
            for (const a of Array.from(node.attributes)) {
              if (a.name.startsWith('on') || !allowedAttrs.has(a.name)) bad.push(`${where}: ${node.tagName}[${a.name}]`);
              if ((a.name === 'href' || a.name === 'src') && !/^(https?:\/\/|mailto:)/.test(a.value))
                bad.push(`${where}: ${a.name}=${a.value}`);
              if (a.name === 'style' && !/^text-align:(left|right|center)$/.test(a.value)) bad.push(`${where}: style=${a.value}`);
              if (a.name === 'class' && !/^[\w .+#-]*$/.test(a.value)) bad.push(`${where}: class=${a.value}`);
            }
          }
        }
        const shown = outputs.find((o) => o.how === 'renderMarkdown')!.el.textContent;
        host.remove();
        return { bad, xss: (window as unknown as { __xss?: unknown }).__xss ?? null, shown };
      },
      { url: MODULE_URL, inputs: hostile },
    );
    expect(audit.bad).toEqual([]);
    expect(audit.xss).toBeNull();
    // The source is shown, as text.
    expect(audit.shown).toBe('<script>window.__xss=1;alert(1)</script>\n');
  });

  it('renders headings, lists, tables, quotes, links and highlighted code blocks with copy buttons', async () => {
    const answer = [
      '# Title',
      '## Sub *title*',
      'Some **bold**, *em*, ~~gone~~ and `inline <code>`.\nA second line.',
      'See [the docs](https://example.com/docs "Docs"), https://example.org/x. and <mailto:team@example.com>; not setup.py or a@b.example.',
      '- one\n- two\n  - nested\n- [x] done\n- [ ] todo',
      '3. three\n4. four',
      '> quoted\n\n---',
      '| left | center | right |\n|:--|:-:|--:|\n| `a` | b | 1 |\n| c | **d** | 22 |',
      '```js\nconst x = 1; // say "hi"\nconsole.log(`${x}`);\n```',
      '```mylang\nunknown <stuff>\n```',
      '```\nno language\n```',
      '    indented code',
    ].join('\n\n');
    const result = await page.evaluate(
      async ({ url, text }) => {
        const md = (await import(url)) as MarkdownModule;
        const el = document.createElement('div');
        el.className = 'body';
        document.body.append(el);
        el.innerHTML = md.renderMarkdown(text);
        // The theme is a stylesheet the module adds: wait until it applies.
        const theme = document.querySelector<HTMLLinkElement>('link[data-highlight-theme]');
        if (theme && !theme.sheet) await new Promise((resolve) => theme.addEventListener('load', resolve, { once: true }));
        const all = (selector: string) => Array.from(el.querySelectorAll(selector));
        const text1 = (selector: string) => el.querySelector(selector)?.textContent ?? null;
        const blocks = all('.codeblock').map((block) => ({
          lang: block.querySelector(':scope > .codebar > span.lang')?.textContent,
          button: block.querySelector(':scope > .codebar > button.copy')?.outerHTML,
          codeClass: block.querySelector(':scope > pre > code')?.className,
          code: block.querySelector(':scope > pre > code')?.textContent,
          tokens: block.querySelectorAll('pre > code span[class^="hljs-"]').length,
        }));
        const keyword = el.querySelector('code.hljs .hljs-keyword');
        const codeEl = el.querySelector('.codeblock pre code');
        const result = {
          h1: text1('h1'),
          h2: el.querySelector('h2')?.innerHTML,
          paragraph: el.querySelector('p')?.innerHTML,
          links: all('a').map((a) => [a.getAttribute('href'), a.getAttribute('target'), a.getAttribute('rel'), a.textContent]),
          lists: all('ul, ol').map(
            (l) => `${l.tagName}${l.getAttribute('start') ? ' start=' + l.getAttribute('start') : ''}: ${l.children.length}`,
          ),
          tasks: all('li > input[type=checkbox][disabled]').map((i) => (i as HTMLInputElement).checked),
          quote: text1('blockquote'),
          hr: all('hr').length,
          table: {
            wrapped: !!el.querySelector('.table-wrap > table'),
            head: all('th').map((th) => [th.textContent, th.getAttribute('style')]),
            cells: all('td').map((td) => td.innerHTML),
          },
          blocks,
          // Theme colours apply; the page's own code-block layout wins over the theme's.
          keywordColor: keyword ? getComputedStyle(keyword).color : null,
          codePadding: codeEl ? getComputedStyle(codeEl).padding : null,
          inline: md.renderInline('Run `npm i` **now** <b>x</b> https://example.com\nnext'),
        };
        el.remove();
        return result;
      },
      { url: MODULE_URL, text: answer },
    );
    expect(result).toEqual({
      h1: 'Title',
      h2: 'Sub <em>title</em>',
      paragraph: 'Some <strong>bold</strong>, <em>em</em>, <s>gone</s> and <code>inline &lt;code&gt;</code>.<br>\nA second line.',
      links: [
        ['https://example.com/docs', '_blank', 'noopener noreferrer', 'the docs'],
        ['https://example.org/x', '_blank', 'noopener noreferrer', 'https://example.org/x'],
        ['mailto:team@example.com', '_blank', 'noopener noreferrer', 'mailto:team@example.com'],
      ],
      lists: ['UL: 4', 'UL: 1', 'OL start=3: 2'],
      tasks: [true, false],
      quote: '\nquoted\n',
      hr: 1,
      table: {
        wrapped: true,
        head: [
          ['left', 'text-align:left'],
          ['center', 'text-align:center'],
          ['right', 'text-align:right'],
        ],
        cells: ['<code>a</code>', 'b', '1', 'c', '<strong>d</strong>', '22'],
      },
      blocks: [
        {
          lang: 'js',
          button: '<button type="button" class="copy" data-copy="">Copy</button>',
          codeClass: 'hljs language-js',
          code: 'const x = 1; // say "hi"\nconsole.log(`${x}`);',
          tokens: expect.any(Number) as number,
        },
        {
          lang: 'mylang',
          button: '<button type="button" class="copy" data-copy="">Copy</button>',
          codeClass: 'language-mylang',
          code: 'unknown <stuff>',
          tokens: 0,
        },
        {
          lang: 'text',
          button: '<button type="button" class="copy" data-copy="">Copy</button>',
          codeClass: '',
          code: 'no language',
          tokens: 0,
        },
        {
          lang: 'text',
          button: '<button type="button" class="copy" data-copy="">Copy</button>',
          codeClass: '',
          code: 'indented code',
          tokens: 0,
        },
      ],
      keywordColor: 'rgb(255, 123, 114)',
      codePadding: '0px',
      inline:
        'Run <code>npm i</code> <strong>now</strong> &lt;b&gt;x&lt;/b&gt; ' +
        '<a href="https://example.com" target="_blank" rel="noopener noreferrer">https://example.com</a><br>\nnext',
    });
    expect(result.blocks[0].tokens).toBeGreaterThanOrEqual(4);
  });

  it('StreamingMarkdown: every partial state equals a whole render of it, an unclosed fence shows as code, finish equals renderMarkdown', async () => {
    const texts = [TRICKY_MARKDOWN, mixedMarkdown(6000, 7), 'Refs: [a][r] and [b][r].\n\nMore text.\n\n[r]: https://example.com/ref\n'];
    const chunkSeeds = [1, 2, 3];
    const result = await page.evaluate(
      async ({ url, texts, chunkSeeds }) => {
        const md = (await import(url)) as MarkdownModule;
        const random = (seed: number) => () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
        const el = document.createElement('div');
        const whole = document.createElement('div');
        document.body.append(el, whole);
        const mismatches: string[] = [];
        const finished: boolean[] = [];
        texts.forEach((text, t) => {
          const rnd = random(chunkSeeds[t]);
          const streamer = new md.StreamingMarkdown(el);
          for (let end = 0; end < text.length;) {
            end = Math.min(text.length, end + 1 + Math.floor(rnd() * 12));
            const part = text.slice(0, end);
            streamer.update(part);
            whole.innerHTML = md.renderMarkdown(part);
            // Link references reach across blocks: only the final render resolves them (text 2).
            if (t !== 2 && el.innerHTML !== whole.innerHTML && mismatches.length < 3)
              mismatches.push(
                `text ${t} at ${end}: ${JSON.stringify(part.slice(-80))}\n${el.innerHTML.slice(-300)}\n≠\n${whole.innerHTML.slice(-300)}`,
              );
          }
          streamer.finish(text);
          whole.innerHTML = md.renderMarkdown(text);
          finished.push(el.innerHTML === whole.innerHTML);
        });

        // Mid-stream: an unclosed fence is already a (highlighted) code block; closing it keeps it one.
        const streamer = new md.StreamingMarkdown(el);
        streamer.update('Try this:\n\n```python\ndef f(x):\n    return x * 2\n');
        const open = {
          open: el.querySelector('.codeblock')?.classList.contains('open'),
          code: el.querySelector('.codeblock pre code.language-python')?.textContent,
          highlighted: el.querySelectorAll('.codeblock pre code .hljs-keyword').length,
        };
        streamer.update('Try this:\n\n```python\ndef f(x):\n    return x * 2\n```\n\nDone');
        const closed = { open: el.querySelector('.codeblock')?.classList.contains('open'), after: el.lastElementChild?.textContent };
        // A text that does not continue the last one (a new attempt) starts over.
        streamer.update('Something else');
        const restarted = el.innerHTML;
        streamer.finish('Something else entirely');
        const afterFinish = el.innerHTML;
        streamer.update('Something else entirely');
        const sameAfterFinish = el.innerHTML;
        el.remove();
        whole.remove();
        return { mismatches, finished, open, closed, restarted, afterFinish, sameAfterFinish };
      },
      { url: MODULE_URL, texts, chunkSeeds },
    );
    expect(result.mismatches).toEqual([]);
    expect(result.finished).toEqual([true, true, true]);
    expect(result.open).toEqual({ open: true, code: 'def f(x):\n    return x * 2', highlighted: 2 });
    expect(result.closed).toEqual({ open: false, after: 'Done' });
    expect(result.restarted).toBe('<p>Something else</p>\n');
    expect(result.afterFinish).toBe('<p>Something else entirely</p>\n');
    expect(result.sameAfterFinish).toBe(result.afterFinish);
  });

  it('in the page: a streamed answer gets a highlighted code block whose Copy button copies exactly the code', async () => {
    const code = 'for i in range(3):\n    print("hi", i)';
    fake.setDefault({ content: tokenize(`Here:\n\n\`\`\`python\n${code}\n\`\`\`\n\nDone.`), tokenDelayMs: 5 });
    await page.context().grantPermissions(['clipboard-read', 'clipboard-write'], { origin: app.url });
    await page.locator('#state[data-state="connected"]').waitFor();
    await page.locator('#input').fill('Show me a loop in Python');
    await page.locator('#input').press('Enter');
    const block = page.locator('#log .assistant[data-status="completed"] .codeblock').last();
    await block.waitFor();
    expect(await block.locator('pre > code.hljs.language-python').textContent()).toBe(code);
    expect(await block.locator('pre > code .hljs-keyword').count()).toBeGreaterThan(0);
    await block.locator('button.copy').click();
    await block.locator('button.copy', { hasText: 'Copied' }).waitFor();
    expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(code);
  });

  it('measures a 20,000-token answer streamed in ~4-character deltas: re-rendering everything vs StreamingMarkdown', async () => {
    const text = mixedMarkdown(80_000, 42);
    // ~4 characters a delta (1-7), one update every 20 deltas (a frame-batched page).
    const rnd = prng(9);
    const updateEnds: number[] = [];
    let deltas = 0;
    for (let end = 0; end < text.length;) {
      end = Math.min(text.length, end + 1 + Math.floor(rnd() * 7));
      deltas++;
      if (deltas % 20 === 0 || end === text.length) updateEnds.push(end);
    }
    const runs = await page.evaluate(
      async ({ url, text, updateEnds }) => {
        const md = (await import(url)) as MarkdownModule;
        // Laid out like an answer of the page: the page's .body styles, a readable width, visible.
        const host = document.createElement('div');
        host.className = 'msg assistant';
        host.style.cssText = 'position:fixed;inset:0;overflow:auto;max-width:48rem;background:Canvas';
        const body = document.createElement('div');
        body.className = 'body';
        host.append(body);
        document.body.append(host);

        const run = (kind: 'naive' | 'incremental') => {
          body.replaceChildren();
          const streamer = kind === 'incremental' ? new md.StreamingMarkdown(body) : null;
          let parsedChars = 0;
          const times: number[] = [];
          /** Characters parsed by each update (what the worst one had to do). */
          const parsed: number[] = [];
          for (const end of updateEnds) {
            const before = streamer ? streamer.parsedChars : parsedChars;
            const began = performance.now();
            if (streamer) streamer.update(text.slice(0, end));
            else {
              body.innerHTML = md.renderMarkdown(text.slice(0, end));
              parsedChars += end;
            }
            void body.offsetHeight; // the layout the next frame would do
            times.push(performance.now() - began);
            parsed.push((streamer ? streamer.parsedChars : parsedChars) - before);
          }
          const worst = times.indexOf(Math.max(...times));
          const began = performance.now();
          if (streamer) streamer.finish(text);
          else {
            body.innerHTML = md.renderMarkdown(text);
            parsedChars += text.length;
          }
          void body.offsetHeight;
          const finishMs = performance.now() - began;
          const sorted = [...times].sort((a, b) => a - b);
          return {
            kind,
            totalMs: times.reduce((a, b) => a + b, 0) + finishMs,
            worstUpdateMs: sorted[sorted.length - 1],
            worstUpdate: { at: updateEnds[worst], parsedChars: parsed[worst] },
            maxParsedInOneUpdate: Math.max(...parsed),
            p50UpdateMs: sorted[Math.floor(sorted.length / 2)],
            p95UpdateMs: sorted[Math.floor(sorted.length * 0.95)],
            finishMs,
            parsedChars: streamer ? streamer.parsedChars : parsedChars,
            html: body.innerHTML,
          };
        };
        run('incremental'); // warm-up (JIT, highlight.js grammars)
        // Re-rendering everything takes ~45 s on the 2-core box: once; the incremental renderer 3 times.
        const results = [run('naive')];
        for (let round = 0; round < 3; round++) results.push(run('incremental'));
        host.remove();
        return results;
      },
      { url: MODULE_URL, text, updateEnds },
    );

    const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
    const round1 = (ms: number) => Math.round(ms * 10) / 10;
    const summary = Object.fromEntries(
      [...new Set(runs.map((r) => r.kind))].map((kind) => {
        const mine = runs.filter((r) => r.kind === kind);
        return [
          kind,
          {
            totalMs: round1(median(mine.map((r) => r.totalMs))),
            worstUpdateMs: round1(median(mine.map((r) => r.worstUpdateMs))),
            p50UpdateMs: round1(median(mine.map((r) => r.p50UpdateMs))),
            p95UpdateMs: round1(median(mine.map((r) => r.p95UpdateMs))),
            finishMs: round1(median(mine.map((r) => r.finishMs))),
            parsedChars: mine[0].parsedChars,
            maxParsedInOneUpdate: mine[0].maxParsedInOneUpdate,
            runs: mine.map((r) => ({ totalMs: round1(r.totalMs), worstUpdateMs: round1(r.worstUpdateMs), worstUpdate: r.worstUpdate })),
          },
        ];
      }),
    );
    const report = {
      when: new Date().toISOString(),
      chromium: browser.version(),
      cpu: `${cpus().length} × ${cpus()[0]?.model ?? 'unknown'}`,
      answerChars: text.length,
      deltas,
      updates: updateEnds.length,
      note: 'naive: one run; incremental: median of 3 runs. Each update includes a forced layout; finish is the final whole render',
      results: summary,
    };
    writeFileSync(join(ARTIFACTS, 'markdown-render.json'), JSON.stringify(report, null, 2) + '\n');
    console.log(`streaming Markdown render (${text.length} chars, ${updateEnds.length} updates):\n${JSON.stringify(summary, null, 2)}`);

    const naive = runs.find((r) => r.kind === 'naive')!;
    const incremental = runs.find((r) => r.kind === 'incremental')!;
    // Same page at the end; and the incremental renderer parsed a small fraction of what re-rendering did.
    expect(incremental.html).toBe(naive.html);
    expect(incremental.parsedChars).toBeLessThan(naive.parsedChars / 20);
  }, 240_000);
});
