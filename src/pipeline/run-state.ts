import { FlowcastError, ErrorCodes, RunNotResumableError, toError } from '../core/errors.js';
import type { JsonValue } from '../core/json.js';
import { checkKnownKeys, checkObject, checkPositiveInt } from '../core/validate.js';
import type { EventDraft, FlowcastEvent } from '../events/types.js';
import { Fifo } from '../core/fifo.js';
import type { InMemoryTransport } from '../transport/memory-transport.js';
import type { PipelinePlan } from './plan.js';

/** Run status, a literal union (see the transition table in `transitions.ts`). */
export type RunStatus = 'RUNNING' | 'COMPLETED' | 'FAILED' | 'CANCELLED';

/** Where a step is in its life. */
export type StepPhase = 'PENDING' | 'READY' | 'ACTIVE' | 'COMPLETED' | 'FAILED' | 'SKIPPED' | 'CANCELLED';

/** Item bookkeeping of map/filter/group steps. */
export interface StepItems {
  total: number;
  /** Next item to dispatch. */
  next: number;
  done: number;
  inputs: JsonValue[];
  results: (JsonValue | null)[];
}

/** A step's part of a run record. (`RedisRunState` stores these fields by name: a new one goes there too.) */
export interface StepState {
  phase: StepPhase;
  /** Attempt of the current call (call steps), or highest attempt seen (item steps). */
  attempt: number;
  /** Set once the first job of the step started. */
  started_at_ms: number | null;
  /** Id of the job that runs the step (the first item's for item steps). */
  task_id: string | null;
  /**
   * Set while the step's call runs inside another broker job (step chaining, see
   * `Broker.chainable`): that job's id. A broker that delivers that job again (its
   * worker died) finds the call here and retries it. Absent otherwise.
   */
  carrier?: string;
  result: JsonValue | null;
  error: string | null;
  items: StepItems | null;
}

/** Everything the engine knows about a run. Plain JSON. */
export interface RunRecord {
  run_id: string;
  pipeline_id: string;
  plan: PipelinePlan;
  input: JsonValue;
  status: RunStatus;
  started_at_ms: number;
  ended_at_ms: number | null;
  /** Jobs dispatched and not ended (including delayed retries). */
  inflight: number;
  /** Steps whose dependencies are done, waiting for a free slot (`max_parallel`). */
  ready: string[];
  steps: Record<string, StepState>;
  result: JsonValue | null;
  error: string | null;
  /**
   * The concurrency slot the run holds (its pipeline's `concurrency` policy): freed by
   * the engine after the transition that ends the run, refreshed by the others. Absent
   * for runs without a policy.
   */
  slot?: {
    group: string;
    ttl_ms: number;
    /** The policy's limit when the slot was taken: a resume takes a slot of the group again under it. */
    limit?: number;
    /** The policy queues starts over the limit (`onLimit: "queue"`): the end of the run hands its slot to the oldest waiting start. */
    queue?: true;
  };
  /** The run's attempt: absent for the first, 2 after the first resume (see `resumeRun`). */
  attempt?: number;
  /**
   * When the current attempt began (a resume), absent for the first: the run timeout
   * counts from here.
   */
  attempt_started_at_ms?: number;
  /**
   * The trace context of the run's span (OpenTelemetry propagator fields, see
   * `pipeline/tracing.ts`), copied into every step job. Absent for runs not traced.
   */
  trace?: Record<string, string>;
}

/** What {@link RunStateStore.getSummary} returns. */
export interface RunSummary {
  run_id: string;
  pipeline_id: string;
  status: RunStatus;
  result: JsonValue | null;
  error: string | null;
}

/** What a transition function returns: its value and the events it causes. */
export interface Transition<T> {
  value: T;
  events: EventDraft[];
}

/**
 * Where run state lives. Each `transition` is atomic: the function sees the current
 * record, changes it, and the events it returns are appended to the run's log in the
 * same step, so state and log never disagree (memory now, Redis next).
 */
export interface RunStateStore {
  /** Stores a new run and appends its first events atomically. */
  create(record: RunRecord, events: EventDraft[]): Promise<FlowcastEvent[]>;
  /** A copy of the run's record, or `null`. */
  get(runId: string): Promise<RunRecord | null>;
  /** The run's status and outcome without its plan and steps (cheap), or `null`. */
  getSummary(runId: string): Promise<RunSummary | null>;
  /**
   * Applies `fn` to the run's record atomically and appends the events it returns.
   * `fn` may run more than once (optimistic stores retry): it must be pure, and return
   * fresh event drafts on every call (a store may complete them in place into the events
   * it returns). Rejects with `NOT_FOUND` for an unknown run.
   */
  transition<T>(runId: string, fn: (record: RunRecord) => Transition<T>): Promise<{ value: T; events: FlowcastEvent[] }>;
  /**
   * Optional synchronous form of {@link transition} for in-process stores: the engine
   * uses it when present to keep promises off the hot path.
   */
  transitionSync?<T>(runId: string, fn: (record: RunRecord) => Transition<T>): { value: T; events: FlowcastEvent[] };
  /**
   * Optional: {@link transition} for an ended run that `fn` may turn back to `RUNNING` (a
   * resume): atomically, the run's log is reopened after its terminal event, so the
   * events `fn` returns continue its seqs. Rejects with `NOT_FOUND` for an unknown run,
   * and with `RUN_NOT_RESUMABLE` when the run's event log is gone. A store without it
   * cannot resume runs.
   */
  reopen?<T>(runId: string, fn: (record: RunRecord) => Transition<T>): Promise<{ value: T; events: FlowcastEvent[] }>;
  /** Releases what the store opened. Idempotent. */
  close(): Promise<void>;
}

/** Options of {@link InMemoryRunState}. */
export interface InMemoryRunStateOptions {
  /** The log the events of each transition go to. */
  log: InMemoryTransport;
  /**
   * Records of ended runs kept (running runs are never evicted). Tracking keeps the
   * history; this only serves `waitResult()` and `getRun()` of recent runs.
   * @default 1000
   */
  maxEndedRuns?: number;
}

/** Run state in this process. Transitions are synchronous under the hood, hence atomic. */
export class InMemoryRunState implements RunStateStore {
  readonly #log: InMemoryTransport;
  readonly #maxEnded: number;
  readonly #runs = new Map<string, RunRecord>();
  readonly #ended = new Fifo<string>();

  constructor(options: InMemoryRunStateOptions) {
    checkKnownKeys(checkObject(options, 'InMemoryRunState options'), ['log', 'maxEndedRuns'], 'InMemoryRunState options');
    this.#log = options.log;
    this.#maxEnded = checkPositiveInt(options.maxEndedRuns ?? 1000, 'maxEndedRuns');
  }

  create(record: RunRecord, events: EventDraft[]): Promise<FlowcastEvent[]> {
    if (this.#runs.has(record.run_id)) {
      return Promise.reject(new FlowcastError(ErrorCodes.INVALID_ARGUMENT, `Run "${record.run_id}" already exists`));
    }
    this.#runs.set(record.run_id, record);
    const appended = this.#append(events);
    // A run that ends in its first transition (a pipeline with no steps) is evicted like any ended run.
    if (record.status !== 'RUNNING') this.#markEnded(record.run_id);
    return Promise.resolve(appended);
  }

  get(runId: string): Promise<RunRecord | null> {
    const rec = this.#runs.get(runId);
    return Promise.resolve(rec === undefined ? null : structuredClone(rec));
  }

  getSummary(runId: string): Promise<RunSummary | null> {
    const r = this.#runs.get(runId);
    if (r === undefined) return Promise.resolve(null);
    return Promise.resolve({ run_id: r.run_id, pipeline_id: r.pipeline_id, status: r.status, result: structuredClone(r.result), error: r.error });
  }

  transition<T>(runId: string, fn: (record: RunRecord) => Transition<T>): Promise<{ value: T; events: FlowcastEvent[] }> {
    try {
      return Promise.resolve(this.transitionSync(runId, fn));
    } catch (error) {
      return Promise.reject(toError(error));
    }
  }

  /** The synchronous core of {@link transition}. */
  transitionSync<T>(runId: string, fn: (record: RunRecord) => Transition<T>): { value: T; events: FlowcastEvent[] } {
    const rec = this.#runs.get(runId);
    if (rec === undefined) throw new FlowcastError(ErrorCodes.NOT_FOUND, `Unknown run "${runId}"`);
    const wasRunning = rec.status === 'RUNNING';
    const { value, events } = fn(rec);
    const appended = this.#append(events);
    if (wasRunning && rec.status !== 'RUNNING') this.#markEnded(runId);
    return { value, events: appended };
  }

  /** See {@link RunStateStore.reopen}. */
  reopen<T>(runId: string, fn: (record: RunRecord) => Transition<T>): Promise<{ value: T; events: FlowcastEvent[] }> {
    const rec = this.#runs.get(runId);
    if (rec === undefined) return Promise.reject(new FlowcastError(ErrorCodes.NOT_FOUND, `Unknown run "${runId}"`));
    if (rec.status === 'RUNNING') return this.transition(runId, fn);
    // On a copy: a resume refused because the log is gone leaves the record as it was.
    const next = structuredClone(rec);
    const { value, events } = fn(next);
    if (next.status === 'RUNNING' && !this.#log.reopenSync(runId)) {
      return Promise.reject(new RunNotResumableError(`Run "${runId}" cannot be resumed: its event log is no longer held (retentionMs, maxRuns of the transport)`, runId, null));
    }
    this.#runs.set(runId, next);
    const appended = this.#append(events);
    if (next.status !== 'RUNNING') this.#markEnded(runId);
    return Promise.resolve({ value, events: appended });
  }

  #append(drafts: EventDraft[]): FlowcastEvent[] {
    const out: FlowcastEvent[] = [];
    for (const draft of drafts) {
      const event = this.#log.appendSync(draft);
      if (event !== null) out.push(event);
    }
    return out;
  }

  #markEnded(runId: string): void {
    this.#ended.push(runId);
    while (this.#ended.size > this.#maxEnded) {
      const id = this.#ended.shift() as string;
      // A run resumed since it was listed here is running again (or listed again, later).
      if (this.#runs.get(id)?.status !== 'RUNNING') this.#runs.delete(id);
    }
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
