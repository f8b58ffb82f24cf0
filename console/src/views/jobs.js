// Jobs (submit, list, one job's steps and logs live, cancel, retry) and schedules
// (create, pause, resume, delete).
import { get, post, api } from '../api.js';
import { h, replace, enc, age, status, syncRows, table, field } from '../dom.js';
import { flash } from '../main.js';

const FINISHED = new Set(['succeeded', 'failed', 'cancelled']);

function steps(text) {
  // One step a line: "name: command", or just a command.
  return text.split('\n').map((l) => l.trim()).filter(Boolean).map((l, i) => {
    const m = /^([A-Za-z0-9 ._-]{1,100}):\s+(.+)$/.exec(l);
    return m ? { name: m[1], command: m[2] } : { name: `step ${i + 1}`, command: l };
  });
}

function jobRequest(f) {
  const body = {};
  const lines = String(f.get('command') || '');
  if (f.get('kind') === 'pipeline.run') { body.kind = 'pipeline.run'; body.steps = steps(lines); } else { body.kind = 'sandbox.exec'; body.command = lines; }
  if (f.get('workspace')) body.workspace = f.get('workspace');
  if (f.get('image')) body.image = f.get('image');
  const attempts = Number(f.get('max_attempts') || '1');
  if (attempts > 1) body.retry = { max_attempts: attempts };
  return body;
}

function jobFields(prefix) {
  return [
    field('Kind', h('select', { name: 'kind' }, h('option', { value: 'sandbox.exec' }, 'One command (sandbox.exec)'),
      h('option', { value: 'pipeline.run' }, 'Pipeline (pipeline.run): one step a line, "name: command"'))),
    field('Command or steps', h('textarea', { name: 'command', required: true, rows: '3', class: 'wide', spellcheck: 'false', id: `${prefix}-command` })),
    field('Workspace', h('input', { name: 'workspace', placeholder: 'none: ephemeral sandbox' })),
    field('Image', h('input', { name: 'image', placeholder: 'default' })),
    field('Attempts', h('input', { name: 'max_attempts', type: 'number', min: '1', max: '100', value: '1' })),
  ];
}

export function jobsView(main, _p, ctx) {
  const form = h('form', { class: 'inline-form', 'aria-label': 'Submit a job' },
    h('fieldset', {}, h('legend', {}, 'Submit a job'), jobFields('job'), h('button', { type: 'submit' }, 'Submit job')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      const job = await post('/v1/jobs', jobRequest(new FormData(form)));
      location.hash = `#/jobs/${enc(job.id)}`;
    } catch (err) { flash(err); }
  });
  const { el, tbody } = table(['Job', 'Kind', 'Status', 'Attempts', 'Exit', 'Workspace', 'Labels', 'Created'], 'Jobs');
  main.append(h('h1', {}, 'Jobs'), form, el);
  ctx.every(2000, async () => {
    const { jobs } = await get('/v1/jobs?limit=100', { signal: ctx.signal });
    syncRows(tbody, jobs, (j) => j.id, (j) => h('tr', {},
      h('td', {}, h('a', { href: `#/jobs/${enc(j.id)}` }, j.id)),
      h('td', {}, j.kind), h('td', {}, status(j.status)),
      h('td', {}, String((j.attempts || []).length)),
      h('td', {}, j.exit_code ?? ''),
      h('td', {}, j.workspace || ''),
      h('td', {}, Object.entries(j.labels || {}).map(([k, v]) => h('span', { class: 'tag' }, `${k}=${v}`))),
      h('td', { title: j.created_at }, age(j.created_at))));
  });
}

export function jobView(main, [id], ctx) {
  const base = `/v1/jobs/${enc(id)}`;
  const head = h('dl', { class: 'facts' });
  const actions = h('p', { class: 'actions' });
  const { el, tbody } = table(['#', 'Step', 'Status', 'Exit', 'Tries', 'Duration'], 'Steps');
  const attemptsT = table(['Attempt', 'Status', 'Exit', 'End reason', 'Started', 'Duration'], 'Attempts');
  const logs = h('pre', { id: 'job-logs', class: 'output', tabindex: '0', 'aria-label': 'Job output' });
  main.append(h('p', {}, h('a', { href: '#/jobs' }, '\u2190 Jobs')), h('h1', {}, 'Job ', h('code', {}, id)), head, actions,
    h('h2', {}, 'Steps'), el, h('h2', {}, 'Attempts'), attemptsT.el, h('h2', {}, 'Output of the latest attempt'), logs);
  let last = null;
  ctx.every(1500, async () => {
    if (last && FINISHED.has(last.status) && last.logsShown) return;
    const job = await get(base, { signal: ctx.signal });
    head.replaceChildren(...[['Status', status(job.status)], ['Kind', job.kind], ['Exit code', job.exit_code ?? '-'],
      ['End reason', job.end_reason || '-'], ['Workspace', job.workspace || '-'], ['Created', age(job.created_at)]]
      .flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
    if (!last || last.status !== job.status) {
      replace(actions, 
        FINISHED.has(job.status) ? null : h('button', { type: 'button', class: 'danger', onclick: () => post(`${base}/cancel`).then(() => flash('Cancel requested', 'ok'), flash) }, 'Cancel'), ' ',
        FINISHED.has(job.status) ? h('button', { type: 'button', onclick: () => post(`${base}/retry`).then(() => { last = null; flash('Queued again', 'ok'); }, flash) }, 'Retry') : null);
    }
    const stepRows = job.steps && job.steps.length ? job.steps
      : (job.attempts || []).slice(-1).map((a) => ({ index: 0, name: 'command', status: a.status, exit_code: a.exit_code, tries: 1, duration_ms: a.duration_ms }));
    syncRows(tbody, stepRows, (s) => String(s.index), (s) => h('tr', {}, h('td', {}, String(s.index + 1)), h('td', {}, s.name),
      h('td', {}, status(s.status)), h('td', {}, s.exit_code ?? ''), h('td', {}, s.tries ?? ''),
      h('td', {}, s.duration_ms != null ? `${(s.duration_ms / 1000).toFixed(1)} s` : '')));
    syncRows(attemptsT.tbody, job.attempts || [], (a) => String(a.number), (a) => h('tr', {}, h('td', {}, String(a.number)),
      h('td', {}, status(a.status)), h('td', {}, a.exit_code ?? ''), h('td', {}, a.end_reason || ''),
      h('td', {}, age(a.started_at)), h('td', {}, a.duration_ms != null ? `${(a.duration_ms / 1000).toFixed(1)} s` : '')));
    if ((job.attempts || []).length) {
      const l = await get(`${base}/logs`, { signal: ctx.signal });
      logs.replaceChildren(...l.entries.flatMap((e) => [h('strong', {}, `== ${e.name || `step ${e.step}`} ==\n`), e.output || '', e.output_truncated ? '\n[truncated]\n' : '\n']));
      job.logsShown = true;
    }
    last = job;
  });
}

export function schedulesView(main, _p, ctx) {
  const form = h('form', { class: 'inline-form', 'aria-label': 'New schedule' },
    h('fieldset', {}, h('legend', {}, 'New schedule'),
      field('Name', h('input', { name: 'name' })),
      field('Cron', h('input', { name: 'cron', placeholder: '*/5 * * * *', spellcheck: 'false' }), 'or an interval below'),
      field('Every (seconds)', h('input', { name: 'interval_s', type: 'number', min: '1' })),
      field('Timezone', h('input', { name: 'timezone', value: 'UTC' })),
      jobFields('schedule'),
      h('div', { class: 'field check' }, h('input', { id: 'sched-paused', name: 'paused', type: 'checkbox' }), h('label', { for: 'sched-paused' }, 'Start paused')),
      h('button', { type: 'submit' }, 'Create schedule')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const f = new FormData(form);
    const body = { job: jobRequest(f), paused: f.get('paused') === 'on' };
    if (f.get('name')) body.name = f.get('name');
    if (f.get('cron')) { body.cron = f.get('cron'); body.timezone = f.get('timezone') || 'UTC'; } else body.interval_s = Number(f.get('interval_s') || '0');
    try { await post('/v1/schedules', body); form.reset(); flash('Schedule created', 'ok'); } catch (err) { flash(err); }
  });
  const { el, tbody } = table(['Schedule', 'When', 'State', 'Next run', 'Jobs', ''], 'Schedules');
  main.append(h('h1', {}, 'Schedules'), form, el);
  ctx.every(3000, async () => {
    const { schedules } = await get('/v1/schedules', { signal: ctx.signal });
    syncRows(tbody, schedules, (s) => s.id, (s) => h('tr', {},
      h('td', {}, s.name || s.id),
      h('td', {}, s.cron ? `${s.cron} (${s.timezone || 'UTC'})` : `every ${s.interval_s} s`),
      h('td', {}, s.paused ? status('paused') : status('active')),
      h('td', { title: s.next_run_at || '' }, s.next_run_at || '-'),
      h('td', {}, h('a', { href: `#/jobs`, 'aria-label': `Jobs of ${s.name || s.id}` }, 'Jobs')),
      h('td', {},
        h('button', { type: 'button', onclick: () => post(`/v1/schedules/${enc(s.id)}/${s.paused ? 'resume' : 'pause'}`).catch(flash) }, s.paused ? 'Resume' : 'Pause'), ' ',
        h('button', { type: 'button', class: 'danger', onclick: () => confirm('Delete this schedule? Its jobs stay.') && api('DELETE', `/v1/schedules/${enc(s.id)}`).catch(flash) }, 'Delete'))));
  });
}
