// Sessions: the live list, the form that starts one, and one session's page (its
// commands, a form to start one, links to its terminal and files).
import { get, post, api } from '../api.js';
import { h, replace, enc, age, bytes, status, syncRows, table, field } from '../dom.js';
import { flash } from '../main.js';

function limits(l) {
  if (!l) return '';
  const parts = [];
  if (l.memory_mb != null) parts.push(`${l.memory_mb} MiB`);
  if (l.cpus != null) parts.push(`${l.cpus} CPU`);
  if (l.pids != null) parts.push(`${l.pids} pids`);
  if (l.disk_mb != null) parts.push(`${l.disk_mb} MiB disk`);
  return parts.join(', ');
}

function activity(s) {
  return s.last_activity_at ? `active ${age(s.last_activity_at)} ago` : '';
}

const MIB = 1024 * 1024;

// What a session uses against its limits (GET /v1/sessions?usage=true): the cells'
// texts. `cores` is the CPU share between this poll's sample and the one before (null
// on the first), in cores: cpu_ms over the time between the samples.
export function usageCells(s, cores) {
  const u = s.usage, l = s.limits || {};
  const of = (used, limit) => `${used == null ? '-' : bytes(used)} / ${limit == null ? '-' : bytes(limit)}`;
  return {
    memory: of(u && u.memory_bytes, l.memory_mb == null ? null : l.memory_mb * MIB),
    cpu: `${cores == null ? '-' : cores.toFixed(2)} / ${l.cpus == null ? '-' : l.cpus} CPU${l.cpus === 1 ? '' : 's'}`
      + (u && u.cpu_ms != null ? ` \u00b7 ${(u.cpu_ms / 1000).toFixed(1)} s` : ''),
    pids: `${u && u.pids != null ? u.pids : '-'} / ${l.pids == null ? '-' : l.pids}`,
    disk: of(u && u.disk_bytes, u && u.disk_limit_bytes != null ? u.disk_limit_bytes
      : (l.disk_mb == null ? null : l.disk_mb * MIB)),
  };
}

// The CPU share in cores from two samples of one session (null when they are the same
// sample or either lacks a figure).
export function coresBetween(before, after) {
  if (!before || !after || before.cpu_ms == null || after.cpu_ms == null) return null;
  const ms = Date.parse(after.sampled_at) - Date.parse(before.sampled_at);
  return ms > 0 ? Math.max(0, (after.cpu_ms - before.cpu_ms) / ms) : null;
}

// Keeps each running session's last sample and CPU share across polls.
function cpuTracker() {
  const last = new Map();
  return (sessions) => {
    const shares = new Map();
    for (const s of sessions) {
      const prev = last.get(s.id);
      if (!s.usage) { last.delete(s.id); continue; }
      const share = coresBetween(prev && prev.usage, s.usage);
      // The same sample again (the server reads a sandbox at most once a second): keep
      // the share measured last time.
      const keep = share == null && prev && prev.usage.sampled_at === s.usage.sampled_at;
      shares.set(s.id, keep ? prev.share : share);
      last.set(s.id, { usage: s.usage, share: shares.get(s.id) });
    }
    for (const id of last.keys()) if (!shares.has(id)) last.delete(id);
    return shares;
  };
}

const USAGE = ['memory', 'cpu', 'pids', 'disk'];

export function sessionsView(main, _params, ctx) {
  const { el, tbody } = table(['Session', 'Status', 'Workspace', 'Image', 'Age', 'Memory', 'CPU', 'Processes', 'Disk', 'Activity', ''], 'Sessions');
  const count = h('p', { class: 'muted', 'aria-live': 'polite' });
  main.append(h('h1', {}, 'Sessions'), newSessionForm(), count, el);
  let marked = false;
  const track = cpuTracker();
  ctx.every(2000, async () => {
    if (!marked) {
      // The first paint does not wait for every session's counters (about 0.2 ms a
      // session, bench/usage.py): the plain list first, then the same with usage.
      show((await get('/v1/sessions', { signal: ctx.signal })).sessions);
      marked = true;
      performance.mark('chaser:sessions-listed'); // bench/console.py reads it
    }
    show((await get('/v1/sessions?usage=true', { signal: ctx.signal })).sessions);
  });

  function show(sessions) {
    count.textContent = `${sessions.filter((s) => s.status === 'running').length} running, ${sessions.length} in all`;
    // Rows are keyed without their usage, which changes every poll: the usage cells are
    // refreshed in place below, so a row (and the focus in it) stays as it is.
    syncRows(tbody, sessions.map(({ usage, ...s }) => s), (s) => s.id, (s) => h('tr', {},
      h('td', {}, h('a', { href: `#/sessions/${enc(s.id)}` }, s.id)),
      h('td', {}, status(s.status)),
      h('td', {}, s.workspace ? h('a', { href: `#/files/workspaces/${enc(s.workspace)}` }, s.workspace) : h('span', { class: 'muted' }, 'none')),
      h('td', {}, s.image),
      h('td', { title: s.created_at }, age(s.created_at)),
      USAGE.map((k) => h('td', { class: `usage usage-${k}` })),
      h('td', {}, activity(s)),
      h('td', {}, s.status === 'running'
        ? h('a', { href: `#/sessions/${enc(s.id)}/terminal`, 'aria-label': `Terminal on ${s.id}` }, 'Terminal') : '')));
    const shares = track(sessions);
    const rows = new Map([...tbody.children].map((tr) => [tr.dataset.key, tr]));
    for (const s of sessions) {
      const cells = usageCells(s, shares.get(s.id));
      const tr = rows.get(s.id);
      for (const k of USAGE) {
        const td = tr && tr.querySelector(`.usage-${k}`);
        if (td && td.textContent !== cells[k]) td.textContent = cells[k];
      }
    }
  }
}

function num(name, label, hint) {
  return field(label, h('input', { name, type: 'number', min: '0', step: 'any', inputmode: 'decimal' }), hint);
}

function newSessionForm() {
  const form = h('form', { class: 'inline-form', 'aria-label': 'New session' },
    h('fieldset', {}, h('legend', {}, 'New session'),
      field('Workspace', h('input', { name: 'workspace', pattern: '[A-Za-z0-9_\\-][A-Za-z0-9._\\-]{0,63}', placeholder: 'none: private and empty' })),
      field('Image', h('input', { name: 'image', placeholder: 'default' })),
      num('memory_mb', 'Memory (MiB)'), num('cpus', 'CPUs'), num('pids', 'Processes'), num('disk_mb', 'Disk (MiB)'),
      h('button', { type: 'submit' }, 'Start session')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const f = new FormData(form);
    const body = {};
    if (f.get('workspace')) body.workspace = f.get('workspace');
    if (f.get('image')) body.image = f.get('image');
    const lim = {};
    for (const k of ['memory_mb', 'pids', 'disk_mb']) if (f.get(k)) lim[k] = Number(f.get(k));  // ("1e3" is 1000; a fraction is the server's 422)
    if (f.get('cpus')) lim.cpus = parseFloat(f.get('cpus'));
    if (Object.keys(lim).length) body.limits = lim;
    const button = form.querySelector('button');
    button.disabled = true;
    button.textContent = 'Starting...';
    try {
      const s = await post('/v1/sessions', body);
      location.hash = `#/sessions/${enc(s.id)}`;
    } catch (err) { flash(err); } finally { button.disabled = false; button.textContent = 'Start session'; }
  });
  return form;
}

export function sessionView(main, [id], ctx) {
  const base = `/v1/sessions/${enc(id)}`;
  const info = h('dl', { class: 'facts' });
  const actions = h('p', { class: 'actions' });
  const { el, tbody } = table(['Command', 'Kind', 'Status', 'Exit', 'Started', ''], 'Commands');
  main.append(h('h1', {}, 'Session ', h('code', {}, id)), info, actions,
    h('h2', {}, 'Run a command'), commandForm(base, id),
    h('h2', {}, 'Commands'), el);
  let shownStatus = null;
  const track = cpuTracker();
  ctx.every(2000, async () => {
    const [s, { commands }] = await Promise.all([get(base, { signal: ctx.signal }), get(`${base}/commands`, { signal: ctx.signal })]);
    const used = s.usage ? usageCells(s, track([s]).get(s.id)) : null;
    info.replaceChildren(...[['Status', status(s.status)], ['Workspace', s.workspace || 'none'], ['Image', s.image],
      ['Age', age(s.created_at)], ['Limits', limits(s.limits)],
      ...(used ? [['Memory', used.memory], ['CPU', used.cpu], ['Processes', used.pids], ['Disk', used.disk]] : []),
      ['Activity', activity(s) || '-'], ['Idle timeout', `${s.idle_timeout_s} s`],
      ['Ended', s.end_reason || '-']].flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
    if (shownStatus !== s.status) {
      shownStatus = s.status;
      replace(actions, 
        s.status === 'running' ? h('a', { class: 'button', href: `#/sessions/${enc(id)}/terminal` }, 'Open terminal') : null, ' ',
        h('a', { class: 'button', href: `#/files/sessions/${enc(id)}` }, 'Files'), ' ',
        s.status === 'running' ? h('button', { type: 'button', class: 'danger', onclick: async () => {
          if (!confirm(`Stop session ${id}? Every process in it ends.`)) return;
          try { await api('DELETE', base); } catch (err) { flash(err); }
        } }, 'Stop session') : null);
    }
    syncRows(tbody, commands, (c) => c.id, (c) => h('tr', {},
      h('td', {}, h('a', { href: `#/sessions/${enc(id)}/commands/${enc(c.id)}` }, h('code', {}, c.command || c.id))),
      h('td', {}, c.kind || 'command'),
      h('td', {}, status(c.status)),
      h('td', {}, c.exit_code ?? (c.signal ? `SIG${c.signal}` : '')),
      h('td', { title: c.started_at }, age(c.started_at)),
      h('td', {}, h('a', { href: `#/sessions/${enc(id)}/commands/${enc(c.id)}`, 'aria-label': `Output of ${c.id}` }, 'Output'))));
  });
}

function commandForm(base, id) {
  const form = h('form', { class: 'inline-form', 'aria-label': 'Run a command' },
    field('Command', h('input', { name: 'command', required: true, class: 'wide', autocomplete: 'off', spellcheck: 'false' })),
    h('div', { class: 'field check' }, h('input', { id: 'bg', name: 'background', type: 'checkbox', checked: true }),
      h('label', { for: 'bg' }, 'In the background (follow its output)')),
    h('button', { type: 'submit' }, 'Run'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const f = new FormData(form);
    try {
      const r = await post(`${base}/exec`, { command: f.get('command'), background: f.get('background') === 'on' });
      location.hash = `#/sessions/${enc(id)}/commands/${enc(r.command_id || r.id)}`;
    } catch (err) { flash(err); }
  });
  return form;
}
