import type { JsonValue } from '../core/json.js';
import type { Task, TaskDefinition, TaskFn, TaskOptions, ThreadTaskSource } from '../core/task.js';
import type { EventTransport } from '../transport/transport.js';
import type { RunStateStore } from './run-state.js';
import type { BrokerEngineStatus } from '../core/engine-status.js';
import type { RunSlots } from '../core/run-slots.js';

/** A standalone call of a task (`task.kiq()`). */
export interface TaskJob {
  kind: 'task';
  job_id: string;
  task: string;
  input: JsonValue;
  /** 1 for the first call, 2 for its first retry... (the task's `retries` apply). @default 1 */
  attempt?: number;
}

/** One call of a task for a step of a run. */
export interface StepJob {
  kind: 'step';
  job_id: string;
  run_id: string;
  pipeline_id: string;
  step: string;
  step_index: number;
  /** For map/filter/group steps: the item (or grouped task) index. */
  item?: number;
  task: string;
  attempt: number;
  input: JsonValue;
  /** Effective time limit of this call. */
  timeout_ms?: number;
  /**
   * The run's trace context (OpenTelemetry propagator fields such as `traceparent`), copied
   * from the run record: the parent of this call's span. Absent when the run is not traced.
   */
  trace?: Record<string, string>;
}

/** A run-level control message, such as the run's deadline. Brokers deliver it without waiting for a free task slot. */
export interface ControlJob {
  kind: 'run_timeout';
  job_id: string;
  run_id: string;
}

/** Every message that travels through a broker. All JSON. */
export type BrokerJob = TaskJob | StepJob | ControlJob;

/**
 * Runs one job where the broker delivers it; returns the task result for task jobs.
 * `carrier`: the id of the broker job a step job runs inside when that is not its own
 * (a broker retrying a chained call, see {@link Broker.chainable}).
 */
export type JobProcessor = (job: BrokerJob, carrier?: string) => Promise<unknown> | undefined;

/**
 * What the run engine's processor resolves with when the last call a step job ran failed (the
 * engine chains no call after a failed one): a broker that keeps failed jobs marks the
 * job failed with this error. The run goes on by flowcast's own retry and failure policy.
 */
export interface StepJobFailure {
  /** The step whose call failed (the job's own, or a call chained into it). */
  step: string;
  attempt: number;
  /** `"Name: message"` */
  error: string;
}

/** How a job is enqueued. */
export interface EnqueueOptions {
  /** Deliver the job after this many milliseconds. */
  delayMs?: number;
}

/** What {@link Broker.health} says: ready, or not and why (one line, no secret). */
export type BrokerHealth = { ok: true } | { ok: false; reason: string };

/**
 * The seam between the run engine and where tasks run. `InMemoryBroker` runs jobs in
 * this process; a Redis/BullMQ broker runs them on workers anywhere. The engine only
 * uses what is declared here.
 */
export interface Broker {
  /** A short name of the implementation, e.g. `"memory"` or `"bullmq"`. */
  readonly kind: string;
  /** Where run state lives (atomic updates). Shared by every process of one deployment. */
  readonly runState: RunStateStore;
  /** Where each run's event log lives, and how events fan out live. */
  readonly transport: EventTransport;
  /**
   * Optional: slots of concurrency policies and idempotent starts, shared by every
   * process of one deployment. A pipeline with `concurrency` (or a start with an
   * `idempotencyKey`) needs a broker that has them.
   */
  readonly slots?: RunSlots;
  /**
   * Optional: whether the broker can reach what it depends on (Redis) right now. A
   * server answers `/ready` and its REST API from it (503 with the reason while not).
   * An in-process broker has none: always ready.
   */
  health?(): BrokerHealth;

  /** Registers a task and returns its typed handle. */
  task<I extends JsonValue = JsonValue, O extends JsonValue = JsonValue>(
    name: string,
    fn: TaskFn<I, O> | ThreadTaskSource,
    options?: TaskOptions,
  ): Task<I, O>;
  /** The registered task called `name`, if any. */
  getTask(name: string): TaskDefinition | undefined;
  /** Names of all registered tasks. */
  taskNames(): string[];

  /** Sends a job. Resolves once the broker has accepted it. */
  enqueue(job: BrokerJob, options?: EnqueueOptions): Promise<void>;
  /**
   * Optional synchronous form of {@link enqueue} for in-process brokers: the engine uses
   * it when present to keep promises off the hot path.
   */
  enqueueSync?(job: BrokerJob, options?: EnqueueOptions): void;
  /**
   * Optional step chaining, for brokers whose jobs are costly to send (BullMQ): `true`
   * when the engine may run `job`, a next step of a run whose previous call just ended
   * in a job this broker delivered here, right away in this process and inside that same
   * broker job, instead of sending it. `index`: how many calls that broker job ran
   * before this one. The engine records the carrying job's id on the step
   * (`StepState.carrier`); a broker that chains must retry such a call when it delivers
   * the carrying job again (its worker died) — see `stepRedelivered` in
   * src/redis/bullmq-jobs.ts.
   */
  chainable?(job: StepJob, index: number): boolean;
  /** Drops a delayed job that has not been delivered yet (no-op when unknown). */
  removeDelayed(jobId: string): Promise<void>;
  /** Installs the processor for `step` and `run_timeout` jobs (the run engine does this). It may return `undefined` when it finished synchronously. */
  setRunProcessor(processor: JobProcessor): void;
  /** Waits for the result of a standalone task job. */
  waitForTask(jobId: string, timeoutMs?: number): Promise<JsonValue>;

  /** Workers and queue depths for the engine status view. Optional: brokers without it show no workers. */
  engineStatus?(): Promise<BrokerEngineStatus>;

  /** Stops taking jobs, waits for running ones, releases what the broker opened. Idempotent. */
  close(): Promise<void>;
}
