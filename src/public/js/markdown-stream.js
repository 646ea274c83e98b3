/*
 * A streamed answer rendered as it grows, without parsing the whole answer again for every update.
 *
 * The text is cut into top-level blocks (markdown-blocks.js). Blocks behind the last cut are final:
 * each is parsed once and its DOM nodes stay in place. Only the last, still open block is parsed again
 * on each update and its nodes replaced. An update therefore costs the size of one block, not of the
 * answer. `finish` renders the whole text once, so the end result is exactly renderMarkdown(text).
 */
import { BlockSplitter } from './markdown-blocks.js';
import { renderMarkdown } from './markdown-render.js';

export class StreamingMarkdown {
  #element;
  #text = '';
  #splitter = new BlockSplitter();
  /** Where the open block starts: text before it is rendered into nodes that stay. */
  #settled = 0;
  /** The open block's nodes, replaced on each update. */
  #openNodes = [];
  /** After finish the element holds a whole render: the next different text starts over. */
  #finished = false;
  #parsedChars = 0;

  constructor(element) {
    this.#element = element;
    element.replaceChildren();
  }

  /** Characters handed to the Markdown parser so far (to compare with re-rendering everything). */
  get parsedChars() {
    return this.#parsedChars;
  }

  /** `fullText`: the answer so far. Normally it extends the previous one; anything else starts over. */
  update(fullText) {
    const text = String(fullText ?? '');
    if (text === this.#text) return;
    if (this.#finished || !text.startsWith(this.#text)) this.#restart();
    this.#text = text;
    const openStart = this.#splitter.lastBlockStart(text);
    for (const node of this.#openNodes) node.remove();
    if (openStart > this.#settled) {
      // Blocks completed since the last update: parsed together, once.
      this.#append(text.slice(this.#settled, openStart));
      this.#settled = openStart;
    }
    this.#openNodes = this.#append(text.slice(openStart));
  }

  /** The final text: rendered whole (link references reach across blocks), code highlighted. */
  finish(fullText) {
    const text = String(fullText ?? '');
    this.#parsedChars += text.length;
    this.#element.innerHTML = renderMarkdown(text);
    this.#text = text;
    this.#finished = true;
  }

  #restart() {
    this.#element.replaceChildren();
    this.#text = '';
    this.#splitter = new BlockSplitter();
    this.#settled = 0;
    this.#openNodes = [];
    this.#finished = false;
  }

  /** Renders `markdown` and appends the result; returns the appended nodes. */
  #append(markdown) {
    if (!markdown) return [];
    this.#parsedChars += markdown.length;
    const template = document.createElement('template');
    template.innerHTML = renderMarkdown(markdown);
    const nodes = Array.from(template.content.childNodes);
    this.#element.append(template.content);
    return nodes;
  }
}
