/*
 * GitHub-style task lists ("- [ ] step", "- [x] done") as disabled checkboxes, as the page's
 * previous renderer showed them. A markdown-it plugin: a core rule after all others that turns the
 * leading "[ ] " of a list item's first paragraph into a fixed, attribute-free <input>.
 */
const TASK = /^\[([ xX])\][ \t]+/;

function markTasks(state) {
  const tokens = state.tokens;
  for (let i = 2; i < tokens.length; i++) {
    const inline = tokens[i];
    if (inline.type !== 'inline' || tokens[i - 1].type !== 'paragraph_open' || tokens[i - 2].type !== 'list_item_open') continue;
    const first = inline.children[0];
    const match = first && first.type === 'text' ? TASK.exec(first.content) : null;
    if (!match) continue;
    first.content = first.content.slice(match[0].length);
    // The only markup added here is this constant: nothing of the source text goes into it.
    const box = new state.Token('html_inline', '', 0);
    box.content = match[1] === ' ' ? '<input type="checkbox" disabled> ' : '<input type="checkbox" disabled checked> ';
    inline.children.unshift(box);
  }
}

export function taskLists(md) {
  // Last, after text_join: by then the "[ ]" of an item is one text token, whatever rules split it.
  md.core.ruler.push('task_lists', markTasks);
}
