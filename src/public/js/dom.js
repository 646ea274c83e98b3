/* Building DOM elements. Text is only ever set as textContent here: nothing a person or a model wrote becomes markup. */

/** <tag class=className>text</tag>, with `attrs` set as attributes. */
export function el(tag, className, text, attrs) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = text;
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
  return node;
}

export function button(className, text, attrs) {
  return el('button', className, text, { type: 'button', ...attrs });
}
