// The console's shell: login, navigation, and the hash router that mounts one view at
// a time (each view gets a context whose timers and streams end when it is left).
import { auth, get, ApiError } from './api.js';
import { h } from './dom.js';
import { sessionsView, sessionView } from './views/sessions.js';
import { commandView } from './views/commands.js';
import { workspacesView, imagesView, usageView } from './views/resources.js';
import { filesView } from './views/files.js';
import { jobsView, jobView, schedulesView } from './views/jobs.js';
import { adminView } from './views/admin.js';

const ROUTES = [
  [/^sessions$/, sessionsView],
  [/^sessions\/([^/]+)$/, sessionView],
  // xterm.js is most of the bundle: loaded only when a terminal is opened.
  [/^sessions\/([^/]+)\/terminal$/, (...args) => import('./views/terminal.js').then((m) => m.terminalView(...args))],
  [/^sessions\/([^/]+)\/commands\/([^/]+)$/, commandView],
  [/^files\/(sessions|workspaces)\/([^/]+)$/, filesView],
  [/^workspaces$/, workspacesView],
  [/^images$/, imagesView],
  [/^jobs$/, jobsView],
  [/^jobs\/([^/]+)$/, jobView],
  [/^schedules$/, schedulesView],
  [/^usage$/, usageView],
  [/^admin$/, adminView],
];

const PARAM = /^[A-Za-z0-9_-][A-Za-z0-9._:@-]{0,199}$/;

const NAV = [['sessions', 'Sessions'], ['workspaces', 'Workspaces'], ['images', 'Images'],
  ['jobs', 'Jobs'], ['schedules', 'Schedules'], ['usage', 'Usage']];

let current = null;  // the mounted view's context
let isAdmin = false;

function context() {
  const timers = [];
  const controller = new AbortController();
  const cleanups = [];
  return {
    signal: controller.signal,
    // Runs fn now and every ms while the view is shown (skipping hidden tabs).
    every(ms, fn) {
      let busy = false;
      const tick = async () => {
        if (busy || document.hidden || controller.signal.aborted) return;
        busy = true;
        try { await fn(); } catch (e) { if (!controller.signal.aborted) flash(e); } finally { busy = false; }
      };
      tick();
      timers.push(setInterval(tick, ms));
    },
    onLeave(fn) { cleanups.push(fn); },
    leave() {
      timers.forEach(clearInterval);
      controller.abort();
      cleanups.forEach((f) => { try { f(); } catch { /* leaving anyway */ } });
    },
  };
}

export function flash(err, kind = 'error') {
  const box = document.getElementById('flash');
  if (!box) return;
  const text = err instanceof ApiError ? `${err.message} (${err.status} ${err.code})` : String(err.message || err);
  box.replaceChildren(h('p', { class: kind }, text));
  box.hidden = false;
}

function route() {
  const path = location.hash.replace(/^#\/?/, '') || 'sessions';
  for (const [re, view] of ROUTES) {
    const m = re.exec(path);
    if (!m) continue;
    // Ids and names from a link: never a path of their own (they go into API paths).
    const params = m.slice(1).map((p) => { try { return decodeURIComponent(p); } catch { return ''; } });
    if (params.every((p) => PARAM.test(p))) return [view, params, path];
  }
  return [sessionsView, [], 'sessions'];
}

function render() {
  if (current) current.leave();
  current = null;
  const app = document.getElementById('app');
  if (!auth.key) { app.replaceChildren(login()); document.getElementById('key').focus(); return; }
  const [view, params, path] = route();
  const main = h('main', { id: 'main', tabindex: '-1' });
  const flashBox = h('div', { id: 'flash', role: 'alert', hidden: true });
  const top = path.split('/')[0];
  const items = [...NAV, ...(isAdmin ? [['admin', 'Admin']] : [])];
  app.replaceChildren(
    h('a', { class: 'skip', href: '#main', onclick: (e) => { e.preventDefault(); main.focus(); } }, 'Skip to content'),
    h('header', {},
      h('span', { class: 'brand' }, 'Chaser'),
      h('nav', { 'aria-label': 'Main' }, h('ul', {}, items.map(([p, label]) =>
        h('li', {}, h('a', { href: `#/${p}`, 'aria-current': p === top ? 'page' : null }, label))))),
      h('button', { type: 'button', id: 'logout', onclick: logout }, 'Log out')),
    flashBox, main);
  current = context();
  view(main, params, current);
}

function logout() {
  auth.clear();
  isAdmin = false;
  location.hash = '';
  render();
}

function login(message) {
  const input = h('input', { id: 'key', name: 'key', type: 'password', autocomplete: 'off',
    spellcheck: 'false', required: true, 'aria-describedby': 'login-help' });
  const error = h('p', { id: 'login-error', class: 'error', role: 'alert', hidden: !message }, message || '');
  const form = h('form', { class: 'login', onsubmit: async (e) => {
    e.preventDefault();
    const key = input.value.trim();
    error.hidden = true;
    try {
      await get('/v1/usage', { key });
    } catch (err) {
      error.textContent = err.status === 401
        ? 'That API key was refused: it is wrong, incomplete or revoked. Paste the whole key (chs_...).'
        : `Could not reach the server: ${err.message}`;
      error.hidden = false;
      input.select();
      return;
    }
    auth.set(key);
    await detectAdmin();
    render();
  } },
  h('h1', {}, 'Chaser console'),
  h('label', { for: 'key' }, 'API key'), input,
  h('p', { id: 'login-help', class: 'help' },
    'Kept in this tab\'s session storage (which the browser may keep on disk after the tab closes) and sent only as an Authorization header. Log out when done: that removes it.'),
  error,
  h('button', { type: 'submit' }, 'Log in'));
  return h('main', { class: 'login-page' }, form);
}

async function detectAdmin() {
  try { await get('/v1/keys'); isAdmin = true; } catch { isAdmin = false; }
}

auth.onUnauthorized = () => {
  auth.clear();
  if (current) current.leave();
  current = null;
  document.getElementById('app').replaceChildren(login('Your key is no longer accepted (revoked?). Log in again.'));
};

window.addEventListener('hashchange', render);
window.addEventListener('DOMContentLoaded', () => {
  render();
  if (!auth.key) return;
  // Whether to offer the Admin screen can wait until the first screen is drawn.
  requestIdleCallback(async () => {
    await detectAdmin();
    const nav = document.querySelector('header nav ul');
    if (isAdmin && nav && !nav.querySelector('a[href="#/admin"]')) {
      nav.append(h('li', {}, h('a', { href: '#/admin', 'aria-current': location.hash === '#/admin' ? 'page' : null }, 'Admin')));
    }
  }, { timeout: 1000 });
});
