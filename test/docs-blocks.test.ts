/**
 * Every fenced block of README.md, docs/*.md and examples/*\/README.md is a test
 * (docs/CONTRIBUTING.md, "Doc blocks are tests"): every fence says what it is; json
 * blocks parse; ts/js blocks compile together under strict tsc and each runs (tsx, its
 * own process) against a real server and a real redis-server; sh blocks run their
 * `flowcast` commands against that server through a shim of the CLI.
 * `DOCS_BLOCKS=docs/client.md npx vitest run test/docs-blocks.test.ts` runs one page.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ROOT, docFiles, infoProblems, mapStack, pageDir, parseBlocks, pool, programsOf, runChild, typecheck, writePrograms,
  type ChildResult, type DocBlock, type DocProgram,
} from './helpers/doc-blocks.js';
import { startRedisServer, type RedisServer } from './helpers/redis.js';
import { shimDir } from './helpers/doc-shims.js';

const files = docFiles();
const blocks: DocBlock[] = files.flatMap((f) => parseBlocks(f, readFileSync(join(ROOT, f), 'utf8')));
const programs: DocProgram[] = files.flatMap((f) => programsOf(blocks.filter((b) => b.file === f)));
const shells = blocks.filter((b) => b.lang === 'sh');
/** The token of the harness's server, also given to blocks as FLOWCAST_TOKEN (docs write 'my-api-key'). */
const TOKEN = 'my-api-key';
const CONCURRENCY = Math.max(2, Math.min(4, availableParallelism()));
/** Redis databases handed to programs, one per program in flight, so BullMQ queues of two blocks never meet. */
const freeDbs = Array.from({ length: 15 }, (_, i) => i + 1);

let base = '';
let redis: RedisServer | null = null;
let server: { url: string; stop: () => Promise<ChildResult> } | null = null;

/** Starts `flowcast serve --demo` with a token on port 0 (a real server, the CLI's own). */
async function startServer(): Promise<{ url: string; stop: () => Promise<ChildResult> }> {
  const { spawn } = await import('node:child_process');
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'serve', '--demo', '--port', '0', '--token', TOKEN], {
    cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, FLOWCAST_REDIS_URL: undefined, FLOWCAST_TOKEN: undefined },
  });
  let out = '';
  const closed = new Promise<ChildResult>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout: out, stderr: '', timedOut: false, stopped: true })));
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      out += chunk;
      const m = /listening on ([\d.]+:\d+)/.exec(out);
      if (m !== null) resolve(`http://${m[1]}`);
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
    void closed.then(() => reject(new Error(`flowcast serve exited: ${out}`)));
  });
  return { url, stop: async () => { child.kill('SIGTERM'); return closed; } };
}

/** The environment of a block: the server and Redis it may use, the shims first on PATH. */
function envFor(db: number | null): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('FLOWCAST_') || k === 'NODE_OPTIONS' || k.startsWith('VITEST')) delete env[k];
  return {
    ...env,
    NO_COLOR: '1',
    PORT: '0',
    FLOWCAST_URL: server?.url ?? '',
    FLOWCAST_TOKEN: TOKEN,
    REDIS_URL: redis === null ? '' : `${redis.url}/${db ?? 0}`,
    FLOWCAST_REDIS_URL: redis === null ? '' : `${redis.url}/${db ?? 0}`,
    TSX_TSCONFIG_PATH: join(base, 'tsconfig.json'),
    PATH: `${shimDir(base, ROOT)}:${process.env.PATH ?? ''}`,
  };
}

/** What a failed block printed, its last lines, with the temp paths mapped back to the doc. */
function tail(result: ChildResult): string {
  const text = `${result.stdout}\n${result.stderr}`.trim().split('\n').slice(-25).join('\n');
  return mapStack(text, base, programs);
}

beforeAll(async () => {
  mkdirSync(join(ROOT, '.tmp'), { recursive: true });
  base = mkdtempSync(join(ROOT, '.tmp', 'docs-'));
  redis = await startRedisServer();
  server = await startServer();
  // Blocks that watch an ended run find one: wait for the demo's first run to end (polling, no fixed delay).
  for (let i = 0; i < 120; i++) {
    const answer = await fetch(`${server.url}/api/history?ended_only=true&limit=1`, { headers: { authorization: `Bearer ${TOKEN}` } });
    const body = (await answer.json()) as { runs?: unknown[] };
    if ((body.runs?.length ?? 0) > 0) break;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}, 120_000);

afterAll(async () => {
  await server?.stop();
  await redis?.stop();
  if (base !== '' && process.env.DOCS_BLOCKS_KEEP === undefined) rmSync(base, { recursive: true, force: true });
}, 30_000);

describe(`doc blocks (${files.length} pages: ${programs.length} programs, ${shells.length} shell blocks)`, () => {
  it('every fence says what it is (ts, js, sh, json, text, http...), with known flags', () => {
    expect(infoProblems(blocks)).toEqual([]);
  });

  it('every json block parses', () => {
    const bad: string[] = [];
    for (const b of blocks.filter((x) => x.lang === 'json')) {
      try {
        JSON.parse(b.body);
      } catch (error) {
        bad.push(`${b.file}:${b.line}: ${(error as Error).message}`);
      }
    }
    expect(bad).toEqual([]);
  });

  it('every ts/js block compiles under strict TypeScript, all in one tsc run', async () => {
    const tsconfig = writePrograms(base, programs);
    expect(await typecheck(base, tsconfig, programs), 'type errors, at the doc line').toEqual([]);
  }, 300_000);

  it('every ts/js block runs as printed (exit 0; `serves` blocks: alive once they printed)', async () => {
    writePrograms(base, programs);
    const failures = await pool(programs.filter((p) => p.run), CONCURRENCY, async (p) => {
      const db = freeDbs.shift() ?? 0;
      try {
        const result = await runChild(process.execPath, ['--import', 'tsx', p.path], {
          cwd: pageDir(base, p.file), env: envFor(db), timeoutMs: 60_000, untilOutput: p.serves,
        });
        const ok = p.fails ? result.code !== 0 && !result.timedOut : p.serves ? result.code === 0 || (result.stopped && (result.signal === 'SIGINT' || result.code === 130)) : result.code === 0;
        if (ok) return null;
        const why = result.timedOut ? 'did not end within 60 s' : p.fails ? 'was to fail and exited 0' : `exited ${result.code ?? result.signal}`;
        return `${p.name} ${why}:\n${tail(result)}`;
      } finally {
        await runChild('redis-cli', ['-u', `${redis?.url ?? ''}/${db}`, 'FLUSHDB'], { cwd: ROOT, env: process.env, timeoutMs: 10_000 });
        freeDbs.push(db);
      }
    });
    expect(failures.filter((f) => f !== null).join('\n\n')).toBe('');
  }, 600_000);

  it('every sh block runs: flowcast through the CLI shim against a real server, npm/node lines checked', async () => {
    const failures = await pool(shells, CONCURRENCY, async (b) => {
      const script = join(base, `sh-${b.file.replace(/\W/g, '_')}-${b.line}.sh`);
      writeFileSync(script, `set -eo pipefail\n${b.body}\n`);
      const result = await runChild('bash', [script], { cwd: ROOT, env: envFor(0), timeoutMs: 120_000 });
      return result.code === 0 ? null : `${b.file}:${b.line} exited ${result.code ?? result.signal}${result.timedOut ? ' (timed out)' : ''}:\n${tail(result)}`;
    });
    expect(failures.filter((f) => f !== null).join('\n\n')).toBe('');
  }, 600_000);
});
