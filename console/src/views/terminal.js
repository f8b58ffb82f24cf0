// A terminal on a session: xterm.js over the PTY WebSocket in human mode. The socket
// is opened with a single-use ticket (the only credential ever in a URL); the pty_id
// is kept in sessionStorage so a reload reattaches to the same shell.
import { Terminal } from '@xterm/xterm';
import { FitAddon } from '@xterm/addon-fit';
import { post } from '../api.js';
import { h, enc, oneLine } from '../dom.js';
import { flash } from '../main.js';

const encoder = new TextEncoder();

// xterm.js styles its rows through <style> elements it creates; the page's CSP admits
// only those carrying this response's nonce, which the server puts in a meta tag.
const nonce = document.querySelector('meta[name="csp-nonce"]')?.content;
if (nonce && !nonce.startsWith('__')) {
  const create = Document.prototype.createElement;
  Document.prototype.createElement = function createElement(tag, options) {
    const el = create.call(this, tag, options);
    if (String(tag).toLowerCase() === 'style') el.nonce = nonce;
    return el;
  };
}

// Links a program prints (OSC 8) open only as http(s), after a confirmation, in a
// window that cannot reach back to this page.
const linkHandler = {
  activate(_event, uri) {
    if (!/^https?:\/\//i.test(uri)) return;
    let host;
    try { host = new URL(uri).host; } catch { return; }
    // The host on a line of its own, the whole address shown escaped: a bidi or
    // newline trick in the address cannot make it read as another site.
    if (confirm(`Open a link to ${oneLine(host)} in a new window?\n\n${oneLine(uri)}`)) {
      window.open(uri, '_blank', 'noopener,noreferrer');
    }
  },
};

// A count no program needs can freeze the tab for minutes: xterm.js 6 runs REP, IL, DL,
// SU, SD and CHT once per unit of the count (`printf 'A\033[2147483647b'`, 14 bytes, is
// about two minutes, and again on every reload as the scrollback replays). Counts past
// what the screen holds are cut to that, which looks the same (a REP's extra lines
// would only have scrolled away); the cut sequence is written after the rest of the
// chunk it came in, which no real program's output notices as none sends such counts.
const CAPPED = { b: (t) => t.cols * t.rows, L: (t) => t.rows, M: (t) => t.rows,
  S: (t) => t.rows, T: (t) => t.rows, I: (t) => t.cols, Z: (t) => t.cols };

// Combining marks stack on one cell, and xterm.js's cost grows with the square of a
// stack's length (200 KB of "e" and U+0301 froze a tab for minutes): past MOST_MARKS on
// one character, the rest are dropped from what is drawn (the output log keeps them).
const MOST_MARKS = 16;
const MARKS = /\p{M}+/gu;
const ENDS_IN_MARK = /\p{M}$/u;

export function markTamer() {
  let carry = 0;  // marks at the end of what was drawn so far, on its last character
  return (text) => {
    let trailing = 0;
    const out = text.replace(MARKS, (run, at) => {
      const before = at === 0 ? carry : 0;
      const marks = Array.from(run);
      if (at + run.length === text.length) trailing = before + marks.length;
      const keep = Math.max(0, MOST_MARKS - before);
      return marks.length > keep ? marks.slice(0, keep).join('') : run;
    });
    carry = text.length === 0 ? carry : (ENDS_IN_MARK.test(text) ? trailing : 0);
    return out;
  };
}

export function capCounts(term) {
  for (const [final, cap] of Object.entries(CAPPED)) {
    term.parser.registerCsiHandler({ final }, (params) => {
      const first = [params[0]].flat()[0] || 0;
      const most = cap(term);
      if (first <= most) return false;  // xterm.js's own handler does it
      term.write(`\x1b[${most}${final}`);
      return true;
    });
  }
}

export function terminalView(main, [sid], ctx) {
  const box = h('div', { class: 'terminal', id: 'terminal' });
  const state = h('p', { id: 'term-state', class: 'muted', 'aria-live': 'polite' }, 'Connecting...');
  const term = new Terminal({
    cursorBlink: true, fontSize: 14, scrollback: 5000, convertEol: false, linkHandler,
    fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace',
    theme: { background: '#111418', foreground: '#e6e6e6' },
  });
  capCounts(term);
  const fit = new FitAddon();
  term.loadAddon(fit);
  window.chaserTerminal = term;  // lets tests and the devtools read the screen buffer
  const copy = () => navigator.clipboard.writeText(term.getSelection()).then(() => flash('Copied', 'ok'), flash);
  const paste = () => navigator.clipboard.readText().then((t) => term.paste(t), flash);
  main.append(
    h('p', {}, h('a', { href: `#/sessions/${enc(sid)}` }, `\u2190 Session ${sid}`)),
    h('h1', {}, 'Terminal on ', h('code', {}, sid)),
    h('p', { class: 'actions' },
      h('button', { type: 'button', onclick: copy }, 'Copy selection'), ' ',
      h('button', { type: 'button', onclick: paste }, 'Paste'), ' ',
      h('button', { type: 'button', class: 'danger', onclick: () => { ended = true; send(JSON.stringify({ type: 'close' })); } }, 'End shell'),
      h('span', { class: 'muted' }, ' Ctrl+Shift+C copies, Ctrl+Shift+V pastes; Tab stays in the terminal, Esc then Tab leaves it.')),
    state, box);
  term.open(box);
  fit.fit();
  let escaped = false;
  term.attachCustomKeyEventHandler((e) => {
    if (e.type !== 'keydown') return true;
    if (e.ctrlKey && e.shiftKey && e.code === 'KeyC') { copy(); return false; }
    if (e.ctrlKey && e.shiftKey && e.code === 'KeyV') return false;  // the browser's paste event
    // Keyboard users need a way out: Esc followed by Tab moves focus on.
    if (e.key === 'Tab' && escaped) { escaped = false; return false; }
    escaped = e.key === 'Escape';
    return true;
  });
  term.focus();

  const storeKey = `chaser.pty.${sid}`;
  let ws = null;
  let ended = false;
  let offset = null;  // the log offset the screen has reached: a reconnect resumes there
  const send = (data) => { if (ws && ws.readyState === WebSocket.OPEN) ws.send(data); };
  term.onData((d) => send(encoder.encode(d)));
  term.onBinary((d) => send(Uint8Array.from(d, (c) => c.charCodeAt(0))));
  term.onResize(({ cols, rows }) => send(JSON.stringify({ type: 'resize', cols, rows })));
  const onResize = () => fit.fit();
  window.addEventListener('resize', onResize);
  ctx.onLeave(() => {
    window.removeEventListener('resize', onResize);
    ended = true;
    if (ws) ws.close(1000);  // detach: the shell keeps running for the grace period
    term.dispose();
    if (window.chaserTerminal === term) window.chaserTerminal = null;
  });

  const connect = async (attempt) => {
    if (ended || ctx.signal.aborted) return;
    const ptyId = sessionStorage.getItem(storeKey);
    let ticket;
    try {
      ticket = await post(`/v1/sessions/${enc(sid)}/pty-ticket`, {}, { signal: ctx.signal });
    } catch (err) { if (!ctx.signal.aborted) { state.textContent = 'Could not open a terminal.'; flash(err); } return; }
    const url = new URL(ticket.url, location.href);
    url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
    url.searchParams.set('mode', 'human');
    url.searchParams.set('cols', String(term.cols));
    url.searchParams.set('rows', String(term.rows));
    if (ptyId) url.searchParams.set('pty_id', ptyId);
    if (ptyId && offset != null) url.searchParams.set('from', String(offset));
    const sock = new WebSocket(url);
    const decoder = new TextDecoder();  // per connection: each stream is decoded anew
    const tame = markTamer();
    ws = sock;
    sock.binaryType = 'arraybuffer';
    let greeted = false;
    sock.onmessage = (e) => {
      if (typeof e.data !== 'string') {
        if (offset != null) offset += e.data.byteLength;
        term.write(tame(decoder.decode(e.data, { stream: true })));
        return;
      }
      const m = JSON.parse(e.data);
      if (m.type === 'hello') {
        greeted = true;
        offset = m.offset;
        sessionStorage.setItem(storeKey, m.pty_id);
        state.textContent = ptyId === m.pty_id ? `Reattached to terminal ${m.pty_id}` : `Terminal ${m.pty_id}`;
        if (m.cols !== term.cols || m.rows !== term.rows) send(JSON.stringify({ type: 'resize', cols: term.cols, rows: term.rows }));
      } else if (m.type === 'exit') {
        ended = true;
        sessionStorage.removeItem(storeKey);
        state.textContent = `The shell ended (exit code ${m.exit_code ?? '-'}${m.signal ? `, signal ${m.signal}` : ''}).`;
      } else if (m.type === 'error' && m.code !== 'key_revoked') {
        flash(`${m.message} (${m.code})`);
      }
    };
    sock.onclose = (e) => {
      if (ws !== sock || ended || ctx.signal.aborted) return;
      if (e.code === 4401) {
        // The key was revoked: a new ticket would be refused too. The screen stays
        // readable (and copyable); the next request of the page goes to the login.
        ended = true;
        state.textContent = 'Your API key was revoked: the terminal is closed. Log in again with a valid key.';
        state.className = 'error';
        return;
      }
      if (!greeted && ptyId && attempt === 0) {
        // The terminal we knew is gone (ended, or its session stopped): start a new one.
        sessionStorage.removeItem(storeKey);
        offset = null;
        connect(1);
        return;
      }
      if (!greeted && attempt >= 4) {
        // Refused before any hello, again and again (an Origin the server does not
        // allow, a stopped session): stop asking for tickets.
        state.textContent = 'The server refused the terminal. Reload the page to try again.';
        return;
      }
      state.textContent = 'Disconnected; reconnecting...';
      setTimeout(() => connect(greeted ? 0 : attempt + 1), Math.min(5000, 500 * (attempt + 1)));
    };
  };
  connect(0);
}
