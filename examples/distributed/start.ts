/**
 * A distributed flowcast on one machine: one Redis, one `flowcast serve --redis`, two
 * `flowcast worker` processes running `tasks.ts`, and this script as the producer that
 * starts a few runs of the `squares` pipeline. Ctrl-C stops everything it started.
 *
 *   node --import tsx examples/distributed/start.ts          # add --once to stop after the runs
 *
 * Environment: REDIS_URL (default: a redis-server started here on a free port),
 * PORT (the server's, default 8765; 0 picks a free one), RUNS (4), ROWS (6),
 * FLOWCAST_KEY_PREFIX ("flowcast:").
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PipelineTrackingManager, describeError } from '../../src/index.js';
import { BullMQBroker } from '../../src/redis/index.js';
import { squaresPipeline } from './tasks.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLI = join(ROOT, 'src/cli/main.ts');
const TASKS = fileURLToPath(new URL('./tasks.ts', import.meta.url));

function intFromEnv(name: string, fallback: number, min: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min) throw new Error(`${name} must be an integer >= ${min}, received ${JSON.stringify(raw)}`);
  return value;
}

const once = process.argv.includes('--once');
const runs = intFromEnv('RUNS', 4, 1);
const rows = intFromEnv('ROWS', 6, 1);
const port = intFromEnv('PORT', 8765, 0);
const keyPrefix = process.env.FLOWCAST_KEY_PREFIX || 'flowcast:';

/** A child this script started: each in a process group of its own, so a terminal's Ctrl-C reaches only this script, which stops them in order. */
interface Child {
  name: string;
  process: ChildProcess;
  exited: Promise<number | null>;
  output: string;
}
const children: Child[] = [];

function start(name: string, command: string, args: string[], env: Record<string, string> = {}, quiet = false): Child {
  const child = spawn(command, args, { cwd: ROOT, detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  const entry: Child = { name, process: child, output: '', exited: new Promise((resolve) => child.once('exit', (code) => resolve(code))) };
  const forward = (chunk: Buffer): void => {
    const text = chunk.toString();
    entry.output += text;
    if (!quiet) for (const line of text.split('\n')) if (line !== '') process.stdout.write(`${name.padEnd(8)}| ${line}\n`);
  };
  child.stdout?.on('data', forward);
  child.stderr?.on('data', forward);
  child.once('error', (error) => {
    entry.output += String(error);
    process.stdout.write(`${name.padEnd(8)}| cannot start ${command}: ${describeError(error)}\n`);
  });
  children.push(entry);
  console.log(`started ${name} (pid ${child.pid ?? '?'})`);
  return entry;
}

async function waitFor(child: Child, pattern: RegExp, what: string, ms = 60_000): Promise<RegExpMatchArray> {
  const deadline = Date.now() + ms;
  for (;;) {
    const match = child.output.match(pattern);
    if (match !== null) return match;
    if (child.process.exitCode !== null || child.process.signalCode !== null) throw new Error(`${child.name} exited before ${what}`);
    if (Date.now() > deadline) throw new Error(`${child.name}: no ${what} within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address !== null ? address.port : 0));
    });
  });
}

let stopping: Promise<void> | null = null;
/** Stops what runs, in order: the producer, the server and workers (SIGTERM, a graceful stop), then Redis. */
function stopAll(producer: BullMQBroker | null, tracking: PipelineTrackingManager | null, redisDir: string | null): Promise<void> {
  stopping ??= (async () => {
    console.log('stopping: server and workers first, then Redis');
    await tracking?.close().catch(() => undefined);
    await producer?.close().catch(() => undefined);
    const flowcast = children.filter((c) => c.name !== 'redis');
    for (const c of flowcast) c.process.kill('SIGTERM');
    await Promise.all(flowcast.map((c) => c.exited));
    for (const c of children.filter((c) => c.name === 'redis')) {
      c.process.kill('SIGTERM');
      await c.exited;
    }
    if (redisDir !== null) rmSync(redisDir, { recursive: true, force: true });
    console.log('stopped');
  })();
  return stopping;
}
// Whatever happens to this script, leave nothing behind.
process.on('exit', () => {
  for (const c of children) if (c.process.exitCode === null && c.process.signalCode === null) c.process.kill('SIGKILL');
});

let producer: BullMQBroker | null = null;
let tracking: PipelineTrackingManager | null = null;
let redisDir: string | null = null;
let interrupted = false;
const onSignal = (): void => {
  if (interrupted) process.exit(130);
  interrupted = true;
  void stopAll(producer, tracking, redisDir).then(() => process.exit(0));
};
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);

try {
  let redisUrl = process.env.REDIS_URL;
  if (redisUrl === undefined || redisUrl === '') {
    const redisPort = await freePort();
    redisDir = mkdtempSync(join(tmpdir(), 'flowcast-example-'));
    const redis = start('redis', 'redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--dir', redisDir, '--save', '', '--appendonly', 'no'], {}, true);
    await waitFor(redis, /Ready to accept connections/, 'Redis ready (is redis-server installed? else set REDIS_URL)', 20_000);
    redisUrl = `redis://127.0.0.1:${redisPort}`;
  }
  const cli = (args: string[]): string[] => ['--import', 'tsx', CLI, ...args, '--redis', redisUrl, '--key-prefix', keyPrefix];
  const server = start('server', process.execPath, cli(['serve', '--port', String(port)]));
  const workers = ['worker-a', 'worker-b'].map((name) => start(name, process.execPath, cli(['worker', '--tasks', TASKS, '--concurrency', '2']), { WORKER_NAME: name }));
  const [, httpUrl] = await waitFor(server, /Dashboard\s+(http:\/\/\S+?)\/?\n/, 'the server banner');
  for (const w of workers) await waitFor(w, /ready:/, 'ready');

  producer = new BullMQBroker({ connection: redisUrl, keyPrefix, worker: false });
  tracking = new PipelineTrackingManager().withAutoStorage(producer);
  const pipeline = squaresPipeline(producer, tracking);
  const handles = await Promise.all(Array.from({ length: runs }, () => pipeline.kiq(rows)));
  console.log(`started ${runs} runs of "squares": watch them at ${httpUrl}/ or with: node --import tsx src/cli/main.ts watch squares --url ${httpUrl?.replace(/^http/, 'ws')}`);
  const ranOn = new Set<string>();
  await Promise.all(
    handles.map(async (run) => {
      const result = await run.waitResult();
      for (const w of Object.keys(result.by_worker)) ranOn.add(w);
      console.log(`run ${run.runId.slice(0, 8)} completed: sum ${result.sum}, squares by ${JSON.stringify(result.by_worker)}`);
    }),
  );
  console.log(`all ${runs} runs completed; steps ran on ${[...ranOn].sort().join(' and ')}`);
  if (once) {
    await stopAll(producer, tracking, redisDir);
    process.exit(0);
  }
  console.log(`the server, the workers and Redis keep running: dashboard ${httpUrl}/, REST ${httpUrl}/api/runs; Ctrl-C stops everything`);
} catch (error) {
  console.error(`distributed example: ${describeError(error)}`);
  await stopAll(producer, tracking, redisDir);
  process.exit(1);
}
