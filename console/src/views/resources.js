// Workspaces (disk used), images, and the tenant's usage against its limits.
import { get, post, api } from '../api.js';
import { h, enc, age, bytes, syncRows, table, field, visible, oneLine } from '../dom.js';
import { flash } from '../main.js';

export function workspacesView(main, _p, ctx) {
  const { el, tbody } = table(['Workspace', 'Disk used', 'Session', 'Last used', ''], 'Workspaces');
  main.append(h('h1', {}, 'Workspaces'), h('p', { class: 'muted' },
    'A workspace is made by the first session or command that names it.'), el);
  ctx.every(3000, async () => {
    const { workspaces } = await get('/v1/workspaces', { signal: ctx.signal });
    syncRows(tbody, workspaces, (w) => w.name, (w) => h('tr', {},
      h('td', {}, h('a', { href: `#/files/workspaces/${enc(w.name)}` }, w.name)),
      h('td', {}, bytes(w.disk_bytes)),
      h('td', {}, w.session_id ? h('a', { href: `#/sessions/${enc(w.session_id)}` }, w.session_id) : h('span', { class: 'muted' }, 'none')),
      h('td', { title: w.last_used_at || '' }, age(w.last_used_at)),
      h('td', {}, h('button', { type: 'button', class: 'danger', 'aria-label': `Delete workspace ${w.name}`, onclick: async () => {
        if (!confirm(`Delete workspace ${oneLine(w.name)} and every file in it?`)) return;
        try { await api('DELETE', `/v1/workspaces/${enc(w.name)}${w.session_id ? '?force=true' : ''}`); } catch (err) { flash(err); }
      } }, 'Delete'))));
  });
}

export function imagesView(main, _p, ctx) {
  const { el, tbody } = table(['Image', 'Size', 'Digest', 'Pulled', 'Last used'], 'Images');
  const total = h('p', { class: 'muted' });
  const ref = h('input', { name: 'image', required: true, spellcheck: 'false', placeholder: 'node:20-bookworm', class: 'wide' });
  const pulling = h('p', { id: 'pull-state', class: 'muted', 'aria-live': 'polite' });
  const form = h('form', { class: 'inline-form', 'aria-label': 'Pull an image' }, field('Image reference', ref), h('button', { type: 'submit' }, 'Pull'));
  const refresh = async () => {
    const r = await get('/v1/images', { signal: ctx.signal });
    total.textContent = `Cache: ${bytes(r.cache_bytes)} of ${bytes(r.cache_limit_bytes)}`;
    syncRows(tbody, r.images, (i) => i.digest, (i) => h('tr', {},
      h('td', {}, h('code', {}, i.ref || i.reference || i.name)),
      h('td', {}, bytes(i.size_bytes ?? i.size)),
      h('td', {}, h('code', { title: i.digest || '' }, (i.digest || '').slice(0, 19))),
      h('td', {}, age(i.pulled_at || i.created_at)),
      h('td', {}, age(i.last_used_at))));
  };
  // The pull goes on on the server even if this page is left; the list shows it then.
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const name = ref.value.trim();
    pulling.textContent = `Pulling ${name}...`;
    try {
      const img = await post('/v1/images/pull', { image: name });
      pulling.textContent = visible(`Pulled ${img.reference} (${bytes(img.size)})`);
      ref.value = '';
      await refresh();
    } catch (err) { pulling.textContent = `Pull of ${name} failed`; flash(err); }
  });
  main.append(h('h1', {}, 'Images'), form, pulling, total, el);
  ctx.every(5000, refresh);
}

function meter(label, used, limit) {
  const pct = limit ? Math.min(100, Math.round((100 * (used || 0)) / limit)) : 0;
  return h('tr', {},
    h('th', { scope: 'row' }, label),
    h('td', {}, `${used ?? 0} / ${limit ?? 'no limit'}`),
    h('td', {}, h('meter', { min: '0', max: '100', value: String(pct), high: '80', optimum: '0', 'aria-label': `${label}: ${pct}% of the limit` }), ` ${pct}%`));
}

const PAIRS = [['Sandboxes', 'sandboxes', 'max_sandboxes'], ['Sessions', 'sessions', 'max_sessions'],
  ['Running commands', 'commands', 'max_commands'], ['Memory granted (MiB)', 'memory_mb', 'max_memory_mb'],
  ['Memory in use (MiB)', 'memory_in_use_mb', 'max_memory_mb'],
  ['Processes', 'pids', 'max_pids'], ['Disk (MiB)', 'disk_mb', 'max_disk_mb'],
  ['Queued jobs', 'queued_jobs', 'max_queued_jobs']];

// What the kernel counts of the tenant's sandboxes now (`measured`), beside what the
// server granted them (`usage`).
function used(u) {
  const m = u.measured || {};
  const extra = {};
  if (m.memory_bytes != null) extra.memory_in_use_mb = Math.round(m.memory_bytes / (1024 * 1024));
  if (m.pids != null) extra.pids = m.pids;
  return { ...extra, ...(u.usage || {}) };
}

export function usageView(main, _p, ctx) {
  const body = h('tbody');
  const who = h('p', { class: 'muted' });
  main.append(h('h1', {}, 'Usage and limits'), who,
    h('table', {}, h('caption', { class: 'sr-only' }, 'Usage against limits'),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'What'), h('th', { scope: 'col' }, 'Used / limit'), h('th', { scope: 'col' }, 'Share'))), body));
  ctx.every(2000, async () => {
    const u = await get('/v1/usage', { signal: ctx.signal });
    const cpu = u.measured && u.measured.cpu_ms != null ? `; CPU time used since the server started: ${(u.measured.cpu_ms / 1000).toFixed(1)} s` : '';
    who.textContent = `Tenant ${u.tenant}${cpu}`;
    const use = used(u);
    const rows = PAIRS.filter(([, a, b]) => a in use || (b in (u.limits || {}) && a !== 'memory_in_use_mb'))
      .map(([label, a, b]) => meter(label, use[a], u.limits[b]));
    body.replaceChildren(...rows);
  });
}
