/**
 * The programmatic worker: a {@link BullMQBroker} in worker mode with the user's tasks
 * registered on it. `flowcast worker` is this plus signal handling.
 */
import { pathToFileURL } from 'node:url';
import { resolve as resolvePath } from 'node:path';
import type { Broker } from '../pipeline/broker.js';
import { FlowcastError, ErrorCodes, InvalidArgumentError, describeError } from '../core/errors.js';
import { checkKnownKeys, checkObject, show } from '../core/validate.js';
import { BullMQBroker } from './bullmq-broker.js';
import type { BullMQWorkerOptions, RedisConnection } from './bullmq-options.js';
import type { Logger } from '../core/logger.js';

/**
 * What a task module exports: a function that registers tasks (and, if it likes,
 * pipelines, hooks, tracking) on the broker it is given. Either the default export or a
 * named `register` export. It may be async; the worker starts taking jobs once it resolved.
 *
 * @example
 * // tasks.js
 * export default function register(broker) {
 *   broker.task('resize', async (image, ctx) => { ... });
 * }
 */
export type RegisterTasks = (broker: Broker) => void | Promise<void>;

/** Options of {@link startWorker}. */
export interface StartWorkerOptions {
  /** The Redis server: a `redis://` URL, ioredis options or an ioredis client. */
  connection: RedisConnection;
  /**
   * The key prefix shared with the producers and servers of this deployment.
   * @default "flowcast:"
   */
  keyPrefix?: string;
  /** Registers the tasks. Give this or {@link tasks}. */
  register?: RegisterTasks;
  /** Path or `file:` URL of a task module (see {@link RegisterTasks}). Give this or {@link register}. */
  tasks?: string | URL;
  /**
   * Jobs run at once by this process.
   * @default 16
   */
  concurrency?: number;
  /**
   * Finer worker options (lock duration, stalled-job check, heartbeat). `concurrency`
   * above wins. `lockDurationMs`, `stalledIntervalMs` and `maxStalledCount` not given
   * here are taken from the environment when set there ({@link workerOptionsFromEnv}),
   * else the broker's defaults apply.
   */
  worker?: BullMQWorkerOptions;
  /**
   * Where the worker logs (connection errors rate-limited). A pino-compatible logger.
   * @default a pino logger at `info` on stderr
   */
  logger?: Logger;
  /** Called on errors outside any run. Defaults to the logger. */
  onError?: (error: Error) => void;
}

/** A running worker. */
export interface FlowcastWorker {
  /** The broker the tasks were registered on. */
  readonly broker: BullMQBroker;
  /** This worker's id in the engine status. */
  readonly id: string;
  /** Names of the tasks it runs. */
  readonly tasks: string[];
  /**
   * Stops taking jobs, lets running ones finish, and closes the connections. Idempotent.
   * `{ force: true }` does not wait: running jobs go back to the queue through BullMQ's
   * stalled-job recovery and run on another worker.
   */
  close(options?: { force?: boolean }): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

const KNOWN = ['connection', 'keyPrefix', 'register', 'tasks', 'concurrency', 'worker', 'logger', 'onError'] as const;

/** The environment variables {@link workerOptionsFromEnv} reads, and the option each sets. */
export const WORKER_ENV = {
  FLOWCAST_LOCK_DURATION_MS: 'lockDurationMs',
  FLOWCAST_STALLED_INTERVAL_MS: 'stalledIntervalMs',
  FLOWCAST_MAX_STALLED_COUNT: 'maxStalledCount',
} as const;

/**
 * The worker options set in the environment: `FLOWCAST_LOCK_DURATION_MS` and
 * `FLOWCAST_STALLED_INTERVAL_MS` (whole numbers >= 1, milliseconds),
 * `FLOWCAST_MAX_STALLED_COUNT` (a whole number >= 0). Unset or empty variables are left
 * out. Throws an `InvalidArgumentError` naming the variable and the value for any other value.
 *
 * @example
 * // FLOWCAST_LOCK_DURATION_MS=4000 FLOWCAST_STALLED_INTERVAL_MS=2000
 * workerOptionsFromEnv(); // { lockDurationMs: 4000, stalledIntervalMs: 2000 }
 */
export function workerOptionsFromEnv(env: NodeJS.ProcessEnv = process.env): BullMQWorkerOptions {
  const out: BullMQWorkerOptions = {};
  for (const [variable, option] of Object.entries(WORKER_ENV) as [keyof typeof WORKER_ENV, (typeof WORKER_ENV)[keyof typeof WORKER_ENV]][]) {
    const raw = env[variable];
    if (raw === undefined || raw === '') continue;
    const min = option === 'maxStalledCount' ? 0 : 1;
    const n = Number(raw);
    if (!/^\d+$/.test(raw) || !Number.isSafeInteger(n) || n < min) {
      throw new InvalidArgumentError(`${variable} must be a whole number >= ${min}, received ${show(raw)}`);
    }
    out[option] = n;
  }
  return out;
}

/**
 * Starts a worker process's broker: registers the tasks, then takes jobs. Resolves once
 * it is taking jobs.
 *
 * @example
 * const worker = await startWorker({ connection: 'redis://localhost:6379', tasks: './tasks.js', concurrency: 8 });
 * process.once('SIGTERM', () => void worker.close());
 */
export async function startWorker(options: StartWorkerOptions): Promise<FlowcastWorker> {
  const o = checkObject(options, 'startWorker options');
  checkKnownKeys(o, KNOWN, 'startWorker options');
  if ((options.register === undefined) === (options.tasks === undefined)) {
    throw new InvalidArgumentError('startWorker: give either options.register (a function) or options.tasks (a module path), exactly one');
  }
  if (options.register !== undefined && typeof options.register !== 'function') {
    throw new InvalidArgumentError(`startWorker options.register must be a function, received ${show(options.register)}`);
  }
  const register = options.register ?? (await loadTaskModule(options.tasks as string | URL));
  if (options.worker !== undefined) checkObject(options.worker, 'startWorker options.worker');
  // Register before the broker takes jobs: a job for a task not yet known would fail.
  const worker: BullMQWorkerOptions = {
    ...workerOptionsFromEnv(),
    ...withoutUndefined(options.worker ?? {}),
    ...(options.concurrency !== undefined && { concurrency: options.concurrency }),
  };
  const onError = options.onError;
  const broker = new BullMQBroker({
    connection: options.connection,
    ...(options.keyPrefix !== undefined && { keyPrefix: options.keyPrefix }),
    worker: { ...worker, autorun: false },
    ...(options.logger !== undefined && { logger: options.logger }),
    ...(onError !== undefined && { onError: (error: Error) => onError(error) }),
  });
  try {
    await register(broker);
    await broker.startWorking();
  } catch (error) {
    await broker.close({ force: true });
    throw new FlowcastError(ErrorCodes.INVALID_ARGUMENT, `startWorker: registering the tasks failed: ${describeError(error)}`, { cause: error });
  }
  return {
    broker,
    id: broker.workerId as string,
    tasks: broker.taskNames(),
    close: (closeOptions) => broker.close(closeOptions),
    [Symbol.asyncDispose]: () => broker.close(),
  };
}

/** `o` without the keys whose value is `undefined` (so they do not hide a value from the environment). */
function withoutUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Imports a task module and returns its register function (default export, or named `register`). */
export async function loadTaskModule(specifier: string | URL): Promise<RegisterTasks> {
  let url: URL;
  if (specifier instanceof URL) url = specifier;
  else if (typeof specifier === 'string' && specifier.length > 0) url = specifier.startsWith('file:') ? new URL(specifier) : pathToFileURL(resolvePath(specifier));
  else throw new InvalidArgumentError(`The task module must be a path or a file: URL, received ${show(specifier)}`);
  let mod: Record<string, unknown>;
  try {
    mod = (await import(url.href)) as Record<string, unknown>;
  } catch (error) {
    throw new FlowcastError(ErrorCodes.INVALID_ARGUMENT, `Cannot load the task module ${url.pathname}: ${describeError(error)}`, { cause: error });
  }
  const fn = typeof mod.default === 'function' ? mod.default : mod.register;
  if (typeof fn !== 'function') {
    const names = Object.keys(mod).join(', ') || 'none';
    throw new InvalidArgumentError(
      `The task module ${url.pathname} must export a function that registers tasks: "export default function (broker) { broker.task(...) }" or "export function register(broker)" (its exports: ${names})`,
    );
  }
  return fn as RegisterTasks;
}
