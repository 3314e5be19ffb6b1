// Copies the plain-JS files tsc does not emit (src/**/*.mjs, e.g. the worker-thread
// entry src/core/thread-worker.mjs) to the same place under dist/.
import { copyFileSync, mkdirSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(root, 'src');
// Destination: dist/ by default, or the folder given as the first argument.
const dist = process.argv[2] === undefined ? join(root, 'dist') : join(root, process.argv[2]);

let copied = 0;
for (const entry of readdirSync(src, { recursive: true, withFileTypes: true })) {
  if (!entry.isFile() || !entry.name.endsWith('.mjs')) continue;
  // `parentPath` from Node 20.12; `path` before (deprecated since, same value).
  const from = join(entry.parentPath ?? entry.path, entry.name);
  const to = join(dist, from.slice(src.length));
  mkdirSync(dirname(to), { recursive: true });
  copyFileSync(from, to);
  copied++;
}
console.log(`copy-assets: ${copied} file(s) from src/ to dist/`);
