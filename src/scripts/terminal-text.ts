/**
 * Text from the server made safe to write to a terminal. Model output is untrusted: an answer
 * holding escape sequences could set the window title (OSC 0), write the clipboard (OSC 52), clear
 * the screen (CSI 2J), reset the terminal (ESC c) or overwrite what was printed (\r, backspace).
 *
 * What comes out holds no control character but newline and tab: every other C0 control, DEL and
 * every C1 control (U+0080–U+009F, the 8-bit forms of CSI, OSC, DCS...) is dropped. Escape sequences
 * are dropped whole, their parameters and payloads included, so no garbage is left behind either:
 * CSI `ESC [ params final`, the strings OSC/DCS/SOS/PM/APC up to BEL or ST (`ESC \` or U+009C),
 * and the other `ESC (intermediates) final` sequences.
 */

/** Where the filter is within an escape sequence; a chunk may end anywhere, even right after ESC. */
type State = 'text' | 'escape' | 'escape-intermediate' | 'csi' | 'string' | 'string-escape';

const ESC = 0x1b;
const BEL = 0x07;
const CAN = 0x18;
const SUB = 0x1a;
const DEL = 0x7f;
const C1_CSI = 0x9b;
const C1_ST = 0x9c;
/** 8-bit openers of a control string: DCS, SOS, OSC, PM, APC. */
const C1_STRING_OPENERS = new Set([0x90, 0x98, 0x9d, 0x9e, 0x9f]);
/** After ESC: `P` DCS, `X` SOS, `]` OSC, `^` PM, `_` APC. */
const STRING_INTRODUCERS = new Set(['P', 'X', ']', '^', '_']);

function isC0(code: number): boolean {
  return code < 0x20;
}

function isC1(code: number): boolean {
  return code >= 0x80 && code <= 0x9f;
}

/**
 * A streaming filter: feed it the chunks of one stream in order (`write`) and print what it returns.
 * A sequence split across chunks is recognised all the same: the filter remembers where it is.
 * Nothing is held back, since only text outside a sequence is ever printed.
 */
export class TerminalTextFilter {
  private state: State = 'text';

  write(chunk: string): string {
    let out = '';
    for (const char of chunk) {
      if (this.step(char)) out += char;
    }
    return out;
  }

  /** Forgets an unfinished sequence (the stream ended): the next text starts fresh. */
  reset(): void {
    this.state = 'text';
  }

  /** Advances by one character; true if it is text to print. */
  private step(char: string): boolean {
    const code = char.codePointAt(0) ?? 0;
    switch (this.state) {
      case 'text':
        return this.text(char, code);
      case 'escape':
        return this.afterEscape(char, code);
      case 'escape-intermediate':
        // ESC, intermediates 0x20–0x2F (e.g. `ESC ( B`), then one final byte 0x30–0x7E.
        if (code >= 0x20 && code <= 0x2f) return false;
        if (code >= 0x30 && code <= 0x7e) {
          this.state = 'text';
          return false;
        }
        return this.abort(char, code);
      case 'csi':
        // Parameters 0x30–0x3F and intermediates 0x20–0x2F, up to a final byte 0x40–0x7E.
        if (code >= 0x20 && code <= 0x3f) return false;
        if (code >= 0x40 && code <= 0x7e) {
          this.state = 'text';
          return false;
        }
        return this.abort(char, code);
      case 'string':
        // Everything up to the terminator is payload (a title, clipboard data): dropped.
        if (code === BEL || code === C1_ST || code === CAN || code === SUB) this.state = 'text';
        else if (code === ESC) this.state = 'string-escape';
        return false;
      case 'string-escape':
        // `ESC \` is the terminator; any other ESC ends the string and starts a new sequence.
        this.state = 'text';
        return char === '\\' ? false : this.afterEscape(char, code);
    }
  }

  private text(char: string, code: number): boolean {
    if (char === '\n' || char === '\t') return true;
    if (code === ESC) {
      this.state = 'escape';
      return false;
    }
    if (code === C1_CSI) {
      this.state = 'csi';
      return false;
    }
    if (C1_STRING_OPENERS.has(code)) {
      this.state = 'string';
      return false;
    }
    // \r too: it lets an answer overwrite the line it is on.
    return !isC0(code) && code !== DEL && !isC1(code);
  }

  private afterEscape(char: string, code: number): boolean {
    if (char === '[') {
      this.state = 'csi';
      return false;
    }
    if (STRING_INTRODUCERS.has(char)) {
      this.state = 'string';
      return false;
    }
    if (code === ESC) return false; // a new ESC restarts the sequence
    if (code >= 0x20 && code <= 0x2f) {
      this.state = 'escape-intermediate';
      return false;
    }
    if (code >= 0x30 && code <= 0x7e) {
      // Two-character sequences: ESC c (reset), ESC 7 / ESC 8, ESC M...
      this.state = 'text';
      return false;
    }
    return this.abort(char, code);
  }

  /**
   * A character that cannot continue the sequence (a control, DEL, non-ASCII): the sequence is
   * dropped and the character is taken as text, so a newline after a broken sequence survives.
   */
  private abort(char: string, code: number): boolean {
    this.state = 'text';
    return this.text(char, code);
  }
}

/** One whole piece of server text (an error message, a stored history entry) made safe to print. */
export function terminalText(text: string): string {
  return new TerminalTextFilter().write(text);
}
