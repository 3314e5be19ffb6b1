/**
 * A Python producer feeding a run's log: the `train` pipeline's step starts
 * `python3 train.py`, which writes its log lines and progress straight to Redis (the
 * ingest stream of docs/redis.md, "External producers"); the ingestor of this process
 * puts them in the run's log, and every client watching the run (dashboard, WebSocket,
 * `flowcast watch`) sees them as StepLogEvent and StepProgressEvent events, in order.
 *
 *   node --import tsx examples/python-producer/main.ts          # add --once to stop after the run
 *
 * Environment: REDIS_URL (default: a redis-server started here on a free port), PORT
 * (8765; 0 picks a free one), FLOWCAST_KEY_PREFIX ("flowcast:"), EPOCHS and
 * EPOCH_SECONDS (passed to train.py).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pipeline, PipelineTrackingManager, describeError } from '../../src/index.js';
import { BullMQBroker, ExternalEventIngestor, RedisPubSubTransport, RedisRunState } from '../../src/redis/index.js';
import { getWebSocketServer, type FlowcastServer } from '../../src/server/index.js';

const TRAIN_PY = fileURLToPath(new URL('./train.py', import.meta.url));
const once = process.argv.includes('--once');
const keyPrefix = process.env.FLOWCAST_KEY_PREFIX || 'flowcast:';
const port = Number(process.env.PORT ?? 8765);
if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`PORT must be a port number, received ${JSON.stringify(process.env.PORT)}`);

/** Starts `redis-server` on a free port in its own process group (so Ctrl-C stops it last, from here). */
async function startRedis(): Promise<{ url: string; stop(): Promise<void> }> {
  const redisPort = await new Promise<number>((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      probe.close(() => resolve(typeof address === 'object' && address !== null ? address.port : 0));
    });
  });
  const dir = mkdtempSync(join(tmpdir(), 'flowcast-example-'));
  const child: ChildProcess = spawn('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no'], {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  process.on('exit', () => child.exitCode === null && child.kill('SIGKILL'));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let output = '';
  await new Promise<void>((resolve, reject) => {
    child.once('error', (error) => reject(new Error(`cannot start redis-server (install Redis, or set REDIS_URL): ${describeError(error)}`)));
    child.once('exit', (code) => reject(new Error(`redis-server exited with ${code}: ${output}`)));
    child.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('Ready to accept connections')) resolve();
    });
  });
  console.log(`started redis-server on port ${redisPort} (pid ${child.pid ?? '?'})`);
  return {
    url: `redis://127.0.0.1:${redisPort}`,
    async stop() {
      child.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Runs `python3 train.py` for the step `ctx` belongs to; rejects when it fails. */
function runPython(env: Record<string, string>, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('python3', [TRAIN_PY], { stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, ...env }, signal });
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`python3 train.py exited with ${code}`))));
  });
}

let redisUrl = process.env.REDIS_URL ?? '';
const ownRedis = redisUrl === '' ? await startRedis() : null;
if (ownRedis !== null) redisUrl = ownRedis.url;
const broker = new BullMQBroker({ connection: redisUrl, keyPrefix, worker: { concurrency: 4 } });
const tracking = new PipelineTrackingManager().withAutoStorage(broker);
if (!(broker.transport instanceof RedisPubSubTransport) || !(broker.runState instanceof RedisRunState)) throw new Error('expected the Redis transport and run state');
const transport = broker.transport;

const train = broker.task('train', async (_input: null, ctx) => {
  const runId = ctx.runId ?? '';
  await runPython({ RUN_ID: runId, STEP: ctx.stepName ?? '', REDIS_URL: redisUrl, FLOWCAST_PREFIX: keyPrefix }, ctx.signal);
  // The ingestor appends asynchronously: end the step once Python's last line is in the log.
  for (;;) {
    const { events } = await transport.read(runId);
    if (events.some((e) => e.type === 'StepLogEvent' && e.lines.some((line) => line.startsWith('done:')))) return 'trained';
    ctx.signal.throwIfAborted();
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
});
const pipeline = new Pipeline(broker, { id: 'train' }).callNext(train).withTracking(tracking);

// What `flowcast serve --redis` runs in every server: the consumer of the ingest stream.
const ingestor = new ExternalEventIngestor({ transport, runState: broker.runState, onEvent: (event) => tracking.record(event) });
let server: FlowcastServer | null = null;

let stopping: Promise<void> | null = null;
function stop(): Promise<void> {
  stopping ??= (async () => {
    console.log('python-producer: stopping');
    await server?.close();
    await ingestor.close();
    await tracking.close();
    await broker.close();
    await ownRedis?.stop();
    console.log('python-producer: stopped');
  })();
  return stopping;
}
let signals = 0;
const onSignal = (): void => {
  if (++signals > 1) process.exit(130);
  void stop().then(() => process.exit(0));
};
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);

try {
  await ingestor.start();
  server = getWebSocketServer({ host: '127.0.0.1', port, broker, tracking, pipelines: [pipeline] });
  await server.startServer();
  const run = await pipeline.kiq(null);
  console.log(`started run ${run.runId} of "train": watch it at ${server.httpUrl}/ or with: node --import tsx src/cli/main.ts watch --run ${run.runId.slice(0, 8)} --url ${server.url}`);
  console.log(`run ${run.runId.slice(0, 8)}: ${await run.waitResult()}`);
  if (once) {
    await stop();
    process.exit(0);
  }
  console.log(`start another: curl -X POST ${server.httpUrl}/api/pipelines/train/runs -H 'content-type: application/json' -d '{}'; Ctrl-C stops`);
} catch (error) {
  console.error(`python-producer: ${describeError(error)}`);
  await stop();
  process.exit(1);
}
