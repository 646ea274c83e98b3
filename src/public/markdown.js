/*
 * A small, safe Markdown renderer for chat messages (no dependencies, no build step).
 *
 * Safety: every piece of source text goes through escapeHtml() before it reaches the output; the
 * only markup in the result is the fixed set of tags written below. Link targets are accepted only
 * when they are http(s) URLs, and are escaped too (quotes included), so they cannot leave their
 * attribute. Raw HTML in the input is therefore shown as text, never interpreted.
 *
 * Streaming: the input may be cut anywhere. An unclosed ``` fence renders as a code block of what
 * has arrived so far; unclosed emphasis or links are shown literally until they are closed.
 *
 * Supported: fenced code blocks (``` or ~~~, with a language), inline `code`, **bold**, __bold__,
 * *italic*, _italic_, ~~strike~~, # headings, - / * / + and 1. lists (nested by indentation),
 * > quotes, --- rules, GitHub-style tables, [links](https://...) and bare http(s) URLs,
 * paragraphs with line breaks.
 */
(function (root) {
  'use strict';

  var ESCAPES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

  function escapeHtml(text) {
    return String(text).replace(/[&<>"']/g, function (c) {
      return ESCAPES[c];
    });
  }

  // Placeholders for already-rendered inline pieces (code spans, links). NUL never survives input cleaning.
  var HOLE = '\u0000';
  var HOLE_RE = /\u0000(\d+)\u0000/g;

  var FENCE_RE = /^ {0,3}(`{3,}|~{3,})[ \t]*([^\s`]*)[^`]*$/;
  var HEADING_RE = /^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$/;
  var HR_RE = /^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$/;
  var QUOTE_RE = /^ {0,3}> ?(.*)$/;
  var LIST_RE = /^([ \t]*)([-*+]|\d{1,9}[.)])[ \t]+(.*)$/;
  var TABLE_SEP_RE = /^[ \t]*\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$/;

  function isBlank(line) {
    return /^\s*$/.test(line);
  }

  function indentOf(line) {
    var m = /^[ \t]*/.exec(line)[0];
    return m.replace(/\t/g, '    ').length;
  }

  /** Removes `n` columns of leading indentation (tabs count as 4). */
  function dedent(line, n) {
    var i = 0;
    var col = 0;
    while (i < line.length && col < n && (line[i] === ' ' || line[i] === '\t')) {
      col += line[i] === '\t' ? 4 : 1;
      i++;
    }
    return line.slice(i);
  }

  // ------------------------------------------------------------------------------------------
  // Inline
  // ------------------------------------------------------------------------------------------

  function safeUrl(url) {
    return /^https?:\/\/[^\s<>"'`]+$/i.test(url) ? url : null;
  }

  function linkHtml(url, labelHtml) {
    return '<a href="' + escapeHtml(url) + '" target="_blank" rel="noopener noreferrer">' + labelHtml + '</a>';
  }

  /** Splits a trailing punctuation run (and unbalanced closing parentheses) off a bare URL. */
  function trimBareUrl(url) {
    var trail = '';
    for (;;) {
      var last = url.charAt(url.length - 1);
      if (/[.,;:!?*_~'"]/.test(last)) {
        trail = last + trail;
        url = url.slice(0, -1);
      } else if (last === ')' && (url.match(/\(/g) || []).length < (url.match(/\)/g) || []).length) {
        trail = last + trail;
        url = url.slice(0, -1);
      } else {
        return [url, trail];
      }
    }
  }

  function emphasis(escaped) {
    return escaped
      .replace(/\*\*(?=\S)([\s\S]*?\S)\*\*/g, '<strong>$1</strong>')
      .replace(/(^|[^\w])__(?=\S)([\s\S]*?\S)__(?!\w)/g, '$1<strong>$2</strong>')
      .replace(/~~(?=\S)([\s\S]*?\S)~~/g, '<del>$1</del>')
      .replace(/(^|[^*\w])\*(?=[^\s*])([^*\n<]*?[^\s*<])\*(?![*\w])/g, '$1<em>$2</em>')
      .replace(/(^|[^\w])_(?=[^\s_])([^_\n<]*?[^\s_<])_(?!\w)/g, '$1<em>$2</em>');
  }

  /** Renders one block's text (which may contain newlines) to inline HTML. */
  function inline(text, allowLinks) {
    var holes = [];
    var hole = function (html) {
      holes.push(html);
      return HOLE + (holes.length - 1) + HOLE;
    };
    var s = String(text);
    // Code spans first: nothing inside them is interpreted.
    s = s.replace(/(`+)([^`]|[^`][\s\S]*?[^`])\1(?!`)/g, function (_, ticks, code) {
      var body = code.replace(/\n/g, ' ');
      if (/^ .* $/.test(body) && /\S/.test(body)) body = body.slice(1, -1);
      return hole('<code>' + escapeHtml(body) + '</code>');
    });
    if (allowLinks !== false) {
      // [label](http(s) url): other schemes (javascript:, data:, ...) stay plain text.
      s = s.replace(/\[([^\]\n]+)\]\(\s*([^\s()]+(?:\([^\s()]*\)[^\s()]*)*)(?:\s+"[^"\n]*")?\s*\)/g, function (all, label, url) {
        var safe = safeUrl(url);
        if (!safe) return all;
        return hole(linkHtml(safe, restore(emphasis(escapeHtml(label)), holes)));
      });
      // <https://...> autolinks and bare URLs.
      s = s.replace(/<(https?:\/\/[^\s<>]+)>/gi, function (all, url) {
        var safe = safeUrl(url);
        return safe ? hole(linkHtml(safe, escapeHtml(safe))) : all;
      });
      s = s.replace(/\bhttps?:\/\/[^\s<>"'`\u0000]+/gi, function (all) {
        var parts = trimBareUrl(all);
        var safe = safeUrl(parts[0]);
        return safe && /^https?:\/\/./i.test(safe) ? hole(linkHtml(safe, escapeHtml(safe))) + parts[1] : all;
      });
    }
    var html = emphasis(escapeHtml(s)).replace(/\n/g, '<br>');
    return restore(html, holes);
  }

  function restore(html, holes) {
    // Holes may nest (a link label containing code), so restore until none is left.
    for (var guard = 0; guard < 4 && HOLE_RE.test(html); guard++) {
      HOLE_RE.lastIndex = 0;
      html = html.replace(HOLE_RE, function (_, i) {
        return holes[Number(i)] || '';
      });
    }
    HOLE_RE.lastIndex = 0;
    return html;
  }

  // ------------------------------------------------------------------------------------------
  // Blocks
  // ------------------------------------------------------------------------------------------

  function codeBlock(lang, body, closed) {
    var safeLang = lang.replace(/[^\w+#.-]/g, '').slice(0, 32);
    return (
      '<div class="codeblock' + (closed ? '' : ' open') + '">' +
      '<div class="codebar"><span class="lang">' + escapeHtml(safeLang || 'text') + '</span>' +
      '<button type="button" class="copy" data-copy="">Copy</button></div>' +
      '<pre><code' + (safeLang ? ' class="language-' + escapeHtml(safeLang) + '"' : '') + '>' +
      escapeHtml(body) +
      '</code></pre></div>'
    );
  }

  function splitRow(line) {
    var s = line.trim();
    if (s.charAt(0) === '|') s = s.slice(1);
    if (s.charAt(s.length - 1) === '|' && s.charAt(s.length - 2) !== '\\') s = s.slice(0, -1);
    var cells = [];
    var cur = '';
    var inCode = false;
    for (var i = 0; i < s.length; i++) {
      var c = s.charAt(i);
      if (c === '\\' && s.charAt(i + 1) === '|') {
        cur += '|';
        i++;
      } else if (c === '`') {
        inCode = !inCode;
        cur += c;
      } else if (c === '|' && !inCode) {
        cells.push(cur.trim());
        cur = '';
      } else {
        cur += c;
      }
    }
    cells.push(cur.trim());
    return cells;
  }

  function table(headerLine, sepLine, rows) {
    var aligns = splitRow(sepLine).map(function (c) {
      var left = c.charAt(0) === ':';
      var right = c.charAt(c.length - 1) === ':';
      return left && right ? 'center' : right ? 'right' : left ? 'left' : '';
    });
    var header = splitRow(headerLine);
    var cell = function (tag, text, i) {
      var align = aligns[i] ? ' style="text-align:' + aligns[i] + '"' : '';
      return '<' + tag + align + '>' + inline(text) + '</' + tag + '>';
    };
    var html = '<div class="table-wrap"><table><thead><tr>';
    header.forEach(function (text, i) {
      html += cell('th', text, i);
    });
    html += '</tr></thead><tbody>';
    rows.forEach(function (row) {
      html += '<tr>';
      var cells = splitRow(row);
      for (var i = 0; i < header.length; i++) html += cell('td', cells[i] || '', i);
      html += '</tr>';
    });
    return html + '</tbody></table></div>';
  }

  function startsBlock(line, next) {
    return (
      FENCE_RE.test(line) ||
      HEADING_RE.test(line) ||
      HR_RE.test(line) ||
      QUOTE_RE.test(line) ||
      LIST_RE.test(line) ||
      (line.indexOf('|') >= 0 && next !== undefined && TABLE_SEP_RE.test(next) && next.indexOf('-') >= 0)
    );
  }

  /** Quotes and lists nest at most this deep; deeper content is shown as plain paragraphs. */
  var MAX_DEPTH = 16;

  /** Parses a list starting at lines[start]; returns [html, nextIndex]. */
  function list(lines, start, depth) {
    var first = LIST_RE.exec(lines[start]);
    var baseIndent = indentOf(first[1]);
    var ordered = /\d/.test(first[2]);
    var items = [];
    var i = start;
    while (i < lines.length) {
      var m = LIST_RE.exec(lines[i]);
      if (!m || indentOf(m[1]) !== baseIndent || /\d/.test(m[2]) !== ordered) break;
      // The item's own text starts after its marker; deeper-indented lines belong to it.
      var contentIndent = indentOf(m[1]) + m[2].length + 1;
      var body = [m[3]];
      i++;
      while (i < lines.length) {
        var line = lines[i];
        if (isBlank(line)) {
          // A blank line continues the item only if indented content follows.
          var j = i;
          while (j < lines.length && isBlank(lines[j])) j++;
          if (j < lines.length && indentOf(lines[j]) > baseIndent) {
            for (; i < j; i++) body.push('');
            continue;
          }
          break;
        }
        var ind = indentOf(line);
        if (ind > baseIndent) {
          body.push(dedent(line, Math.min(ind, contentIndent)));
          i++;
        } else if (!LIST_RE.test(line) && !startsBlock(line, lines[i + 1]) && body.length === 1) {
          body[0] += '\n' + line.trim(); // a lazy continuation of the item's first line
          i++;
        } else {
          break;
        }
      }
      items.push(body);
      // Blank lines between items of the same list.
      var k = i;
      while (k < lines.length && isBlank(lines[k])) k++;
      var again = k < lines.length ? LIST_RE.exec(lines[k]) : null;
      if (k > i && again && indentOf(again[1]) === baseIndent && /\d/.test(again[2]) === ordered) i = k;
    }
    var startNum = ordered ? parseInt(first[2], 10) : 1;
    var html = ordered ? '<ol' + (startNum !== 1 ? ' start="' + startNum + '"' : '') + '>' : '<ul>';
    items.forEach(function (body) {
      var rest = body.slice(1);
      var restHtml = rest.some(function (l) {
        return !isBlank(l);
      })
        ? blocks(rest, depth + 1)
        : '';
      var task = /^\[([ xX])\][ \t]+/.exec(body[0]);
      var head = task ? body[0].slice(task[0].length) : body[0];
      var box = task ? '<input type="checkbox" disabled' + (task[1] === ' ' ? '' : ' checked') + '> ' : '';
      html += '<li>' + box + inline(head) + restHtml + '</li>';
    });
    return [html + (ordered ? '</ol>' : '</ul>'), i];
  }

  function blocks(lines, depth) {
    depth = depth || 0;
    var nest = depth < MAX_DEPTH;
    var out = [];
    var i = 0;
    while (i < lines.length) {
      var line = lines[i];
      var m;
      if (isBlank(line)) {
        i++;
        continue;
      }
      if ((m = FENCE_RE.exec(line))) {
        var fence = m[1];
        var fenceIndent = indentOf(line);
        var closeRe = new RegExp('^ {0,3}' + (fence.charAt(0) === '`' ? '`' : '~') + '{' + fence.length + ',}[ \\t]*$');
        var code = [];
        var closed = false;
        i++;
        while (i < lines.length) {
          if (closeRe.test(lines[i])) {
            closed = true;
            i++;
            break;
          }
          code.push(dedent(lines[i], fenceIndent));
          i++;
        }
        // While streaming, the newline after the last line that arrived is not content yet.
        if (!closed && code.length && code[code.length - 1] === '') code.pop();
        out.push(codeBlock(m[2] || '', code.join('\n'), closed));
        continue;
      }
      if ((m = HEADING_RE.exec(line))) {
        var level = m[1].length;
        out.push('<h' + level + '>' + inline(m[2]) + '</h' + level + '>');
        i++;
        continue;
      }
      if (HR_RE.test(line)) {
        out.push('<hr>');
        i++;
        continue;
      }
      if (nest && QUOTE_RE.test(line)) {
        var quoted = [];
        while (i < lines.length && !isBlank(lines[i])) {
          var q = QUOTE_RE.exec(lines[i]);
          quoted.push(q ? q[1] : lines[i]);
          i++;
        }
        out.push('<blockquote>' + blocks(quoted, depth + 1) + '</blockquote>');
        continue;
      }
      if (nest && LIST_RE.test(line)) {
        var result = list(lines, i, depth);
        out.push(result[0]);
        i = result[1];
        continue;
      }
      if (line.indexOf('|') >= 0 && i + 1 < lines.length && TABLE_SEP_RE.test(lines[i + 1]) && lines[i + 1].indexOf('-') >= 0) {
        var header = line;
        var sep = lines[i + 1];
        var rows = [];
        i += 2;
        while (i < lines.length && !isBlank(lines[i]) && lines[i].indexOf('|') >= 0) {
          rows.push(lines[i]);
          i++;
        }
        out.push(table(header, sep, rows));
        continue;
      }
      // Paragraph: up to a blank line or the start of another block.
      var para = [line.trim()];
      i++;
      while (i < lines.length && !isBlank(lines[i]) && !(nest ? startsBlock(lines[i], lines[i + 1]) : FENCE_RE.test(lines[i]))) {
        para.push(lines[i].trim());
        i++;
      }
      out.push('<p>' + inline(para.join('\n')) + '</p>');
    }
    return out.join('');
  }

  /** Markdown source → safe HTML. */
  function renderMarkdown(source) {
    var text = String(source == null ? '' : source)
      .replace(/\u0000/g, '\uFFFD')
      .replace(/\r\n?/g, '\n');
    return blocks(text.split('\n'));
  }

  /** Inline-only rendering (for one-line texts such as error messages). */
  function renderInline(source) {
    return inline(String(source == null ? '' : source).replace(/\u0000/g, '\uFFFD'));
  }

  var api = { renderMarkdown: renderMarkdown, renderInline: renderInline, escapeHtml: escapeHtml };
  if (typeof module === 'object' && module.exports) module.exports = api;
  else root.Markdown = api;
})(typeof window !== 'undefined' ? window : this);
