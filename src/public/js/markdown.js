/*
 * Markdown rendering for the page: model output → HTML (markdown-it, code highlighted by highlight.js,
 * both served from node_modules under /vendor; see src/app/vendor-assets.ts).
 *
 *   renderMarkdown(text)          a whole text → HTML string
 *   renderInline(text)            inline Markdown only → HTML string (notices, error texts)
 *   new StreamingMarkdown(el)     renders a growing answer into `el`: update(textSoFar), finish(text)
 *   escapeHtml(text)              plain text → HTML text
 *
 * The HTML is safe to assign to innerHTML: source HTML is escaped, links only to http(s)/mailto
 * (markdown-render.js says how).
 */
export { renderMarkdown, renderInline } from './markdown-render.js';
export { StreamingMarkdown } from './markdown-stream.js';
export { escapeHtml } from './markdown-code.js';
