/**
 * A distributed bench worker process, driven by bench/distributed.ts over IPC.
 *
 * - `flowcast`: `startWorker()` (a BullMQBroker in worker mode) running the no-op
 *   pipeline with hooks (a `'*'` listener counting) and tracking (`withAutoStorage`:
 *   RedisPipelineStorage) attached, and its untracked twin (hooks only); events go to
 *   the run's Redis log and Pub/Sub.
 * - `raw`: a bare BullMQ `Worker` with a no-op processor on its own queue.
 * - `emit`: `startWorker()` running the one-step pipeline whose task writes log lines.
 * - `memory`: `startWorker()` running the memory part's pipeline (steps that log), tracked.
 *
 * Usage (by the bench): node worker.js flowcast|raw|emit|memory <redis-url> <key-prefix> <concurrency> <steps> [<chainSteps> | <lines>]
 */
import { Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { HookManager } from '../../src/events/hook-manager.js';
import { PipelineTrackingManager } from '../../src/tracking/manager.js';
import { bullmqPrefix } from '../../src/redis/keys.js';
import { startWorker, type FlowcastWorker } from '../../src/redis/worker.js';
import { ANNOUNCE_SCRIPT, APPEND_SCRIPT, CREATE_SCRIPT, LuaScript, PUBLISH_SCRIPT, TRANSITION_SCRIPT } from '../../src/redis/lua.js';
import { COMMIT, DELETE, FAST_APPLY, FAST_APPLY_GROUP, OFFER, OFFER_MANY, READ_AT, SAVE } from '../../src/redis/storage-lua.js';
import { nowUs, serveRequests } from '../fanout/shared.js';
import { RAW_QUEUE, emitPipeline, memoryPipeline, noopPipelines, type CountReport } from './shared.js';

const [mode, url, keyPrefix, concurrencyArg, stepsArg, chainArg] = process.argv.slice(2);
if (mode !== 'flowcast' && mode !== 'raw' && mode !== 'emit' && mode !== 'memory') throw new Error(`worker.js: mode must be flowcast, raw, emit or memory, received ${String(mode)}`);
if (url === undefined || keyPrefix === undefined) throw new Error('worker.js: usage: worker.js <mode> <redis-url> <key-prefix> <concurrency> <steps>');
const concurrency = Number(concurrencyArg);
const steps = Number(stepsArg);
if (!Number.isSafeInteger(concurrency) || concurrency < 1) throw new Error(`worker.js: concurrency must be an integer >= 1, received ${String(concurrencyArg)}`);
if (!Number.isSafeInteger(steps) || steps < 1) throw new Error(`worker.js: steps must be an integer >= 1, received ${String(stepsArg)}`);
/** The broker's `chainSteps` (undefined: its default); in `memory` mode, the log lines per step. */
const chainSteps = chainArg === undefined || mode === 'memory' ? undefined : Number(chainArg);
const memoryLines = mode === 'memory' ? Number(chainArg ?? '0') : 0;

const count: CountReport = { completed: 0, steps: 0, events: 0, lastUs: 0 };

/**
 * DISTRIBUTED_COUNT_COMMANDS=1: counts the Redis commands this process sends, by name
 * (a diagnosis aid: it wraps ioredis's sendCommand, so it is off for measured figures).
 */
const commands = new Map<string, number>();
if (process.env.DISTRIBUTED_COUNT_COMMANDS === '1') {
  // Scripts are named: flowcast's by their source's SHA1, BullMQ's by the name it defined them under.
  const scriptNames = new Map<string, string>();
  for (const [name, source] of Object.entries({ APPEND_SCRIPT, CREATE_SCRIPT, TRANSITION_SCRIPT, PUBLISH_SCRIPT, ANNOUNCE_SCRIPT })) {
    scriptNames.set(new LuaScript(source).sha, `flowcast ${name.replace('_SCRIPT', '').toLowerCase()}`);
  }
  for (const [name, script] of Object.entries({ OFFER, OFFER_MANY, READ_AT, FAST_APPLY, FAST_APPLY_GROUP, COMMIT, SAVE, DELETE })) scriptNames.set(script.sha, `tracking ${name.toLowerCase()}`);
  type Client = { scriptsSet?: Record<string, { sha: string }> };
  const proto = Redis.prototype as unknown as { sendCommand: (command: { name: string; args: unknown[] }, ...rest: unknown[]) => unknown };
  const send = proto.sendCommand;
  proto.sendCommand = function (this: Client, command: { name: string; args: unknown[] }, ...rest: unknown[]) {
    let name = command.name;
    if (name === 'evalsha') {
      const sha = String(command.args[0]);
      if (!scriptNames.has(sha)) for (const [n, script] of Object.entries(this.scriptsSet ?? {})) scriptNames.set(script.sha, `bullmq ${n}`);
      name = `evalsha (${scriptNames.get(sha) ?? sha.slice(0, 8)})`;
    }
    commands.set(name, (commands.get(name) ?? 0) + 1);
    return send.call(this, command, ...rest);
  };
}
let close: () => Promise<void>;

const onError = (error: Error): void => {
  console.error(`bench worker ${mode} ${process.pid}: ${error.message}`);
};

if (mode === 'raw') {
  const connection = new Redis(url, { maxRetriesPerRequest: null });
  const worker = new Worker(RAW_QUEUE, () => Promise.resolve(null), { connection, prefix: bullmqPrefix(keyPrefix), concurrency });
  worker.on('completed', () => {
    count.completed++;
    count.steps++;
    count.lastUs = nowUs();
  });
  worker.on('error', onError);
  await worker.waitUntilReady();
  close = async () => {
    await worker.close();
    await connection.quit();
  };
} else {
  let tracking: PipelineTrackingManager | null = null;
  const hooks = new HookManager();
  hooks.on('*', (event) => {
    count.events++;
    if (event.type === 'StepCompleteEvent') count.steps++;
    else if (event.type === 'PipelineCompleteEvent') {
      count.completed++;
      count.lastUs = nowUs();
    }
  });
  const worker: FlowcastWorker = await startWorker({
    connection: url,
    keyPrefix,
    concurrency,
    ...(chainSteps !== undefined && { worker: { chainSteps } }),
    onError,
    register: (broker) => {
      if (mode === 'flowcast') {
        tracking = new PipelineTrackingManager().withAutoStorage(broker);
        const { tracked, untracked } = noopPipelines(broker, steps);
        tracked.withHooks(hooks).withTracking(tracking);
        untracked.withHooks(hooks);
      } else if (mode === 'memory') {
        tracking = new PipelineTrackingManager().withAutoStorage(broker);
        memoryPipeline(broker, steps, memoryLines).withHooks(hooks).withTracking(tracking);
      } else {
        emitPipeline(broker);
      }
    },
  });
  // Tracking uses the broker's connection: closed first (as `flowcast serve` does); the bench is idle by then.
  close = async () => {
    await hooks.idle();
    await tracking?.close();
    await worker.close();
  };
}

let mark = process.cpuUsage();

serveRequests(async (msg) => {
  switch (msg.cmd) {
    case 'ready':
      return process.pid;
    case 'mark':
      mark = process.cpuUsage();
      return null;
    case 'measure': {
      // CPU µs this process spent since `mark`.
      const cpu = process.cpuUsage(mark);
      return cpu.user + cpu.system;
    }
    case 'count':
      return { ...count };
    case 'commands':
      return Object.fromEntries(commands);
    case 'reset':
      count.completed = 0;
      count.steps = 0;
      count.events = 0;
      count.lastUs = 0;
      commands.clear();
      return null;
    case 'close':
      await close();
      setImmediate(() => process.exit(0));
      return null;
    default:
      throw new Error(`unknown command ${String(msg.cmd)}`);
  }
});
