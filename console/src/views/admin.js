// Admin keys only: API keys (create, revoke, set limits), server health and metrics.
import { get, post, api } from '../api.js';
import { h, enc, age, syncRows, table, field, oneLine } from '../dom.js';
import { flash } from '../main.js';

const LIMITS = ['max_sandboxes', 'max_sessions', 'max_commands', 'max_memory_mb', 'max_pids', 'max_disk_mb'];

export function adminView(main, _p, ctx) {
  const { el, tbody } = table(['Name', 'Id', 'Admin', 'Created', 'Revoked', 'Limits', ''], 'API keys');
  const created = h('div', { 'aria-live': 'polite' });
  const health = h('pre', { class: 'output small', tabindex: '0', 'aria-label': 'Health' });
  const metrics = h('pre', { id: 'metrics', class: 'output', tabindex: '0', 'aria-label': 'Metrics' });
  main.append(h('h1', {}, 'Admin'), h('h2', {}, 'API keys'), keyForm(created), created, el,
    h('h2', {}, 'Server health'), health, h('h2', {}, 'Metrics'), metrics);
  ctx.every(3000, async () => {
    const [{ keys }, hz, m] = await Promise.all([get('/v1/keys', { signal: ctx.signal }),
      fetch('/healthz', { cache: 'no-store', signal: ctx.signal }).then((r) => r.json()),
      api('GET', '/metrics', undefined, { raw: true, signal: ctx.signal }).then((r) => r.text())]);
    health.textContent = JSON.stringify(hz, null, 2);
    metrics.textContent = m.split('\n').filter((l) => l && !l.startsWith('#')).join('\n');
    syncRows(tbody, keys, (k) => k.id, (k) => h('tr', {},
      h('td', {}, k.name || h('span', { class: 'muted' }, '(unnamed)')),
      h('td', {}, h('code', {}, k.id)),
      h('td', {}, k.admin ? 'yes' : 'no'),
      h('td', {}, age(k.created_at)),
      h('td', {}, k.revoked_at ? age(k.revoked_at) : ''),
      h('td', {}, limitsForm(k)),
      h('td', {}, k.revoked_at ? '' : h('button', { type: 'button', class: 'danger', 'aria-label': `Revoke key ${k.name || k.id}`, onclick: async () => {
        if (!confirm(`Revoke key ${oneLine(k.name || k.id)}? New requests with it get 401, and its terminals and streams close at once.`)) return;
        try { await api('DELETE', `/v1/keys/${enc(k.id)}`); } catch (err) { flash(err); }
      } }, 'Revoke'))));
  });
}

// Shows the tenant's own limits as values and the defaults as placeholders, and sends
// only what the admin changed (PATCH merges): an emptied field goes back to the default.
function limitsForm(k) {
  let own = k.own_limits || {};
  const shown = (n) => (own[n] != null ? String(own[n]) : '');
  const inputs = LIMITS.map((name) => h('input', { name, type: 'number', min: '1', class: 'narrow',
    value: shown(name), placeholder: k.limits && k.limits[name] != null ? `default ${k.limits[name]}` : 'default',
    'aria-label': `${name} of ${k.name || k.id}` }));
  const form = h('form', { class: 'limits' }, LIMITS.map((n, i) => h('label', {}, n.replace('max_', ''), ' ', inputs[i])),
    h('button', { type: 'submit' }, 'Set limits'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const limits = {};
    let bad = null;
    LIMITS.forEach((n, i) => {
      const v = inputs[i].value.trim();
      if (v === shown(n)) return;
      // valueAsNumber reads "1e3" as 1000 (parseInt would read 1); a fraction is refused
      const number = inputs[i].valueAsNumber;
      if (v && !(Number.isSafeInteger(number) && number >= 1)) bad = n;
      limits[n] = v ? number : null;
    });
    if (bad) { flash(`${bad.replace('max_', '')} must be a whole number of at least 1`); return; }
    if (!Object.keys(limits).length) { flash('Nothing changed', 'ok'); return; }
    try {
      own = (await api('PATCH', `/v1/keys/${enc(k.id)}`, { limits })).own_limits || {};  // the new baseline
      flash('Limits set', 'ok');
    } catch (err) { flash(err); }
  });
  return form;
}

function keyForm(created) {
  const form = h('form', { class: 'inline-form', 'aria-label': 'New API key' },
    field('Name', h('input', { name: 'name', required: true })),
    h('div', { class: 'field check' }, h('input', { id: 'new-admin', name: 'admin', type: 'checkbox' }), h('label', { for: 'new-admin' }, 'Admin')),
    h('button', { type: 'submit' }, 'Create key'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const f = new FormData(form);
    try {
      const k = await post('/v1/keys', { name: f.get('name'), admin: f.get('admin') === 'on' });
      created.replaceChildren(h('p', { class: 'ok' }, `Key ${k.name} created. Copy it now; it is not shown again: `,
        h('input', { readonly: true, value: k.key, class: 'wide', 'aria-label': 'The new key', onfocus: (ev) => ev.target.select() })));
      form.reset();
    } catch (err) { flash(err); }
  });
  return form;
}
