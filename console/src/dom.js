// The one way the console builds DOM: text always goes in as text nodes and attributes
// through setAttribute, never through innerHTML, so strings from sandboxes (output, file
// names, labels, image names) can never become markup.

const SAFE_HREF = /^(#|\/(?!\/)|blob:)/;

// Bidirectional controls (LRE..RLO, LRI..PDI, LRM, RLM) in a name or a command line
// would reorder what is shown around them ("Trojan Source": a file that reads
// `txt.exe` as `exe.txt`); they are shown as what they are instead.
const BIDI = /[\u200E\u200F\u202A-\u202E\u2066-\u2069]/g;

const shownAs = (c) => `[U+${c.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}]`;

export function visible(text) {
  return String(text).replace(BIDI, shownAs);
}

// What goes into a one-line message a program's strings could spoof (confirmation
// dialogs): besides bidi controls, line breaks, other control characters and the Arabic
// letter mark are shown as code points, and runs of spaces are cut, so a name cannot
// push the dialog's own words out of view.
const CONTROLS = /[\u0000-\u001F\u007F-\u009F\u061C\u2028\u2029\u200E\u200F\u202A-\u202E\u2066-\u2069]/g;

export function oneLine(text, most = 300) {
  const shown = String(text).replace(CONTROLS, shownAs).replace(/\s{4,}/g, '   ');
  return shown.length > most ? `${shown.slice(0, most)}...` : shown;
}

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'value') el.value = v;
    else if (k === 'checked') el.checked = !!v;
    else {
      if ((k === 'href' || k === 'src' || k === 'action') && !SAFE_HREF.test(String(v))) {
        throw new Error(`refusing ${k}=${String(v).slice(0, 40)}`);
      }
      el.setAttribute(k, v === true ? '' : (k === 'title' || k.startsWith('aria-')) ? visible(v) : String(v));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const c of [children].flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : visible(c));
  }
  return el;
}

// replaceChildren without the "null" text nodes it makes of absent children.
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

export const enc = encodeURIComponent;

export function age(iso) {
  if (!iso) return '';
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 60) return `${Math.floor(s)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d`;
}

export function bytes(n) {
  if (n == null) return '';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${u[i]}`;
}

export function status(s) {
  return h('span', { class: `status status-${String(s).replace(/[^a-z_]/g, '')}` }, s);
}

// Keyed table rows: a row is rebuilt only when its data changed, so a poll does not
// take the keyboard focus away from a row that did not change.
export function syncRows(tbody, items, key, render) {
  const old = new Map();
  for (const tr of tbody.children) old.set(tr.dataset.key, tr);
  const rows = items.map((item) => {
    const sig = JSON.stringify(item);
    const tr = old.get(key(item));
    if (tr && tr.dataset.sig === sig) return tr;
    const fresh = render(item);
    fresh.dataset.key = key(item);
    fresh.dataset.sig = sig;
    return fresh;
  });
  if (!tbody.firstChild) { tbody.append(...rows); return; }  // the first fill, in one go
  const same = rows.length === tbody.children.length && rows.every((r, i) => r === tbody.children[i]);
  if (!same) {
    rows.forEach((r, i) => { if (tbody.children[i] !== r) tbody.insertBefore(r, tbody.children[i] || null); });
    while (tbody.children.length > rows.length) tbody.lastChild.remove();
  }
}

export function table(headers, caption) {
  const tbody = h('tbody');
  const el = h('table', {},
    caption ? h('caption', { class: 'sr-only' }, caption) : null,
    h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col' }, x)))), tbody);
  return { el, tbody };
}

export function field(label, input, hint) {
  const id = input.id || `f-${Math.random().toString(36).slice(2)}`;
  input.id = id;
  return h('div', { class: 'field' }, h('label', { for: id }, label), input,
    hint ? h('small', {}, hint) : null);
}
