/**
 * The module graph of each public entry point, as Node really loads it: `import 'flowcast'`
 * loads no Redis, BullMQ or HTTP server module, the client SDK loads only itself and the
 * shared helpers, and the server and Redis entries stay out of each other's way. The
 * folder rules behind it are lint rules (eslint.layers.js); this checks what runs.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const RECORD = fileURLToPath(new URL('./fixtures/architecture/record.mjs', import.meta.url));

interface Graph {
  /** src/ folders loaded (e.g. "core", "redis"). */
  folders: Set<string>;
  /** npm packages loaded (e.g. "bullmq", "@fastify/static"). */
  packages: Set<string>;
}

/** Imports `entry` (a path under src/) in a fresh Node process and reads what it loaded. */
async function graphOf(entry: string): Promise<Graph> {
  const { stderr } = await run(process.execPath, ['--import', 'tsx', '--import', RECORD, '--input-type=module', '-e', `await import('./${entry}')`], {
    cwd: ROOT,
    timeout: 60_000,
    maxBuffer: 16 * 1024 * 1024,
  });
  const folders = new Set<string>();
  const packages = new Set<string>();
  for (const line of stderr.split('\n')) {
    if (!line.startsWith('LOADED file://')) continue;
    const path = fileURLToPath(line.slice('LOADED '.length));
    const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(path);
    if (pkg !== null) {
      // tsx's own loader is how the test runs TypeScript, not part of the graph.
      if (!['tsx', 'esbuild', 'get-tsconfig', 'resolve-pkg-maps'].includes(pkg[1]!)) packages.add(pkg[1]!);
      continue;
    }
    const folder = /\/src\/([^/]+)\//.exec(path.slice(ROOT.length - 1));
    if (folder !== null) folders.add(folder[1]!);
  }
  return { folders, packages };
}

const SERVER_PACKAGES = ['fastify', '@fastify/static', '@fastify/cors', '@fastify/rate-limit', 'ws', 'jose', 'prom-client'];
const REDIS_PACKAGES = ['bullmq', 'ioredis'];

describe('module graph of each entry point', () => {
  it("import 'flowcast' loads no Redis, BullMQ or HTTP server module", async () => {
    const g = await graphOf('src/index.ts');
    expect([...g.folders].sort()).toEqual(['core', 'events', 'pipeline', 'scheduler', 'tracking', 'transport']);
    for (const p of [...SERVER_PACKAGES, ...REDIS_PACKAGES, 'pino-pretty']) expect(g.packages, p).not.toContain(p);
  }, 90_000);

  it("import 'flowcast/client' loads the SDK and shared helpers only, and no npm package", async () => {
    const g = await graphOf('src/client/index.ts');
    for (const f of g.folders) expect(['client', 'core', 'events', 'tracking', 'server']).toContain(f);
    expect(g.folders).not.toContain('server'); // protocol types are type-only imports
    expect([...g.packages]).toEqual([]);
  }, 90_000);

  it("import 'flowcast/server' loads no Redis or BullMQ module", async () => {
    const g = await graphOf('src/server/index.ts');
    expect(g.folders).not.toContain('redis');
    for (const p of REDIS_PACKAGES) expect(g.packages, p).not.toContain(p);
    expect(g.packages).toContain('fastify');
  }, 90_000);

  it("import 'flowcast/redis' loads no HTTP server module", async () => {
    const g = await graphOf('src/redis/index.ts');
    expect(g.folders).not.toContain('server');
    for (const p of SERVER_PACKAGES) expect(g.packages, p).not.toContain(p);
    expect(g.packages).toContain('bullmq');
  }, 90_000);
});
