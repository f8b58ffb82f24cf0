// Bundles the console into dist/ (gitignored; the server serves it at /console) and
// prints the size of what a browser loads. xterm.js goes to a chunk of its own, loaded
// when a terminal opens; the chunks the first page needs are preloaded from index.html.
import { build } from 'esbuild';
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';

const out = process.env.CHASER_CONSOLE_OUT || 'dist';
rmSync(out, { recursive: true, force: true });
mkdirSync(`${out}/assets`, { recursive: true });
const result = await build({
  entryPoints: { app: 'src/main.js', style: 'src/style.css' },
  bundle: true, minify: true, splitting: true, format: 'esm', chunkNames: 'chunk-[hash]',
  target: ['es2020'], outdir: `${out}/assets`, legalComments: 'linked', logLevel: 'warning',
  metafile: true,
});
const outputs = result.metafile.outputs;
const entry = `${out}/assets/app.js`;
const eager = outputs[entry].imports.filter((i) => i.kind === 'import-statement').map((i) => i.path);
const preload = eager.map((p) => `<link rel="modulepreload" href="/console/assets/${p.split('/').pop()}">`).join('\n');
writeFileSync(`${out}/index.html`, readFileSync('src/index.html', 'utf8').replace('<!-- preload -->', preload));

const size = (files) => files.reduce((n, f) => n + statSync(f).size, 0);
const zipped = (files) => files.reduce((n, f) => n + gzipSync(readFileSync(f)).length, 0);
const first = [`${out}/index.html`, entry, ...eager, `${out}/assets/style.css`];
const all = [`${out}/index.html`, ...Object.keys(outputs).filter((f) => /\.(js|css)$/.test(f))];
const kib = (n) => `${(n / 1024).toFixed(1)} KiB`;
console.log(`chaser console: bundle ${kib(size(all))} (${kib(zipped(all))} gzipped) in ${out}/;`
  + ` first page ${kib(size(first))} (${kib(zipped(first))} gzipped), xterm.js loaded with the first terminal`);
