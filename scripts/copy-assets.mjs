// Copies what tsc does not emit to the same place under dist/: the plain-JS files
// (src/**/*.mjs, e.g. the worker-thread entry src/core/thread-worker.mjs) and every file
// under a `static` folder (src/**/static/**, e.g. the server's built-in page).
import { copyFileSync, mkdirSync, readdirSync } from 'node:fs';
import { dirname, isAbsolute, join, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(root, 'src');
// Destination: dist/ by default, or the folder given as the first argument (absolute, or relative to the repo root).
const arg = process.argv[2];
const dist = arg === undefined ? join(root, 'dist') : isAbsolute(arg) ? arg : join(root, arg);

let copied = 0;
for (const entry of readdirSync(src, { recursive: true, withFileTypes: true })) {
  if (!entry.isFile()) continue;
  // `parentPath` from Node 20.12; `path` before (deprecated since, same value).
  const from = join(entry.parentPath ?? entry.path, entry.name);
  const inStatic = from.slice(src.length).split(sep).includes('static');
  if (!entry.name.endsWith('.mjs') && !inStatic) continue;
  const to = join(dist, from.slice(src.length));
  mkdirSync(dirname(to), { recursive: true });
  copyFileSync(from, to);
  copied++;
}
console.log(`copy-assets: ${copied} file(s) from src/ to dist/`);
