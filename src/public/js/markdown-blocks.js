/*
 * Where a growing Markdown text can be cut into independent top-level blocks, found by scanning each
 * line once. A cut is made only where Markdown itself starts afresh: at the first line after blank
 * lines that starts in column 0, outside fenced code. Such a line ends every open construct (paragraph,
 * quote, table, indented code, list item), with one exception handled here: a list item marker after a
 * list continues that list (a "loose" list), so it is not a cut while the block has list items.
 *
 * Rendering the pieces separately then gives the same HTML as rendering the whole (the browser test
 * checks this for every prefix of its texts), except for link reference definitions ("[x]: https://..."),
 * which reach across blocks, and a "```" line inside an indented code block, which is taken for a
 * fence here. Both only affect the answer while it streams: the final render is whole.
 * Only complete lines are looked at: a line still arriving may yet turn into a list item or a fence.
 */
const BLANK = /^[ \t\r]*$/;
const LIST_ITEM = /^ {0,3}(?:[-*+]|\d{1,9}[.)])(?:[ \t]|\r?$)/;
// Any indentation: fences inside list items are indented too.
const FENCE = /^[ \t]*(`{3,}|~{3,})(.*)$/;
const FENCE_END = /^[ \t]*(`{3,}|~{3,})[ \t\r]*$/;

export class BlockSplitter {
  /** Offset of the first line not scanned yet (0, or just after a newline). */
  #scanned = 0;
  /** The marker of the open fence ("```", "~~~~"), or null outside fenced code. */
  #fence = null;
  #afterBlank = false;
  /** Whether the block begun at the last cut has a list item line. */
  #listInBlock = false;
  #lastCut = 0;

  /**
   * Scans the complete lines added since the last call (`text` must extend the text of earlier calls)
   * and returns where the last block, the one still open, starts.
   */
  lastBlockStart(text) {
    let start = this.#scanned;
    for (let end = text.indexOf('\n', start); end !== -1; start = end + 1, end = text.indexOf('\n', start)) {
      this.#line(text.slice(start, end), start);
    }
    this.#scanned = start;
    return this.#lastCut;
  }

  #line(line, start) {
    if (this.#fence !== null) {
      const end = FENCE_END.exec(line);
      if (end && end[1][0] === this.#fence[0] && end[1].length >= this.#fence.length) this.#fence = null;
      return;
    }
    if (BLANK.test(line)) {
      this.#afterBlank = true;
      return;
    }
    const item = LIST_ITEM.test(line);
    if (this.#afterBlank && line[0] !== ' ' && line[0] !== '\t' && !(item && this.#listInBlock)) {
      this.#lastCut = start;
      this.#listInBlock = false;
    }
    this.#afterBlank = false;
    if (item) this.#listInBlock = true;
    const fence = FENCE.exec(line);
    // A backtick fence's info string has no backticks (else the line is inline code).
    if (fence && !(fence[1][0] === '`' && fence[2].includes('`'))) this.#fence = fence[1];
  }
}
