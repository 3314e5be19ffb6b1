import { InvalidArgumentError as UsageError, type Command } from 'commander';
import { Redis } from 'ioredis';
import { InvalidArgumentError, describeError } from '../../core/errors.js';
import { WORKER_DEFAULTS, type BullMQWorkerOptions } from '../../redis/bullmq-options.js';
import { checkKeyPrefix } from '../../redis/keys.js';
import { startWorker, workerOptionsFromEnv, type FlowcastWorker } from '../../redis/worker.js';
import { nonNegativeInt, port, positiveInt, urlWith } from '../options.js';
import { startWorkerMetrics, type WorkerMetricsServer } from '../worker-metrics.js';

/** Options of `flowcast worker`. */
export interface WorkerCommandOptions {
  /** The task module (see docs/distributed.md). Give this or `demo`. */
  tasks?: string;
  /** Run the demo's task module (the demo pipelines of `flowcast serve --demo`). */
  demo?: boolean;
  /** @default $FLOWCAST_REDIS_URL, else "redis://127.0.0.1:6379" */
  redis?: string;
  /** @default 16 */
  concurrency?: number;
  /** @default $FLOWCAST_KEY_PREFIX, else "flowcast:" */
  keyPrefix?: string;
  /** A job's lock, in ms (see `BullMQWorkerOptions.lockDurationMs`). @default $FLOWCAST_LOCK_DURATION_MS, else 10000 */
  lockDurationMs?: number;
  /** The stalled-job check's interval, in ms. @default $FLOWCAST_STALLED_INTERVAL_MS, else 5000 */
  stalledIntervalMs?: number;
  /** Recoveries of one step's job from a stopped worker before the step fails. @default $FLOWCAST_MAX_STALLED_COUNT, else 3 */
  maxStalledCount?: number;
  /** Serve `/metrics` and `/health` on this port (0: a free one, printed at start). Off when not given. */
  metricsPort?: number;
  /** The address of the metrics server. @default "127.0.0.1" */
  metricsHost?: string;
}

/** Where the command writes, and (for tests) what stops it like SIGTERM. */
export interface WorkerIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  signal?: AbortSignal;
}

const DEFAULT_REDIS = 'redis://127.0.0.1:6379';

/** Adds `flowcast worker` to the program. */
export function registerWorkerCommand(program: Command): Command {
  return program
    .command('worker')
    .description('run the jobs of a task module on Redis (BullMQ), until SIGINT/SIGTERM')
    .option('--tasks <module>', 'the task module: it exports a function (default or "register") that registers tasks on the broker it gets')
    .option('--demo', 'run the demo\'s tasks and pipelines (the runs of flowcast serve --redis --demo --no-worker)')
    .option('--redis <url>', `the Redis server (default: $FLOWCAST_REDIS_URL, else ${DEFAULT_REDIS})`, urlWith(['redis:', 'rediss:']))
    .option('-c, --concurrency <count>', 'jobs run at once by this process', positiveInt, 16)
    .option('--key-prefix <prefix>', 'prefix of every Redis key, shared with the servers and producers (default: $FLOWCAST_KEY_PREFIX, else "flowcast:")', keyPrefix)
    .option(
      '--lock-duration-ms <ms>',
      `how long a job's lock lasts unless renewed (renewed every half of it while the step runs; a killed worker's lock runs out within it) (default: $FLOWCAST_LOCK_DURATION_MS, else ${WORKER_DEFAULTS.lockDurationMs})`,
      positiveInt,
    )
    .option(
      '--stalled-interval-ms <ms>',
      `how often the workers look for jobs whose lock ran out and hand them to another worker (default: $FLOWCAST_STALLED_INTERVAL_MS, else ${WORKER_DEFAULTS.stalledIntervalMs})`,
      positiveInt,
    )
    .option(
      '--max-stalled-count <count>',
      `times one step's job is recovered from a worker that stopped before the step fails with WorkerLostError (default: $FLOWCAST_MAX_STALLED_COUNT, else ${WORKER_DEFAULTS.maxStalledCount})`,
      nonNegativeInt,
    )
    .option('--metrics-port <port>', 'serve GET /metrics (Prometheus) and GET /health on this port (0: a free one)', port)
    .option('--metrics-host <host>', 'the address the metrics server listens on (default: 127.0.0.1)')
    .addHelpText(
      'after',
      `
The first SIGINT or SIGTERM stops taking jobs and lets running ones finish; a second
one exits at once (running jobs go back to the queue through BullMQ's stalled-job
recovery and run on another worker). A worker that dies (killed, machine lost) has its
running steps taken over by another worker between lock/2 and lock + stalled interval
after it died: 5-15 s with the defaults. Exit codes: 0 after a clean stop, 130 after a
forced one, 1 when the task module cannot be loaded or Redis cannot be reached, 2 on bad
arguments (bad FLOWCAST_* values included).

Example:
  flowcast worker --tasks ./tasks.js --redis redis://10.0.0.5:6379 --concurrency 8
  flowcast worker --tasks ./tasks.js --lock-duration-ms 4000 --stalled-interval-ms 2000
  flowcast worker --demo
  flowcast worker --tasks ./tasks.js --metrics-port 9464 --metrics-host 0.0.0.0`,
    )
    .action(async (options: WorkerCommandOptions, command: Command) => {
      if ((options.tasks === undefined) === (options.demo !== true)) command.error('error: give --tasks <module> or --demo (one of them)', { exitCode: 2 });
      process.exitCode = await workerCommand(options);
    });
}

function keyPrefix(value: string): string {
  try {
    return checkKeyPrefix(value, '--key-prefix');
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
}

/** Runs a worker until SIGINT/SIGTERM (or `io.signal`); resolves with the exit code. */
export async function workerCommand(options: WorkerCommandOptions, io: WorkerIo = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const redis = options.redis ?? process.env.FLOWCAST_REDIS_URL ?? DEFAULT_REDIS;
  const prefix = options.keyPrefix ?? process.env.FLOWCAST_KEY_PREFIX;
  let fromEnv: BullMQWorkerOptions;
  try {
    fromEnv = workerOptionsFromEnv();
  } catch (error) {
    if (!(error instanceof InvalidArgumentError)) throw error;
    io.stderr.write(`flowcast worker: ${error.message}\n`);
    return 2;
  }
  // The flags win over the environment, which wins over the defaults.
  const settings: BullMQWorkerOptions = { ...fromEnv };
  if (options.lockDurationMs !== undefined) settings.lockDurationMs = options.lockDurationMs;
  if (options.stalledIntervalMs !== undefined) settings.stalledIntervalMs = options.stalledIntervalMs;
  if (options.maxStalledCount !== undefined) settings.maxStalledCount = options.maxStalledCount;
  const lock = settings.lockDurationMs ?? WORKER_DEFAULTS.lockDurationMs;
  const stalled = settings.stalledIntervalMs ?? WORKER_DEFAULTS.stalledIntervalMs;
  let worker: FlowcastWorker;
  const abort = new AbortController();
  const onSignal = (): void => abort.abort();
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const unreachable = await probeRedis(redis);
    if (unreachable !== null) {
      io.stderr.write(`flowcast worker: cannot reach Redis at ${redactUrl(redis)}: ${unreachable}\n`);
      return 1;
    }
    try {
      worker = await startWorker({
        connection: redis,
        tasks: options.tasks ?? new URL('../../demo/worker-tasks.js', import.meta.url),
        concurrency: options.concurrency ?? 16,
        worker: settings,
        ...(prefix !== undefined && { keyPrefix: prefix }),
        onError: (error) => io.stderr.write(`flowcast worker: ${describeError(error)}\n`),
      });
    } catch (error) {
      io.stderr.write(`flowcast worker: ${describeError(error)}\n`);
      return 1;
    }
    io.stdout.write(
      `flowcast worker ${worker.id} ready: ${worker.tasks.length} task(s) [${worker.tasks.join(', ')}], concurrency ${options.concurrency ?? 16}, lock ${lock} ms, stalled check every ${stalled} ms, ${redactUrl(redis)}\n`,
    );
    let metrics: WorkerMetricsServer | null = null;
    let running = true;
    if (options.metricsPort !== undefined) {
      const broker = worker.broker;
      try {
        metrics = await startWorkerMetrics(
          { workerId: worker.id, concurrency: options.concurrency ?? 16, counters: () => broker.workerCounters, running: () => running },
          { port: options.metricsPort, ...(options.metricsHost !== undefined && { host: options.metricsHost }) },
        );
      } catch (error) {
        io.stderr.write(`flowcast worker: cannot serve metrics on ${options.metricsHost ?? '127.0.0.1'}:${options.metricsPort}: ${describeError(error)}\n`);
        await worker.close({ force: true });
        return 1;
      }
      io.stdout.write(`flowcast worker: metrics at ${metrics.url}/metrics, health at ${metrics.url}/health\n`);
    }
    const stop = new Promise<void>((resolve) => {
      if (abort.signal.aborted || io.signal?.aborted === true) resolve();
      abort.signal.addEventListener('abort', () => resolve(), { once: true });
      io.signal?.addEventListener('abort', () => resolve(), { once: true });
    });
    await stop;
    io.stdout.write('flowcast worker: stopping, letting running jobs finish (signal again to exit at once)\n');
    running = false;
    const graceful = worker.close().finally(() => metrics?.close());
    // A second signal: exit now and leave running jobs to BullMQ's stalled-job recovery.
    const again = (): void => {
      io.stdout.write('flowcast worker: exiting now; running jobs go back to the queue when their locks expire\n');
      process.exit(130);
    };
    process.once('SIGINT', again);
    process.once('SIGTERM', again);
    try {
      await graceful;
    } finally {
      process.off('SIGINT', again);
      process.off('SIGTERM', again);
    }
    io.stdout.write('flowcast worker: stopped\n');
    return 0;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/**
 * Checks once that Redis answers, so a wrong URL fails at start instead of retrying
 * forever (once running, the worker rides out Redis restarts). `null` when it answers.
 */
async function probeRedis(url: string): Promise<string | null> {
  const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 5_000 });
  probe.on('error', () => undefined);
  try {
    await probe.connect();
    await probe.ping();
    return null;
  } catch (error) {
    return describeError(error);
  } finally {
    probe.disconnect();
  }
}

function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    return u.toString();
  } catch {
    return url;
  }
}
