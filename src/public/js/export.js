/*
 * Exporting the open conversation as a file, built in the browser from what the page shows (no
 * server call): Markdown to read or paste elsewhere, JSON to process. Answers still streaming are
 * exported as far as they got, and say so.
 */
import { hasEnded } from './conversation.js';

const NOTES = { cancelled: '(stopped — incomplete)', failed: '(failed)', streaming: '(still being written)', queued: '(waiting)' };

export function conversationMarkdown(title, messages) {
  const out = [`# ${title}`, ''];
  for (const m of messages) {
    if (m.user !== null) out.push('## You', '', m.user, '');
    const note = NOTES[m.status] ? ' ' + NOTES[m.status] : '';
    out.push(`## Assistant${m.model ? ` (${m.model})` : ''}${note}`, '');
    if (m.answer) out.push(m.answer, '');
    if (m.status === 'failed' && m.error) out.push(`> Error (${m.error.code}): ${m.error.message}`, '');
  }
  return out.join('\n');
}

export function conversationJson(title, messages) {
  const body = {
    title,
    exportedAt: new Date().toISOString(),
    messages: messages.map((m) => ({
      messageId: m.id,
      question: m.user,
      answer: m.answer,
      thinking: m.thinking || undefined,
      status: m.status,
      complete: hasEnded(m) && m.status === 'completed',
      model: m.model || undefined,
      error: m.error || undefined,
      usage: m.usage || undefined,
    })),
  };
  return JSON.stringify(body, null, 2) + '\n';
}

/** A file name from the title: letters, digits and dashes only. */
export function fileNameOf(title, extension) {
  const base = title
    .normalize('NFKD')
    .replace(/[^\p{L}\p{N}]+/gu, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 60)
    .toLowerCase();
  return (base || 'conversation') + '.' + extension;
}

/** Offers `text` as a download named `name`. */
export function download(name, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type: type + ';charset=utf-8' }));
  const link = document.createElement('a');
  link.href = url;
  link.download = name;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
