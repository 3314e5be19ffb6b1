import { InvalidArgumentError as UsageError, Option, type Command } from 'commander';
import { InvalidArgumentError, describeError } from '../../core/errors.js';
import { WORKER_DEFAULTS, type BullMQWorkerOptions } from '../../redis/bullmq-options.js';
import { checkKeyPrefix } from '../../redis/keys.js';
import { startWorker, workerOptionsFromEnv, type FlowcastWorker } from '../../redis/worker.js';
import { nonNegativeInt, port, positiveInt, urlWith } from '../options.js';
import { startWorkerMetrics, type WorkerMetricsServer } from '../worker-metrics.js';
import { createLogger, type Logger, type LogLevel } from '../../core/logger.js';
import { addRuntimeOptions, armShutdownTimer, DEFAULT_REDIS_CONNECT_TIMEOUT_S, DEFAULT_SHUTDOWN_TIMEOUT_S, redactUrl, redisUrlFromEnv, waitForRedis } from '../runtime.js';

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
  /** Lowest level logged (stderr: JSON lines, readable ones on a terminal). @default $FLOWCAST_LOG_LEVEL, else "info" */
  logLevel?: LogLevel;
  /** Seconds to try to reach Redis at start before exiting 1. @default $FLOWCAST_REDIS_CONNECT_TIMEOUT, else 5 */
  redisConnectTimeout?: number;
  /** Seconds a graceful stop may take before the process exits anyway (running jobs then go back to the queue). @default $FLOWCAST_SHUTDOWN_TIMEOUT, else 10 */
  shutdownTimeout?: number;
}

/** Where the command writes, and (for tests) what stops it like SIGTERM. */
export interface WorkerIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  signal?: AbortSignal;
  /** The worker's logger. @default a pino logger at `logLevel` on `stderr` */
  logger?: Logger;
}

const DEFAULT_REDIS = 'redis://127.0.0.1:6379';

/** Adds `flowcast worker` to the program. */
export function registerWorkerCommand(program: Command): Command {
  const command = program
    .command('worker')
    .description('run the jobs of a task module on Redis (BullMQ), until SIGINT/SIGTERM')
    .option('--tasks <module>', 'the task module: it exports a function (default or "register") that registers tasks on the broker it gets')
    .option('--demo', 'run the demo\'s tasks and pipelines (the runs of flowcast serve --redis --demo --no-worker)')
    .addOption(
      new Option('--redis <url>', `the Redis server (default: $FLOWCAST_REDIS_URL, else $REDIS_URL, else ${DEFAULT_REDIS})`).env('FLOWCAST_REDIS_URL').argParser(urlWith(['redis:', 'rediss:'])),
    )
    .option('-c, --concurrency <count>', 'jobs run at once by this process', positiveInt, 16)
    .addOption(new Option('--key-prefix <prefix>', 'prefix of every Redis key, shared with the servers and producers (default: "flowcast:")').env('FLOWCAST_KEY_PREFIX').argParser(keyPrefix))
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
    .option('--metrics-host <host>', 'the address the metrics server listens on (default: 127.0.0.1)');
  return addRuntimeOptions(command)
    .addHelpText(
      'after',
      `
The first SIGINT or SIGTERM stops taking jobs and lets running ones finish; a second
one exits at once (running jobs go back to the queue through BullMQ's stalled-job
recovery and run on another worker). A worker that dies (killed, machine lost) has its
running steps taken over by another worker between lock/2 and lock + stalled interval
after it died: 5-15 s with the defaults. Exit codes: 0 after a clean stop, 130 after a
forced one, 1 when the task module cannot be loaded or Redis cannot be reached within
--redis-connect-timeout, or when a stop takes longer than --shutdown-timeout, 2 on bad
arguments (bad FLOWCAST_* values included). While Redis is away the worker waits for it
(reconnecting every 100 ms doubling to 2 s) and logs it once, then a count every 10 s.

Example:
  flowcast worker --tasks ./tasks.js --redis redis://10.0.0.5:6379 --concurrency 8
  flowcast worker --tasks ./tasks.js --lock-duration-ms 4000 --stalled-interval-ms 2000
  flowcast worker --demo
  flowcast worker --tasks ./tasks.js --metrics-port 9464 --metrics-host 0.0.0.0`,
    )
    .action(async (options: WorkerCommandOptions, command: Command) => {
      if ((options.tasks === undefined) === (options.demo !== true)) command.error('error: give --tasks <module> or --demo (one of them)', { exitCode: 2 });
      if (options.redis === undefined) {
        try {
          const fromEnv = redisUrlFromEnv();
          if (fromEnv !== undefined) options.redis = fromEnv;
        } catch (error) {
          command.error(`error: ${error instanceof Error ? error.message : describeError(error)}`, { exitCode: 2 });
        }
      }
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
  const logger = io.logger ?? createLogger({ level: options.logLevel ?? 'info', destination: io.stderr });
  let closed: (() => void) | null = null;
  const onSignal = (): void => {
    closed ??= armShutdownTimer(options.shutdownTimeout ?? DEFAULT_SHUTDOWN_TIMEOUT_S, io.stderr, 'flowcast worker');
    abort.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const timeout = options.redisConnectTimeout ?? DEFAULT_REDIS_CONNECT_TIMEOUT_S;
    const unreachable = await waitForRedis(redis, timeout, io.signal);
    if (unreachable !== null) {
      io.stderr.write(`flowcast worker: cannot reach Redis at ${redactUrl(redis)} (tried for ${timeout} s): ${unreachable}\n`);
      return 1;
    }
    try {
      worker = await startWorker({
        connection: redis,
        tasks: options.tasks ?? new URL('../../demo/worker-tasks.js', import.meta.url),
        concurrency: options.concurrency ?? 16,
        worker: settings,
        ...(prefix !== undefined && { keyPrefix: prefix }),
        logger,
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
    (closed as (() => void) | null)?.();
  }
}
