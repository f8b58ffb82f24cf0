// A file browser over the files API, for a session's sandbox or a workspace: browse,
// upload, download, make a directory, delete.
import { get, api, download } from '../api.js';
import { h, enc, bytes, age, table, field, visible, oneLine } from '../dom.js';
import { flash } from '../main.js';

export function filesView(main, [kind, name], ctx) {
  const base = `/v1/${kind}/${enc(name)}`;
  const pathInput = h('input', { name: 'path', value: '/workspace', class: 'wide', spellcheck: 'false' });
  const { el, tbody } = table(['Name', 'Type', 'Size', 'Modified', ''], 'Files');
  const note = h('p', { class: 'muted', 'aria-live': 'polite' });
  const fileInput = h('input', { type: 'file', name: 'upload', multiple: true });
  const go = h('form', { class: 'inline-form', 'aria-label': 'Go to a directory' }, field('Path', pathInput), h('button', { type: 'submit' }, 'Open'),
    h('button', { type: 'button', onclick: () => open(parent(pathInput.value)) }, 'Up'));
  const up = h('form', { class: 'inline-form', 'aria-label': 'Upload files' }, field('Upload to this directory', fileInput), h('button', { type: 'submit' }, 'Upload'));
  const dirName = h('input', { name: 'dirname', spellcheck: 'false', required: true });
  const mk = h('form', { class: 'inline-form', 'aria-label': 'New directory' }, field('New directory here', dirName), h('button', { type: 'submit' }, 'Make directory'));
  main.append(h('p', {}, h('a', { href: kind === 'sessions' ? `#/sessions/${enc(name)}` : '#/workspaces' }, '\u2190 Back')),
    h('h1', {}, 'Files of ', kind === 'sessions' ? 'session ' : 'workspace ', h('code', {}, name)), go, up, mk, note, el);
  const here = () => pathInput.value.replace(/\/+$/, '') || '/';

  async function remove(e) {
    const what = e.type === 'directory' ? `the directory ${e.path} and everything in it` : e.path;
    if (!confirm(`Delete ${oneLine(what)}?`)) return;
    try {
      await api('DELETE', `${base}/files?path=${enc(e.path)}${e.type === 'directory' ? '&recursive=true' : ''}`);
      flash(`Deleted ${e.name}`, 'ok');
    } catch (err) { flash(err); }
    open(pathInput.value);
  }

  async function open(path) {
    pathInput.value = path;
    let r;
    try { r = await get(`${base}/files/list?path=${enc(path)}`, { signal: ctx.signal }); } catch (err) { flash(err); return; }
    note.textContent = visible(`${r.entries.length} entries in ${r.path}${r.truncated ? ' (truncated)' : ''}`);
    tbody.replaceChildren(...r.entries.map((e) => h('tr', {},
      h('td', {}, e.type === 'directory'
        ? h('button', { type: 'button', class: 'link', onclick: () => open(e.path) }, `${e.name}/`)
        : h('span', {}, e.name)),
      h('td', {}, e.type === 'symlink' ? `link \u2192 ${e.link_target ?? ''}` : e.type),
      h('td', {}, e.type === 'file' ? bytes(e.size) : ''),
      h('td', {}, e.mtime ? age(typeof e.mtime === 'number' ? new Date(e.mtime * 1000).toISOString() : e.mtime) : ''),
      h('td', {}, e.type === 'file' ? h('button', { type: 'button', 'aria-label': `Download ${e.name}`,
        onclick: () => download(`${base}/files?path=${enc(e.path)}`, e.name).catch(flash) }, 'Download') : '', ' ',
      h('button', { type: 'button', class: 'danger', 'aria-label': `Delete ${e.name}`, onclick: () => remove(e) }, 'Delete')))));
  }
  go.addEventListener('submit', (e) => { e.preventDefault(); open(pathInput.value); });
  mk.addEventListener('submit', async (e) => {
    e.preventDefault();
    const dir = `${here()}/${dirName.value.replace(/^\/+/, '')}`.replace(/^\/\//, '/');
    try { await api('POST', `${base}/files/mkdir?path=${enc(dir)}`); flash(`Made ${dir}`, 'ok'); dirName.value = ''; } catch (err) { flash(err); }
    open(pathInput.value);
  });
  up.addEventListener('submit', async (e) => {
    e.preventDefault();
    const dir = here();
    for (const f of fileInput.files) {
      try {
        await api('PUT', `${base}/files?path=${enc(`${dir}/${f.name}`)}`, f);
        flash(`Uploaded ${f.name}`, 'ok');
      } catch (err) { flash(err); }
    }
    fileInput.value = '';
    open(pathInput.value);
  });
  open('/workspace');
}

function parent(path) {
  const p = path.replace(/\/+$/, '');
  const i = p.lastIndexOf('/');
  return i <= 0 ? '/' : p.slice(0, i);
}
