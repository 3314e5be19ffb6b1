/**
 * Options of {@link BullMQBroker} and their validation: defaults merged once, a clear
 * error naming the option and the value received.
 */
import { Redis, type RedisOptions } from 'ioredis';
import type { Telemetry } from 'bullmq';
import { InvalidArgumentError } from '../core/errors.js';
import type { BrokerJob } from '../pipeline/broker.js';
import type { EventTransport } from '../transport/transport.js';
import type { RunStateStore } from '../pipeline/run-state.js';
import type { ThreadPoolOptions } from '../core/thread-pool.js';
import { checkKnownKeys, checkNonNegativeInt, checkObject, checkPositiveInt, show } from '../core/validate.js';
import { DEFAULT_KEY_PREFIX, checkKeyPrefix } from './keys.js';
import { loggerOf, type Logger } from '../core/logger.js';
import { logError } from '../core/log-throttle.js';

/** Where the broker connects: a `redis://` URL, ioredis options, or an ioredis client (duplicated, never closed by the broker). */
export type RedisConnection = string | RedisOptions | Redis;

/** What a worker process does (see {@link BullMQBrokerOptions.worker}). */
export interface BullMQWorkerOptions {
  /**
   * Task and step jobs this process runs at once.
   * @default 16
   */
  concurrency?: number;
  /**
   * How long a job's lock lasts without renewal, in milliseconds. The worker renews the
   * locks of its running jobs every `lockDurationMs / 2`, so a step may run far longer
   * than this; a worker that dies mid-step stops renewing, and its lock runs out within
   * this long. Keep it above the longest time a task may block the worker's event loop
   * (synchronous CPU work: use thread tasks), or a live worker loses its lock and its
   * step runs again elsewhere. Env `FLOWCAST_LOCK_DURATION_MS` (with `startWorker` and
   * `flowcast worker`).
   * @default 10000
   */
  lockDurationMs?: number;
  /**
   * How often the workers look for stalled jobs (jobs whose lock ran out) and hand them
   * to another worker, in milliseconds (one check per interval across all workers). A
   * killed worker's step is taken over between `lockDurationMs / 2` and
   * `lockDurationMs + stalledIntervalMs` after the kill (5-15 s with the defaults). Env
   * `FLOWCAST_STALLED_INTERVAL_MS` (with `startWorker` and `flowcast worker`).
   * @default 5000
   */
  stalledIntervalMs?: number;
  /**
   * How many times the job of one step (or task call) may be recovered from a worker
   * that stopped, and run again. One more stop, and the step fails with a
   * `WorkerLostError` (its run goes on by its failure policy). `0`: never run again.
   * Env `FLOWCAST_MAX_STALLED_COUNT` (with `startWorker` and `flowcast worker`).
   * @default 3
   */
  maxStalledCount?: number;
  /**
   * How often this worker writes its heartbeat for the engine status, in milliseconds.
   * It is dropped from the status after three missed heartbeats.
   * @default 5000
   */
  heartbeatMs?: number;
  /**
   * Run deadlines (`run_timeout` control jobs) handled at once. They run on their own
   * queue, so they never wait behind task jobs.
   * @default 32
   */
  controlConcurrency?: number;
  /**
   * `false`: the worker takes no job until `broker.startWorking()` (register every task
   * first, so no job meets a worker that does not know its task yet).
   * @default true
   */
  autorun?: boolean;
  /**
   * Steps of one run this worker may run one after the other within a single BullMQ job.
   * When a step ends and its run's next step is ready (no delay, not an item of a
   * map/filter/group step, its task registered here), the worker starts that step at
   * once, in the same atomic transition that records the end of the previous one,
   * instead of sending it through the queue for some worker to pick up. The other ready
   * steps (DAG fan-out) still go to the queue, so parallel branches spread over workers.
   * A worker that dies mid-chain loses the job's lock like any other: BullMQ's
   * stalled-job recovery hands the job to another worker, which retries the step that
   * was running (`StepRetryEvent`), and the run goes on. `0` sends every step through
   * the queue. See docs/distributed.md, "Step chaining".
   * @default 100
   */
  chainSteps?: number;
}

/** How many finished jobs of one kind BullMQ keeps, and for how long (BullMQ's `KeepJobs`). */
export interface KeepJobs {
  /** At most this many (the newest). `0` keeps none. */
  count?: number;
  /** At most this old, in seconds (BullMQ's unit). */
  age?: number;
}

/**
 * Finished step jobs (and run deadline jobs) BullMQ keeps in its `completed` and `failed`
 * sets, for tools that read them such as bull-board. A step job fails when the call it
 * ran failed (with the task's error as its reason); flowcast's own retries are new jobs.
 * Standalone task jobs are kept by {@link BullMQBrokerOptions.maxStoredResults} instead.
 */
export interface KeepJobsOptions {
  /**
   * Completed jobs: kept briefly.
   * @default { count: 1000, age: 3600 }
   */
  completed?: KeepJobs;
  /**
   * Failed jobs, with their error: kept longer, to look into.
   * @default { count: 5000, age: 604800 } (7 days)
   */
  failed?: KeepJobs;
}

/** The defaults of {@link KeepJobsOptions}. */
export const KEEP_JOBS_DEFAULTS: Readonly<{ completed: Required<KeepJobs>; failed: Required<KeepJobs> }> = Object.freeze({
  completed: Object.freeze({ count: 1000, age: 3600 }),
  failed: Object.freeze({ count: 5000, age: 7 * 24 * 3600 }),
});

/** Options of {@link BullMQBroker}. */
export interface BullMQBrokerOptions {
  /** The Redis server. The broker opens its own connections (duplicates of a given client). */
  connection: RedisConnection;
  /**
   * Prefix of every key of this deployment: BullMQ's queues (`<keyPrefix>bullmq:...`),
   * the run state, the event log, worker heartbeats. Processes that work together use
   * the same prefix.
   * @default "flowcast:"
   */
  keyPrefix?: string;
  /**
   * `false`: a producer only (starts runs, serves status, runs no job). An object (or
   * `true` for the defaults): this process also runs jobs.
   * @default true
   */
  worker?: boolean | BullMQWorkerOptions;
  /** The run state store. @default a RedisRunState on this connection and prefix */
  runState?: RunStateStore;
  /** The event log and live fan-out. @default a RedisPubSubTransport on this connection and prefix */
  transport?: EventTransport;
  /**
   * Finished standalone task jobs (`task.kiq()`) kept in Redis for `waitResult()`.
   * @default 10000
   */
  maxStoredResults?: number;
  /**
   * Runs thread tasks (`broker.task(name, { module })`) in a pool of worker threads of
   * each worker process. `true` for the defaults.
   * @default false
   */
  threads?: boolean | ThreadPoolOptions;
  /**
   * Where the broker (and the transport, run state and workers it creates) logs. A
   * pino-compatible logger; connection errors are rate-limited (one line, then a count
   * every 10 s).
   * @default a pino logger at `info` on stderr
   */
  logger?: Logger;
  /** Called when a job fails outside any run (a processor that threw, a Redis error). Defaults to the logger. */
  onError?: (error: Error, job: BrokerJob | null) => void;
  /** Finished step jobs BullMQ keeps (see {@link KeepJobsOptions}). */
  keepJobs?: KeepJobsOptions;
  /**
   * BullMQ's own telemetry (e.g. `new BullMQOtel('flowcast')` from `bullmq-otel`), given
   * to every queue and worker of the broker: BullMQ's spans of adding and processing
   * jobs. flowcast's run and step spans do not need it (see docs/distributed.md, "Tracing").
   */
  telemetry?: Telemetry;
}

/** The worker options with every default filled in. */
export type ResolvedWorkerOptions = Required<BullMQWorkerOptions>;

/** The defaults of {@link BullMQWorkerOptions}. */
export const WORKER_DEFAULTS: Readonly<ResolvedWorkerOptions> = Object.freeze({
  concurrency: 16,
  lockDurationMs: 10_000,
  stalledIntervalMs: 5_000,
  maxStalledCount: 3,
  heartbeatMs: 5_000,
  controlConcurrency: 32,
  autorun: true,
  chainSteps: 100,
});

/** The options with every default filled in. */
export interface ResolvedBrokerOptions {
  connection: RedisConnection;
  keyPrefix: string;
  worker: ResolvedWorkerOptions | null;
  runState: RunStateStore | undefined;
  transport: EventTransport | undefined;
  maxStoredResults: number;
  threads: ThreadPoolOptions | null;
  logger: Logger;
  onError: (error: Error, job: BrokerJob | null) => void;
  keepJobs: { completed: Required<KeepJobs>; failed: Required<KeepJobs> };
  telemetry: Telemetry | undefined;
}

const KNOWN = ['connection', 'keyPrefix', 'worker', 'runState', 'transport', 'maxStoredResults', 'threads', 'logger', 'onError', 'keepJobs', 'telemetry'] as const;
const WORKER_KNOWN = ['concurrency', 'lockDurationMs', 'stalledIntervalMs', 'maxStalledCount', 'heartbeatMs', 'controlConcurrency', 'autorun', 'chainSteps'] as const;

/** Validates `options` and fills in the defaults. */
export function resolveBrokerOptions(options: BullMQBrokerOptions): ResolvedBrokerOptions {
  const o = checkObject(options, 'BullMQBroker options');
  checkKnownKeys(o, KNOWN, 'BullMQBroker options');
  const connection = checkConnection(o.connection);
  const keyPrefix = checkKeyPrefix(o.keyPrefix ?? DEFAULT_KEY_PREFIX, 'BullMQBroker options.keyPrefix');
  const worker = resolveWorker(o.worker);
  for (const name of ['runState', 'transport'] as const) {
    if (o[name] !== undefined && (typeof o[name] !== 'object' || o[name] === null)) {
      throw new InvalidArgumentError(`BullMQBroker options.${name} must be an object, received ${show(o[name])}`);
    }
  }
  if (o.onError !== undefined && typeof o.onError !== 'function') {
    throw new InvalidArgumentError(`BullMQBroker options.onError must be a function, received ${show(o.onError)}`);
  }
  const logger = loggerOf(o.logger, 'BullMQBroker options.logger');
  return {
    connection,
    keyPrefix,
    worker,
    runState: options.runState,
    transport: options.transport,
    maxStoredResults: checkPositiveInt(o.maxStoredResults ?? 10_000, 'BullMQBroker options.maxStoredResults'),
    threads: resolveThreads(o.threads),
    logger,
    onError: options.onError ?? ((error, job) => logError(logger, error, job === null ? 'bullmq broker' : `${job.kind} job ${job.job_id}`)),
    keepJobs: resolveKeepJobs(o.keepJobs),
    telemetry: checkTelemetry(o.telemetry),
  };
}

function resolveKeepJobs(value: unknown): ResolvedBrokerOptions['keepJobs'] {
  const d = KEEP_JOBS_DEFAULTS;
  if (value === undefined) return { completed: { ...d.completed }, failed: { ...d.failed } };
  const o = checkObject(value, 'BullMQBroker options.keepJobs');
  checkKnownKeys(o, ['completed', 'failed'], 'BullMQBroker options.keepJobs');
  const one = (kind: 'completed' | 'failed'): Required<KeepJobs> => {
    const name = `BullMQBroker options.keepJobs.${kind}`;
    if (o[kind] === undefined) return { ...d[kind] };
    const k = checkObject(o[kind], name);
    checkKnownKeys(k, ['count', 'age'], name);
    return {
      count: checkNonNegativeInt(k.count ?? d[kind].count, `${name}.count`),
      age: checkPositiveInt(k.age ?? d[kind].age, `${name}.age`),
    };
  };
  return { completed: one('completed'), failed: one('failed') };
}

function checkTelemetry(value: unknown): Telemetry | undefined {
  if (value === undefined) return undefined;
  const o = checkObject(value, 'BullMQBroker options.telemetry');
  for (const key of ['tracer', 'contextManager'] as const) {
    if (typeof o[key] !== 'object' || o[key] === null) {
      throw new InvalidArgumentError(`BullMQBroker options.telemetry.${key} must be an object (BullMQ's Telemetry interface), received ${show(o[key])}`);
    }
  }
  return value as Telemetry;
}

function resolveWorker(value: unknown): ResolvedWorkerOptions | null {
  if (value === false) return null;
  if (value !== undefined && value !== true) {
    checkKnownKeys(checkObject(value, 'BullMQBroker options.worker'), WORKER_KNOWN, 'BullMQBroker options.worker');
  }
  const w = (value === undefined || value === true ? {} : value) as BullMQWorkerOptions;
  const d = WORKER_DEFAULTS;
  const name = (key: string): string => `BullMQBroker options.worker.${key}`;
  return {
    concurrency: checkPositiveInt(w.concurrency ?? d.concurrency, name('concurrency')),
    lockDurationMs: checkPositiveInt(w.lockDurationMs ?? d.lockDurationMs, name('lockDurationMs')),
    stalledIntervalMs: checkPositiveInt(w.stalledIntervalMs ?? d.stalledIntervalMs, name('stalledIntervalMs')),
    maxStalledCount: checkNonNegativeInt(w.maxStalledCount ?? d.maxStalledCount, name('maxStalledCount')),
    heartbeatMs: checkPositiveInt(w.heartbeatMs ?? d.heartbeatMs, name('heartbeatMs')),
    controlConcurrency: checkPositiveInt(w.controlConcurrency ?? d.controlConcurrency, name('controlConcurrency')),
    autorun: checkBoolean(w.autorun ?? d.autorun, name('autorun')),
    chainSteps: checkNonNegativeInt(w.chainSteps ?? d.chainSteps, name('chainSteps')),
  };
}

function resolveThreads(value: unknown): ThreadPoolOptions | null {
  if (value === undefined || value === false) return null;
  if (value === true) return {};
  return checkObject(value, 'BullMQBroker options.threads');
}

function checkBoolean(value: unknown, name: string): boolean {
  if (typeof value !== 'boolean') throw new InvalidArgumentError(`${name} must be a boolean, received ${show(value)}`);
  return value;
}

function checkConnection(value: unknown): RedisConnection {
  if (typeof value === 'string') {
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      throw new InvalidArgumentError(`BullMQBroker options.connection must be a redis:// or rediss:// URL, received ${show(value)}`);
    }
    if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
      throw new InvalidArgumentError(`BullMQBroker options.connection must be a redis:// or rediss:// URL, received ${show(value)}`);
    }
    return value;
  }
  if (value instanceof Redis) return value;
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) return value;
  throw new InvalidArgumentError(
    `BullMQBroker options.connection must be a redis:// URL, ioredis options or an ioredis client, received ${show(value)}`,
  );
}

/**
 * Opens a new connection for the broker. BullMQ needs `maxRetriesPerRequest: null` on
 * the connections its workers block on.
 */
export function openConnection(connection: RedisConnection, name: string, options: RedisOptions = {}): Redis {
  const extra: RedisOptions = { maxRetriesPerRequest: null, connectionName: name, ...options };
  if (connection instanceof Redis) return connection.duplicate(extra);
  if (typeof connection === 'string') return new Redis(connection, { retryStrategy: reconnectDelay, ...extra });
  return new Redis({ retryStrategy: reconnectDelay, ...connection, ...extra });
}

/**
 * Reconnect delays of the connections the broker opens from a URL or options (a given
 * client keeps its own): 100 ms, doubling up to 2 s, for ever.
 */
export function reconnectDelay(attempt: number): number {
  return Math.min(100 * 2 ** Math.max(0, attempt - 1), 2000);
}
