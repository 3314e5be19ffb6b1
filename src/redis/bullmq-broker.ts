import { Queue } from 'bullmq';
import { RedisRunSlots } from './run-slots.js';
import type { Redis } from 'ioredis';
import { ErrorCodes, FlowcastError, describeError, toError } from '../core/errors.js';
import type { JsonValue } from '../core/json.js';
import type { Broker, BrokerHealth, BrokerJob, EnqueueOptions, JobProcessor, StepJob } from '../pipeline/broker.js';
import type { BrokerEngineStatus } from '../core/engine-status.js';
import { registerTask } from '../pipeline/register-task.js';
import type { Task, TaskDefinition, TaskFn, TaskOptions, ThreadTaskSource } from '../core/task.js';
import { checkId, checkNonNegativeNumber } from '../core/validate.js';
import { ThreadPool } from '../core/thread-pool.js';
import { connectionFailure, logRecovered, logStopWithoutRedis } from '../core/log-throttle.js';
import type { Logger } from '../core/logger.js';
import { existingEngine, getEngine } from '../pipeline/engine.js';
import type { RunStateStore } from '../pipeline/run-state.js';
import type { EventTransport } from '../transport/transport.js';
import { RunControl, brokerRunStores, type BrokerRunStores } from './bullmq-control.js';
import { closeConnection, dropConnection } from './connection-end.js';
import { bullmqJobId, checkJob, jobData, jobName, jobOptions } from './bullmq-jobs.js';
import { BullMQJobRunner } from './bullmq-job-runner.js';
import { openConnection, resolveBrokerOptions, type BullMQBrokerOptions, type ResolvedBrokerOptions } from './bullmq-options.js';
import { TaskResults } from './bullmq-results.js';
import { WorkerHeartbeat, readQueue, readWorkers, type WorkerCounters } from './bullmq-status.js';
import { BULLMQ_QUEUES, bullmqPrefix } from './keys.js';
import { BullMQScheduleDriver } from './bullmq-schedules.js';
import type { ClusterFire, ScheduleDriver } from '../scheduler/cluster.js';
// Registers the Redis storage of `withAutoStorage(broker)` for this broker's users.
import './auto-storage.js';

/**
 * A broker on Redis: tasks and pipeline steps are BullMQ jobs, run by worker processes
 * anywhere. Run state and each run's event log live in Redis too (`RedisRunState`,
 * `RedisPubSubTransport`), so a run started by one process progresses on any worker and
 * its caller may wait for it from anywhere, or exit.
 *
 * A process is a producer only (`worker: false`: starts runs, reports status) or also a
 * worker (the default): it runs the jobs of every task registered on it. Every worker
 * must register every task its pipelines use (see `startWorker()` and `flowcast worker`).
 *
 * - A worker that dies mid-step loses its job lock; BullMQ's stalled-job check gives the
 *   job to another worker, which records a `StepRetryEvent` and runs the step again.
 * - A run cancelled (or failed, or timed out) in one process aborts its calls running in
 *   other processes: their `ctx.signal` fires.
 * - `engineStatus()` lists live workers (heartbeats) and queue depths.
 *
 * @example
 * const broker = new BullMQBroker({ connection: 'redis://localhost:6379', worker: { concurrency: 8 } });
 * const double = broker.task('double', (n: number) => n * 2);
 * await (await double.kiq(21)).waitResult(); // 42
 * await broker.close();
 */
export class BullMQBroker implements Broker {
  readonly kind = 'bullmq';
  /**
   * The broker's own ioredis connection (non-blocking commands only). Other parts may use
   * it for their commands (e.g. tracking storage picked by `withAutoStorage(broker)`);
   * they must not close it or switch it to subscriber mode: `close()` closes it.
   */
  readonly redis: Redis;
  /** The key prefix shared by every process of this deployment. */
  readonly keyPrefix: string;
  /** Slots of concurrency policies and idempotent starts, shared by every process on this Redis. */
  readonly slots: RedisRunSlots;
  /** The run state: `options.runState` (announcing run ends to every worker), else a `RedisRunState` the broker opened and closes. */
  readonly runState: RunStateStore;
  /** The runs' event log and fan-out: `options.transport`, else a `RedisPubSubTransport` the broker opened and closes. */
  readonly transport: EventTransport;
  /** Where the broker logs (`options.logger`, else a pino logger at `info`); the run engine of this broker logs here too. */
  readonly logger: Logger;
  /** This worker's id in the engine status (`null` for a producer). */
  readonly workerId: string | null;

  readonly #options: ResolvedBrokerOptions;
  /** BullMQ's queues and workers' connection. */
  readonly #bullRedis: Redis;
  readonly #tasks = new Map<string, TaskDefinition>();
  readonly #taskQueue: Queue;
  readonly #controlQueue: Queue;
  readonly #results: TaskResults;
  readonly #control: RunControl;
  readonly #owned: BrokerRunStores['owned'];
  readonly #counters: WorkerCounters = { active: 0, processed: 0, failed: 0 };
  readonly #heartbeat: WorkerHeartbeat | null;
  readonly #ready: Promise<void>;
  readonly #threads: ThreadPool | null;
  readonly #runner: BullMQJobRunner;
  #state: 'open' | 'closing' | 'closed' = 'open';
  /** `false` once the workers of a closing broker are drained: then no job is accepted. */
  #accepting = true;
  #closing: Promise<void> | null = null;
  #lastFailure: string | null = null;

  constructor(options: BullMQBrokerOptions) {
    this.#options = resolveBrokerOptions(options);
    const o = this.#options;
    this.keyPrefix = o.keyPrefix;
    this.logger = o.logger;
    this.#threads = o.threads === null ? null : new ThreadPool(o.threads);
    // flowcast's own commands (run state, event log, tracking...) go out auto-pipelined:
    // those issued in one event-loop turn leave in one socket write. BullMQ keeps a
    // connection of its own without it (its docs do not cover auto-pipelining).
    this.redis = openConnection(o.connection, 'flowcast-broker', { enableAutoPipelining: true });
    this.#watch(this.redis, 'broker connection');
    this.slots = new RedisRunSlots(this.redis, o.keyPrefix);
    this.#bullRedis = openConnection(o.connection, 'flowcast-bullmq');
    this.#watch(this.#bullRedis, 'bullmq connection');
    const prefix = bullmqPrefix(o.keyPrefix);
    const telemetry = o.telemetry === undefined ? {} : { telemetry: o.telemetry };
    this.#taskQueue = new Queue(BULLMQ_QUEUES.tasks, { connection: this.#bullRedis, prefix, ...telemetry });
    this.#controlQueue = new Queue(BULLMQ_QUEUES.control, { connection: this.#bullRedis, prefix, ...telemetry });
    this.#taskQueue.on('error', (error) => o.onError(error, null));
    this.#controlQueue.on('error', (error) => o.onError(error, null));
    this.#results = new TaskResults(this.#taskQueue, this.#bullRedis, prefix);

    this.#control = new RunControl(this.redis, o.keyPrefix, (error) => o.onError(error, null));
    const stores = brokerRunStores(this.redis, o, this.#control);
    this.transport = stores.transport;
    this.runState = stores.runState;
    this.#owned = stores.owned;

    const w = o.worker;
    this.#heartbeat =
      w === null
        ? null
        : new WorkerHeartbeat(this.redis, o.keyPrefix, {
            intervalMs: w.heartbeatMs,
            concurrency: w.concurrency,
            counters: this.#counters,
            onError: (error) => o.onError(error, null),
          });
    this.workerId = this.#heartbeat?.id ?? null;
    this.#runner = new BullMQJobRunner({
      broker: this,
      tasks: this.#tasks,
      options: o,
      bullRedis: this.#bullRedis,
      control: this.#control,
      runState: this.#owned.runState,
      counters: this.#counters,
      heartbeat: this.#heartbeat,
      watch: (redis, what) => this.#watch(redis, what),
    });
    if (w === null) {
      this.#ready = Promise.resolve();
      return;
    }
    // The run engine of a worker process exists from the start: it is what runs step jobs.
    getEngine(this);
    this.#ready = this.#runner.start(prefix);
    this.#ready.catch((error: unknown) => o.onError(toError(error), null));
  }

  /** Reports a connection's errors, and remembers the last one for {@link health}. */
  #watch(redis: Redis, what: string): void {
    redis.on('error', (error: Error) => {
      this.#lastFailure = connectionFailure(error) ?? describeError(error);
      this.#options.onError(error, null);
    });
    redis.on('ready', () => logRecovered(this.#options.logger, what));
  }

  /**
   * Whether Redis answers right now: both of the broker's command connections are up.
   * While not, `reason` says why (e.g. `Redis unreachable (ECONNREFUSED 127.0.0.1:6379)`).
   */
  health(): BrokerHealth {
    for (const redis of [this.redis, this.#bullRedis]) {
      if (redis.status === 'ready') continue;
      const why = this.#lastFailure ?? `connection ${redis.status}`;
      return { ok: false, reason: `Redis unreachable (${why})` };
    }
    return { ok: true };
  }

  /** Resolves once the broker's workers, control subscription and first heartbeat are up (at once for a producer). */
  waitUntilReady(): Promise<void> {
    return this.#ready;
  }

  /**
   * Starts taking jobs when the broker was created with `worker: { autorun: false }`
   * (no-op otherwise, and for a producer). Resolves once the workers are up.
   */
  async startWorking(): Promise<void> {
    await this.#ready;
    if (this.#state !== 'open') throw new FlowcastError(ErrorCodes.CLOSED, 'BullMQBroker is closed');
    this.#runner.run();
  }

  task<I extends JsonValue = JsonValue, O extends JsonValue = JsonValue>(
    name: string,
    fn: TaskFn<I, O> | ThreadTaskSource,
    options: TaskOptions = {},
  ): Task<I, O> {
    return registerTask(this, this.#tasks, this.#threads, name, fn, options);
  }

  getTask(name: string): TaskDefinition | undefined {
    return this.#tasks.get(name);
  }

  taskNames(): string[] {
    return [...this.#tasks.keys()];
  }

  async enqueue(job: BrokerJob, options?: EnqueueOptions): Promise<void> {
    // While closing, the jobs still running here may send their runs' next steps (for
    // other workers to run): only a closed broker refuses.
    if (!this.#accepting) throw new FlowcastError(ErrorCodes.CLOSED, 'BullMQBroker is closed');
    checkJob(job);
    const delay = options?.delayMs === undefined ? 0 : checkNonNegativeNumber(options.delayMs, 'delayMs');
    const queue = job.kind === 'run_timeout' ? this.#controlQueue : this.#taskQueue;
    const retries = job.kind === 'task' ? (this.#tasks.get(job.task)?.options.retries ?? 0) : 0;
    // A step job carries what this process last wrote of its run: the worker's first transition needs no read.
    const data = jobData(job, this.#owned.runState);
    await queue.add(jobName(job), data, jobOptions(job, delay, retries, this.#options.maxStoredResults, this.#options.keepJobs));
  }

  async removeDelayed(jobId: string): Promise<void> {
    const id = bullmqJobId(jobId);
    const queues = [this.#controlQueue, this.#taskQueue];
    // One round trip in the common case: the engine asks at the end of every run, and most
    // runs have no deadline job left.
    const multi = this.redis.multi();
    for (const queue of queues) multi.zscore(queue.keys.delayed ?? queue.toKey('delayed'), id);
    const scores = (await multi.exec()) ?? [];
    for (const [i, queue] of queues.entries()) {
      const score = scores[i]?.[1];
      if (score === null || score === undefined) continue;
      try {
        await queue.remove(id);
      } catch {
        // Promoted and taken by a worker in the meantime: it is delivered after all.
      }
    }
  }

  setRunProcessor(processor: JobProcessor): void {
    this.#runner.setProcessor(processor);
  }

  waitForTask(jobId: string, timeoutMs?: number): Promise<JsonValue> {
    try {
      checkId(jobId, 'waitForTask(jobId)');
      if (timeoutMs !== undefined) checkNonNegativeNumber(timeoutMs, 'timeoutMs');
    } catch (error) {
      return Promise.reject(toError(error));
    }
    return this.#results.wait(jobId, bullmqJobId(jobId), timeoutMs);
  }

  /** Live workers (heartbeats in Redis, from every process of this key prefix) and the depth of each queue. */
  async engineStatus(): Promise<BrokerEngineStatus> {
    if (this.#state === 'closed') throw new FlowcastError(ErrorCodes.CLOSED, 'BullMQBroker is closed');
    const [workers, tasks, control] = await Promise.all([
      readWorkers(this.redis, this.keyPrefix),
      readQueue(this.#taskQueue, 'tasks'),
      readQueue(this.#controlQueue, 'control'),
    ]);
    return { broker: this.kind, workers, queues: [tasks, control] };
  }

  /**
   * Opens the cluster-wide schedule store that `PipelineScheduler` uses with this broker:
   * BullMQ job schedulers, so each tick fires once across every scheduler instance of
   * this key prefix. Close the scheduler before the broker (it shares `redis`).
   */
  createScheduleDriver(fire: ClusterFire, onError: (error: Error) => void): ScheduleDriver {
    if (this.#state !== 'open') throw new FlowcastError(ErrorCodes.CLOSED, 'BullMQBroker is closed');
    return new BullMQScheduleDriver(this.#bullRedis, bullmqPrefix(this.keyPrefix), fire, onError);
  }

  // ── worker side (bullmq-job-runner.ts) ────────────────────────────────────────────

  /** This process's job counters (all zero on a producer): running now, finished, and thrown. */
  get workerCounters(): Readonly<WorkerCounters> {
    return { ...this.#counters };
  }

  /**
   * Step chaining (see `BullMQWorkerOptions.chainSteps`): a next step runs in the job
   * that ran the previous one while this worker is open, knows its task, and the job
   * has not run `chainSteps` calls yet.
   */
  chainable(job: StepJob, index: number): boolean {
    return this.#runner.chainable(job, index, this.#accepting && this.#state === 'open');
  }

  /**
   * The broker's BullMQ queues (step and task jobs, run deadlines), for tools that read
   * queues such as bull-board (`new BullMQAdapter(queue)`). The broker closes them: do not.
   */
  get queues(): readonly Queue[] {
    return [this.#taskQueue, this.#controlQueue];
  }

  // ── lifecycle ─────────────────────────────────────────────────────────────────────

  /**
   * Stops taking jobs and waits for the running ones to finish, then closes what the
   * broker opened (its connections, and the run state and transport it created).
   * Idempotent. `{ force: true }` does not wait: running jobs are left to BullMQ's
   * stalled-job recovery, which hands them to another worker.
   */
  close(options: { force?: boolean } = {}): Promise<void> {
    this.#closing ??= this.#close(options.force === true);
    return this.#closing;
  }

  async #close(force: boolean): Promise<void> {
    this.#state = 'closing';
    const report = (error: unknown): void => this.#options.onError(toError(error), null);
    // Let a start in progress finish first; not when Redis is down (it never would): the
    // workers exist from the constructor on, and close without it.
    const down = this.redis.status !== 'ready' || this.#bullRedis.status !== 'ready';
    if (!down) await this.#ready.catch(() => undefined);
    // Redis is away: nothing queued for it will be sent. Dropping the connections fails
    // those commands now, so closing does not wait for a Redis that may never come back.
    if (down) {
      logStopWithoutRedis(this.#options.logger, 'bullmq broker', this.#lastFailure ?? `connection ${this.redis.status === 'ready' ? this.#bullRedis.status : this.redis.status}`);
      dropConnection(this.redis);
      dropConnection(this.#bullRedis);
    }
    await this.#runner.close(force || down, report);
    this.#accepting = false;
    // The runs this process started and still follows: their end will not reach it any more.
    existingEngine(this)?.endRunSpans();
    await this.#heartbeat?.stop();
    await this.#control.close();
    await this.#results.close();
    await Promise.all([this.#taskQueue.close().catch(report), this.#controlQueue.close().catch(report)]);
    await this.#threads?.close().catch(report);
    await this.#owned.runState?.close().catch(report);
    await this.#owned.transport?.close().catch(report);
    await closeConnection(this.redis);
    await closeConnection(this.#bullRedis);
    this.#state = 'closed';
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
