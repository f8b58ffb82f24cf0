// One command: its output followed live over SSE (resumed from the last offset after
// a drop), stdin, signals and a download of everything it wrote.
import { auth, get, post, sse, saveBlob, ApiError } from '../api.js';
import { h, enc, status, field, visible } from '../dom.js';
import { flash } from '../main.js';

const KEEP_CHARS = 2 * 1024 * 1024;  // what the page keeps on screen; the server keeps all

export function commandView(main, [sid, cid], ctx) {
  const base = `/v1/sessions/${enc(sid)}/commands/${enc(cid)}`;
  const head = h('dl', { class: 'facts' });
  const out = h('pre', { id: 'output', class: 'output', tabindex: '0', 'aria-label': 'Command output', 'aria-live': 'off' });
  const state = h('p', { id: 'stream-state', class: 'muted', 'aria-live': 'polite' }, 'Connecting...');
  main.append(
    h('p', {}, h('a', { href: `#/sessions/${enc(sid)}` }, `\u2190 Session ${sid}`)),
    h('h1', {}, 'Command ', h('code', {}, cid)), head, controls(base, cid), state, out);

  const showCommand = async () => {
    const c = await get(`${base}?limit=0`, { signal: ctx.signal });
    head.replaceChildren(...[['Command', h('code', {}, c.command)], ['Status', status(c.status)],
      ['Exit code', c.exit_code ?? '-'], ['Signal', c.signal || '-'], ['PID', c.pid ?? '-']]
      .flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
    return c;
  };
  showCommand().catch(flash);
  follow(base, out, state, ctx, showCommand);
}

async function follow(base, out, state, ctx, refresh) {
  let lastId = null;
  let done = false;
  let shown = 0;
  const add = (text) => {
    out.append(text);
    shown += text.length;
    if (shown > KEEP_CHARS) { out.textContent = out.textContent.slice(-KEEP_CHARS / 2); shown = out.textContent.length; }
    const nearBottom = out.scrollHeight - out.scrollTop - out.clientHeight < 40;
    if (nearBottom) out.scrollTop = out.scrollHeight;
  };
  while (!done && !ctx.signal.aborted) {
    try {
      state.textContent = lastId ? `Following (resumed at byte ${lastId})` : 'Following';
      await sse(`${base}/stream${lastId ? `?from=${enc(lastId)}` : ''}`, (ev) => {
        if (ev.event === 'output') {
          lastId = ev.id;
          const d = JSON.parse(ev.data);
          add(visible(d.data ?? ''));
        } else if (ev.event === 'exit') {
          done = true;
          const d = JSON.parse(ev.data);
          state.textContent = `Finished: ${d.status}${d.exit_code != null ? `, exit code ${d.exit_code}` : ''}${d.signal ? `, signal ${d.signal}` : ''}`;
          refresh().catch(() => {});
        } else if (ev.event === 'error' && JSON.parse(ev.data).error?.code === 'key_revoked') {
          done = true;  // the server ended the stream: this key opens nothing any more
          auth.onUnauthorized();
        }
      }, { signal: ctx.signal });
    } catch (err) {
      if (ctx.signal.aborted) return;
      if (err instanceof ApiError && err.status < 500) { flash(err); return; }
      state.textContent = 'Connection lost; resuming...';
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}

function controls(base, cid) {
  const stdin = h('form', { class: 'inline-form', 'aria-label': 'Send input' },
    field('Input', h('input', { name: 'input', autocomplete: 'off', spellcheck: 'false' }), 'a newline is added'),
    h('button', { type: 'submit' }, 'Send'),
    h('button', { type: 'button', onclick: () => post(`${base}/stdin`, { eof: true }).then(() => flash('stdin closed', 'ok'), flash) }, 'Close stdin'));
  stdin.addEventListener('submit', async (e) => {
    e.preventDefault();
    const input = stdin.querySelector('input');
    try { await post(`${base}/stdin`, { input: `${input.value}\n` }); input.value = ''; } catch (err) { flash(err); }
  });
  const sig = h('select', { name: 'signal' }, ['TERM', 'INT', 'HUP', 'KILL', 'QUIT', 'USR1', 'USR2', 'STOP', 'CONT']
    .map((s) => h('option', { value: s }, `SIG${s}`)));
  const kill = h('form', { class: 'inline-form', 'aria-label': 'Send a signal' }, field('Signal', sig),
    h('button', { type: 'submit', class: 'danger' }, 'Send signal'));
  kill.addEventListener('submit', async (e) => {
    e.preventDefault();
    try { await post(`${base}/kill`, { signal: sig.value }); flash(`SIG${sig.value} sent`, 'ok'); } catch (err) { flash(err); }
  });
  const dl = h('button', { type: 'button', onclick: () => downloadOutput(base, cid).catch(flash) }, 'Download output');
  return h('div', { class: 'controls' }, stdin, kill, dl);
}

// Pages through the kept output (1 MiB a request) into one file.
async function downloadOutput(base, cid) {
  const parts = [];
  let from = 0;
  for (;;) {
    const c = await get(`${base}?from=${from}&limit=1048576`);
    parts.push(c.output || '');
    if (c.next_offset == null || c.next_offset >= c.output_size || c.next_offset === from) break;
    from = c.next_offset;
  }
  saveBlob(new Blob(parts, { type: 'text/plain' }), `${cid}.log`);
}
