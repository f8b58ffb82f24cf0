// Bundles the console into dist/ (gitignored; the server serves it at /console) and
// prints the size of what a browser loads.
import { build } from 'esbuild';
import { copyFileSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { readFileSync } from 'node:fs';

const out = process.env.CHASER_CONSOLE_OUT || 'dist';
rmSync(out, { recursive: true, force: true });
mkdirSync(`${out}/assets`, { recursive: true });
await build({
  entryPoints: { app: 'src/main.js', style: 'src/style.css' },
  bundle: true, minify: true, sourcemap: false, target: ['es2020'],
  outdir: `${out}/assets`, legalComments: 'linked', logLevel: 'warning',
});
copyFileSync('src/index.html', `${out}/index.html`);
let total = 0, gz = 0;
for (const f of ['index.html', 'assets/app.js', 'assets/style.css']) {
  const body = readFileSync(`${out}/${f}`);
  total += statSync(`${out}/${f}`).size; gz += gzipSync(body).length;
}
console.log(`chaser console: bundle ${(total / 1024).toFixed(1)} KiB (${(gz / 1024).toFixed(1)} KiB gzipped) in ${out}/`);
