import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { FlowcastError, ErrorCodes, describeError, toError } from '../core/errors.js';
import type { JsonValue } from '../core/json.js';
import type { Broker, BrokerJob, EnqueueOptions, JobProcessor } from './broker.js';
import type { BrokerEngineStatus } from '../core/engine-status.js';
import { isoTime } from '../core/clock.js';
import { executeCall } from '../core/execute.js';
import { registerTask } from './register-task.js';
import type { Task, TaskDefinition, TaskFn, TaskOptions, ThreadTaskSource } from '../core/task.js';
import { InMemoryRunSlots } from '../core/run-slots.js';
import { ThreadPool, type ThreadPoolOptions } from '../core/thread-pool.js';
import { checkKnownKeys, checkNonNegativeNumber, checkObject, checkPositiveInt } from '../core/validate.js';
import { InMemoryTransport, type InMemoryTransportOptions } from '../transport/memory-transport.js';
import { InMemoryRunState } from './run-state.js';
import { retryDelay } from './plan.js';
import { NON_RETRYABLE_CODES } from './transitions.js';

/** Options of {@link InMemoryBroker}. */
export interface InMemoryBrokerOptions {
  /**
   * Jobs running at once in this process.
   * @default 16
   */
  concurrency?: number;
  /** Options of the embedded event log ({@link InMemoryTransport}). */
  transport?: InMemoryTransportOptions;
  /**
   * Runs thread tasks (`broker.task(name, { module })`) in a pool of worker threads.
   * `true` for the defaults.
   */
  threads?: boolean | ThreadPoolOptions;
  /**
   * Results of standalone task calls kept for `waitResult()`.
   * @default 10000
   */
  maxStoredResults?: number;
  /** Called when a job fails outside any run (e.g. the processor threw). Defaults to stderr. */
  onError?: (error: Error, job: BrokerJob) => void;
}

type Outcome = { ok: true; value: JsonValue } | { ok: false; error: Error };

interface Waiter {
  resolve: (value: JsonValue) => void;
  reject: (error: Error) => void;
}

const KNOWN = ['concurrency', 'transport', 'threads', 'maxStoredResults', 'onError'] as const;

/**
 * Runs jobs in this process with bounded concurrency. The embedded default: no server
 * to install. Its run state and event log are in memory too.
 *
 * @example
 * const broker = new InMemoryBroker({ concurrency: 8 });
 * const double = broker.task('double', (n: number) => n * 2);
 * const handle = await double.kiq(21);
 * await handle.waitResult(); // 42
 */
export class InMemoryBroker implements Broker {
  readonly kind = 'memory';
  readonly transport: InMemoryTransport;
  /** Slots of the concurrency policies and idempotent starts of this process's pipelines. */
  readonly slots = new InMemoryRunSlots();
  readonly runState: InMemoryRunState;
  readonly #concurrency: number;
  readonly #tasks = new Map<string, TaskDefinition>();
  readonly #queue: BrokerJob[] = [];
  #head = 0;
  #running = 0;
  readonly #delayed = new Map<string, NodeJS.Timeout>();
  readonly #results = new Map<string, Outcome>();
  readonly #maxResults: number;
  readonly #waiters = new Map<string, Waiter[]>();
  readonly #idle: (() => void)[] = [];
  readonly #threads: ThreadPool | null;
  readonly #onError: (error: Error, job: BrokerJob) => void;
  #processor: JobProcessor | null = null;
  #state: 'open' | 'closing' | 'closed' = 'open';
  readonly #startedAt = isoTime();
  readonly #workerId = `${hostname()}:${process.pid}:memory-${randomUUID().slice(0, 8)}`;
  #processed = 0;

  constructor(options: InMemoryBrokerOptions = {}) {
    checkKnownKeys(checkObject(options, 'InMemoryBroker options'), KNOWN, 'InMemoryBroker options');
    this.#concurrency = checkPositiveInt(options.concurrency ?? 16, 'concurrency');
    this.#maxResults = checkPositiveInt(options.maxStoredResults ?? 10_000, 'maxStoredResults');
    this.transport = new InMemoryTransport(options.transport ?? {});
    this.runState = new InMemoryRunState({ log: this.transport });
    const threads = options.threads;
    this.#threads = threads === undefined || threads === false ? null : new ThreadPool(threads === true ? {} : threads);
    this.#onError =
      options.onError ?? ((error, job) => console.error(`flowcast: ${job.kind} job ${job.job_id} failed outside a run: ${describeError(error)}`));
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

  enqueue(job: BrokerJob, options?: EnqueueOptions): Promise<void> {
    try {
      this.enqueueSync(job, options);
      return Promise.resolve();
    } catch (error) {
      return Promise.reject(toError(error));
    }
  }

  enqueueSync(job: BrokerJob, options?: EnqueueOptions): void {
    if (this.#state !== 'open') throw new FlowcastError(ErrorCodes.CLOSED, 'InMemoryBroker is closed');
    const delay = options?.delayMs === undefined ? 0 : checkNonNegativeNumber(options.delayMs, 'delayMs');
    if (delay > 0) {
      const timer = setTimeout(() => {
        this.#delayed.delete(job.job_id);
        this.#push(job);
      }, delay);
      this.#delayed.set(job.job_id, timer);
    } else {
      this.#push(job);
    }
  }

  removeDelayed(jobId: string): Promise<void> {
    const timer = this.#delayed.get(jobId);
    if (timer !== undefined) {
      clearTimeout(timer);
      this.#delayed.delete(jobId);
      this.#notifyIdle();
    }
    return Promise.resolve();
  }

  setRunProcessor(processor: JobProcessor): void {
    this.#processor = processor;
  }

  waitForTask(jobId: string, timeoutMs?: number): Promise<JsonValue> {
    if (timeoutMs !== undefined) checkNonNegativeNumber(timeoutMs, 'timeoutMs');
    const done = this.#results.get(jobId);
    if (done !== undefined) return done.ok ? Promise.resolve(done.value) : Promise.reject(done.error);
    return new Promise<JsonValue>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const waiter: Waiter = {
        resolve: (v) => {
          if (timer) clearTimeout(timer);
          resolve(v);
        },
        reject: (e) => {
          if (timer) clearTimeout(timer);
          reject(e);
        },
      };
      const list = this.#waiters.get(jobId) ?? [];
      list.push(waiter);
      this.#waiters.set(jobId, list);
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => {
          const current = this.#waiters.get(jobId);
          if (current) {
            const rest = current.filter((w) => w !== waiter);
            if (rest.length > 0) this.#waiters.set(jobId, rest);
            else this.#waiters.delete(jobId);
          }
          reject(new FlowcastError(ErrorCodes.WAIT_TIMEOUT, `No result for task job ${jobId} after ${timeoutMs}ms`));
        }, timeoutMs);
      }
    });
  }

  /** Jobs waiting for a free slot. */
  get queued(): number {
    return this.#queue.length - this.#head;
  }

  /** Jobs running now. */
  get running(): number {
    return this.#running;
  }

  /** Delayed jobs (retries, run deadlines) not delivered yet. */
  get delayed(): number {
    return this.#delayed.size;
  }

  /** The engine status: this process is the one worker, with one queue. */
  engineStatus(): Promise<BrokerEngineStatus> {
    const now = isoTime();
    return Promise.resolve({
      broker: this.kind,
      workers: [
        {
          id: this.#workerId,
          host: hostname(),
          pid: process.pid,
          state: this.#running > 0 ? 'busy' : 'idle',
          active_jobs: this.#running,
          concurrency: this.#concurrency,
          started_at: this.#startedAt,
          last_heartbeat: now,
          processed: this.#processed,
        },
      ],
      queues: [{ name: 'memory', waiting: this.queued, active: this.#running, delayed: this.#delayed.size, failed: 0 }],
    });
  }

  /** Resolves when no job is queued or running (delayed jobs are not waited for). */
  onIdle(): Promise<void> {
    if (this.#running === 0 && this.queued === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  #push(job: BrokerJob): void {
    if (this.#state === 'closed') return;
    if (job.kind === 'run_timeout') {
      // A run's deadline is bookkeeping, not task work: queued behind the run's own
      // steps, it could never fire while they hold every slot.
      this.#running++;
      this.#run(job);
      return;
    }
    this.#queue.push(job);
    this.#pump();
  }

  #pump(): void {
    while (this.#running < this.#concurrency && this.#head < this.#queue.length) {
      const job = this.#queue[this.#head] as BrokerJob;
      this.#queue[this.#head] = undefined as unknown as BrokerJob;
      this.#head++;
      if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
        this.#queue.splice(0, this.#head);
        this.#head = 0;
      }
      this.#running++;
      this.#run(job);
    }
  }

  #run(job: BrokerJob): void {
    let pending: Promise<unknown> | undefined;
    try {
      if (job.kind === 'task') {
        pending = this.#runTaskJob(job);
      } else if (this.#processor === null) {
        this.#onError(new FlowcastError(ErrorCodes.INVALID_ARGUMENT, `No run engine is attached to this broker for ${job.kind} job`), job);
      } else {
        pending = this.#processor(job);
      }
    } catch (error) {
      this.#onError(toError(error), job);
    }
    if (pending === undefined) {
      this.#finish();
      return;
    }
    pending.then(
      () => this.#finish(),
      (error: unknown) => {
        this.#onError(toError(error), job);
        this.#finish();
      },
    );
  }

  #finish(): void {
    this.#running--;
    this.#processed++;
    this.#pump();
    this.#notifyIdle();
  }

  async #runTaskJob(job: Extract<BrokerJob, { kind: 'task' }>): Promise<void> {
    const def = this.#tasks.get(job.task);
    let outcome: Outcome;
    if (def === undefined) {
      outcome = { ok: false, error: new FlowcastError(ErrorCodes.UNKNOWN_TASK, `Unknown task "${job.task}" (registered: ${this.taskNames().join(', ') || 'none'})`) };
    } else {
      const attempt = job.attempt ?? 1;
      try {
        const value = await executeCall(
          def,
          job.input,
          { runId: null, pipelineId: null, stepName: null, taskId: job.job_id, attempt, item: null, timeoutMs: def.options.timeoutMs },
          { log: () => undefined, progress: () => undefined },
        );
        outcome = { ok: true, value };
      } catch (error) {
        outcome = { ok: false, error: toError(error) };
        // The task's retry options apply to every call of it, not only to pipeline steps.
        const code = error instanceof FlowcastError ? error.code : undefined;
        if (attempt <= (def.options.retries ?? 0) && (code === undefined || !NON_RETRYABLE_CODES.has(code)) && this.#state === 'open') {
          const delayMs = retryDelay({ retry_delay_ms: def.options.retryDelayMs ?? 0, backoff: def.options.backoff ?? 'fixed' }, attempt + 1);
          this.enqueueSync({ ...job, attempt: attempt + 1 }, { delayMs });
          return;
        }
      }
    }
    this.#results.set(job.job_id, outcome);
    if (this.#results.size > this.#maxResults) {
      const oldest = this.#results.keys().next().value;
      if (oldest !== undefined) this.#results.delete(oldest);
    }
    const waiters = this.#waiters.get(job.job_id);
    if (waiters) {
      this.#waiters.delete(job.job_id);
      for (const w of waiters) {
        if (outcome.ok) w.resolve(outcome.value);
        else w.reject(outcome.error);
      }
    }
  }

  #notifyIdle(): void {
    if (this.#running !== 0 || this.queued !== 0) return;
    const list = this.#idle.splice(0);
    for (const resolve of list) resolve();
  }

  /** Stops taking jobs, drops delayed ones, waits for running jobs, stops the thread pool. Idempotent. */
  async close(): Promise<void> {
    if (this.#state !== 'open') {
      while (this.#state !== 'closed') await new Promise((r) => setTimeout(r, 5));
      return;
    }
    this.#state = 'closing';
    for (const timer of this.#delayed.values()) clearTimeout(timer);
    this.#delayed.clear();
    await this.onIdle();
    await this.#threads?.close();
    for (const [id, list] of this.#waiters) {
      for (const w of list) w.reject(new FlowcastError(ErrorCodes.CLOSED, `Broker closed before task job ${id} finished`));
    }
    this.#waiters.clear();
    await this.transport.close();
    await this.runState.close();
    this.#state = 'closed';
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
