/**
 * The commands an `sh` doc block may call, as shims first on its PATH (docs/CONTRIBUTING.md,
 * "Doc blocks are tests"):
 *
 * - `flowcast` (and `npx flowcast`): the real CLI from source. Client commands (`watch`,
 *   `run`, `resume`, `status`, `history`) get `--url $FLOWCAST_URL` unless they name one; `serve`
 *   gets `--port 0` unless it names one. Commands that run until stopped (`serve`,
 *   `worker`, `demo`, `watch` without `--run`) are stopped with SIGINT, as by Ctrl-C, once
 *   they printed their first line, and must then exit 0.
 * - `npm`: `npm install` passes; `npm start`/`npm test`/`npm run <script>` check that
 *   package.json has the script, and do not run it (the suite is what `npm test` runs).
 * - `node --import tsx <file>`: checks that the file exists (each example has its own
 *   smoke test that runs it).
 * - `curl`: the real curl with `-sS --fail-with-body`, `127.0.0.1:8765`/`localhost:8765`
 *   rewritten to the harness's server.
 * - `redis-cli`: the real one against `$REDIS_URL`.
 */
import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const FLOWCAST = `import { spawn } from 'node:child_process';
const root = process.env.FLOWCAST_DOC_ROOT;
const args = process.argv.slice(2);
const command = args[0];
const has = (flag) => args.some((a) => a === flag || a.startsWith(flag + '='));
if (['watch', 'run', 'resume', 'status', 'history'].includes(command) && !has('--url')) args.push('--url', process.env.FLOWCAST_URL);
if (command === 'serve' && !has('--port')) args.push('--port', '0');
const longRunning = ['serve', 'worker', 'demo'].includes(command) || (command === 'watch' && !has('--run'));
const env = { ...process.env };
delete env.TSX_TSCONFIG_PATH;
const child = spawn(process.execPath, ['--import', 'tsx', root + '/src/cli/main.ts', ...args], { stdio: ['ignore', 'pipe', 'inherit'], env });
let printed = false;
child.stdout.on('data', (chunk) => {
  process.stdout.write(chunk);
  if (longRunning && !printed && chunk.includes(10)) {
    printed = true;
    setTimeout(() => child.kill('SIGINT'), 1500);
  }
});
child.on('close', (code, signal) => {
  if (longRunning && !printed) console.error('flowcast ' + command + ' ended before it printed anything');
  process.exit(code ?? (signal === 'SIGINT' ? 130 : 1));
});
`;

const NPX = `#!/usr/bin/env bash
if [ "$1" = flowcast ]; then shift; exec flowcast "$@"; fi
echo "doc harness: npx $1 is not run (only npx flowcast)" >&2; exit 1
`;

const NPM = `#!/usr/bin/env bash
case "$1" in
  install|ci) exit 0 ;;
  start|test) script="$1" ;;
  run) script="$2" ;;
  *) echo "doc harness: npm $1 is not run" >&2; exit 1 ;;
esac
node -e 'const s=require(process.argv[1]).scripts||{}; if(!(process.argv[2] in s)){console.error("package.json has no script "+process.argv[2]);process.exit(1)}' "$FLOWCAST_DOC_ROOT/package.json" "$script"
`;

const NODE = `#!/usr/bin/env bash
if [ "$1" = --import ] && [ "$2" = tsx ] && [ -n "$3" ]; then
  if [ -f "$FLOWCAST_DOC_ROOT/$3" ]; then exit 0; fi
  echo "doc harness: $3 does not exist" >&2; exit 1
fi
echo "doc harness: only 'node --import tsx <file>' lines are checked" >&2; exit 1
`;

const CURL = `#!/usr/bin/env bash
args=()
for a in "$@"; do a="\${a//http:\\/\\/127.0.0.1:8765/$FLOWCAST_URL}"; a="\${a//http:\\/\\/localhost:8765/$FLOWCAST_URL}"; args+=("$a"); done
exec "$(PATH="$FLOWCAST_DOC_PATH" command -v curl)" -sS --fail-with-body "\${args[@]}"
`;

const REDIS_CLI = `#!/usr/bin/env bash
exec "$(PATH="$FLOWCAST_DOC_PATH" command -v redis-cli)" -u "$REDIS_URL" "$@"
`;

/** Writes the shims into `<base>/bin` (once) and returns that folder, to put first on PATH. */
export function shimDir(base: string, root: string): string {
  const dir = join(base, 'bin');
  if (existsSync(join(dir, 'flowcast'))) return dir;
  mkdirSync(dir, { recursive: true });
  const realNode = process.execPath;
  const files: Record<string, string> = {
    'flowcast.mjs': FLOWCAST.replace('process.env.FLOWCAST_DOC_ROOT', JSON.stringify(root)),
    flowcast: `#!/usr/bin/env bash\nexec ${JSON.stringify(realNode)} ${JSON.stringify(join(dir, 'flowcast.mjs'))} "$@"\n`,
    npx: NPX,
    npm: NPM.replace('node -e', `${JSON.stringify(realNode)} -e`).replace('$FLOWCAST_DOC_ROOT', root),
    node: NODE.replaceAll('$FLOWCAST_DOC_ROOT', root),
    curl: CURL.replace('$FLOWCAST_DOC_PATH', process.env.PATH ?? ''),
    'redis-cli': REDIS_CLI.replace('$FLOWCAST_DOC_PATH', process.env.PATH ?? ''),
  };
  for (const [name, text] of Object.entries(files)) {
    writeFileSync(join(dir, name), text);
    chmodSync(join(dir, name), 0o755);
  }
  return dir;
}
