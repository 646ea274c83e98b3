/*
 * The model picker in the top bar. Its options come from GET /models; each chat remembers its model
 * in the list (chats.js) and new chats take the one picked last. With one model it is shown
 * disabled (the person still sees what answers); on a server without a model list it is hidden and
 * no model is sent (the server uses its default).
 */
import { fetchModels } from './api.js';
import { lastPickedModel, rememberPickedModel } from './chats.js';
import { el } from './dom.js';

const select = document.getElementById('model');
const picker = document.getElementById('model-picker');

let known = null; // {default, models} once loaded

/** Loads the list (once; a failure leaves the picker hidden). */
export async function loadModels() {
  try {
    known = await fetchModels();
  } catch {
    known = null;
  }
  picker.hidden = !known;
  if (!known) return;
  select.replaceChildren(...known.models.map((m) => el('option', null, m, { value: m })));
  select.disabled = known.models.length < 2;
  select.title = known.models.length < 2 ? 'The only model this server offers' : 'The model that answers in this chat';
}

const offered = (model) => !!known && known.models.includes(model);

/** The model a new chat starts with: the one picked last, while the server still offers it. */
export function modelForNewChat() {
  const last = lastPickedModel();
  return offered(last) ? last : null;
}

/** Shows the chat's model (or, when it has none or it is no longer offered, the one a new chat would take). */
export function showModelOf(entry) {
  if (!known) return;
  select.value = offered(entry && entry.model) ? entry.model : modelForNewChat() || known.default;
}

/** The model to send with a message, or undefined when the server has no list (then it decides). */
export const pickedModel = () => (known ? select.value : undefined);

/** Calls `fn(model)` when the person picks a model. */
export function onModelPicked(fn) {
  select.addEventListener('change', () => {
    rememberPickedModel(select.value);
    fn(select.value);
  });
}
