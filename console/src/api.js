// The console's only way to the server: fetch with the key in an Authorization header.
// The key lives in sessionStorage (per tab; Chromium keeps it on disk for session
// restore, so "Log out" is what removes it), never in a URL, a cookie or localStorage;
// streams are read with fetch rather than EventSource for that reason.

const KEY = 'chaser.key';

export const auth = {
  get key() { return sessionStorage.getItem(KEY); },
  set(key) { sessionStorage.setItem(KEY, key); },
  clear() {
    for (const k of Object.keys(sessionStorage)) if (k.startsWith('chaser.')) sessionStorage.removeItem(k);
  },
  onUnauthorized: () => {},
};

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function headers(extra, key) {
  return { Authorization: `Bearer ${key || auth.key}`, ...extra };
}

async function fail(r) {
  let code = `http_${r.status}`;
  let message = r.statusText || 'request failed';
  try {
    const j = await r.json();
    if (j && j.error) { code = j.error.code; message = j.error.message; }
  } catch { /* not JSON: keep the status line */ }
  if (r.status === 401) auth.onUnauthorized();
  return new ApiError(r.status, code, message);
}

export async function api(method, path, body, opts = {}) {
  const extra = {};
  let payload;
  if (body instanceof Blob || body instanceof ArrayBuffer) {
    payload = body;
    extra['Content-Type'] = 'application/octet-stream';
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    extra['Content-Type'] = 'application/json';
  }
  const r = await fetch(path, {
    method, body: payload, signal: opts.signal, cache: 'no-store', credentials: 'omit',
    headers: headers(extra, opts.key),
  });
  if (!r.ok) {
    if (opts.key && r.status === 401) throw new ApiError(401, 'unauthorized', (await r.json().catch(() => ({}))).error?.message || 'wrong key');
    throw await fail(r);
  }
  if (opts.raw) return r;
  if (r.status === 204) return null;
  return r.json();
}

export const get = (path, opts) => api('GET', path, undefined, opts);
export const post = (path, body, opts) => api('POST', path, body ?? {}, opts);

// Reads a text/event-stream through fetch; calls onEvent({event, data, id}) per event.
// Resolves when the server ends the stream; rejects on a network error or an abort.
export async function sse(path, onEvent, { signal, lastId } = {}) {
  const extra = { Accept: 'text/event-stream' };
  if (lastId) extra['Last-Event-ID'] = lastId;
  const r = await fetch(path, { headers: headers(extra), signal, cache: 'no-store', credentials: 'omit' });
  if (!r.ok) throw await fail(r);
  const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  let ev = { event: 'message', data: [], id: null };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let m;
    while ((m = /\r\n|\n|\r/.exec(buf))) {
      const line = buf.slice(0, m.index);
      buf = buf.slice(m.index + m[0].length);
      if (line === '') {
        if (ev.data.length) onEvent({ event: ev.event, data: ev.data.join('\n'), id: ev.id });
        ev = { event: 'message', data: [], id: null };
        continue;
      }
      if (line.startsWith(':')) continue;
      const c = line.indexOf(':');
      const name = c < 0 ? line : line.slice(0, c);
      let v = c < 0 ? '' : line.slice(c + 1);
      if (v.startsWith(' ')) v = v.slice(1);
      if (name === 'event') ev.event = v;
      else if (name === 'data') ev.data.push(v);
      else if (name === 'id') ev.id = v;
    }
  }
}

// Downloads through fetch (the key in a header) and hands the bytes to the browser
// as a blob: URL, so no link ever carries the key.
export async function download(path, filename) {
  const r = await api('GET', path, undefined, { raw: true });
  saveBlob(await r.blob(), filename);
}

export function saveBlob(blob, filename) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = filename.replace(/[\\/]/g, '_') || 'download';
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
