import type { Redis } from 'ioredis';
import { FlowcastError, ErrorCodes, InvalidArgumentError, toError } from '../core/errors.js';
import { checkId, checkKnownKeys, checkObject, checkPositiveInt, show } from '../core/validate.js';
import type { EventDraft, FlowcastEvent } from '../events/types.js';
import type { PipelinePlan } from '../pipeline/plan.js';
import type { RunRecord, RunStateStore, RunSummary, Transition } from '../pipeline/run-state.js';
import { runStateKey } from './keys.js';
import { parseRecord } from './run-record-codec.js';
import { RunStateCommits } from './run-state-commit.js';
import { KeptRuns, type RunStateHandoff } from './run-state-cache.js';
import { RedisPubSubTransport, checkRedisClient } from './transport.js';

export type { RunStateHandoff } from './run-state-cache.js';

/** Options of {@link RedisRunState}. */
export interface RedisRunStateOptions {
  /**
   * The transport whose per-run logs the transitions' events go to. Its `keyPrefix`,
   * `maxEventsPerRun`, `ttlSeconds` and `endedTtlSeconds` apply to the run state too, so
   * a run's record and log live and expire together.
   */
  transport: RedisPubSubTransport;
  /**
   * Times a transition is tried on a fresh read when other processes keep changing the
   * same run between its read and its write (a first try on this process's kept copy
   * does not count); then it rejects with `FLOWCAST_ERR_CONFLICT`.
   * @default 100
   */
  maxAttempts?: number;
  /**
   * Runs whose plan (parsed) and last written record this process keeps. A transition
   * of a run this process wrote last needs no read first: it sends its change based on
   * the kept record, and when another process wrote meanwhile, the script answers with
   * the current record and the transition runs again on it.
   * @default 1000
   */
  cachedRuns?: number;
}

const KNOWN = ['transport', 'maxAttempts', 'cachedRuns'] as const;

/**
 * Run state in Redis: any worker can advance any run, and a transition's state change
 * and its events land atomically (one Lua script), so DAG fan-in is coordinated: a step
 * never starts twice or not at all, however many workers finish steps of one run at once.
 *
 * A transition is optimistic: it reads the record and its version, runs the (pure)
 * function in Node, then a script stores the new record only if the version did not
 * move, gives the events the run's next seqs, appends them to the run's log (the
 * transport's stream, same `{run_id}` hash tag) and, unless a listener of the transport
 * wants them, publishes them to the run's channels (see
 * `RedisPubSubTransport.liveChannels`). When another process won, it reads again
 * and retries (run-state-commit.ts). Transitions of one run from this process are
 * queued, so they never conflict with each other.
 *
 * Keys: `<prefix>{<run_id>}:state` (hash `rec`, `plan`, `sum`, `ver`) next to the log; the
 * TTL of all of a run's keys is refreshed on every write (`endedTtlSeconds` once ended).
 * The record's stored form is in run-record-codec.ts, what a process keeps of the runs it
 * wrote in run-state-cache.ts.
 *
 * @example
 * const transport = new RedisPubSubTransport(redis, { keyPrefix: 'myapp:' });
 * const runState = new RedisRunState(redis, { transport });
 */
export class RedisRunState implements RunStateStore {
  /** The client commands go through (the caller's). */
  readonly redis: Redis;
  /** The transport whose logs the events go to (see {@link RedisRunStateOptions.transport}). */
  readonly transport: RedisPubSubTransport;
  readonly #kept: KeptRuns;
  readonly #commits: RunStateCommits;
  readonly #queues = new Map<string, Promise<unknown>>();
  #closed = false;

  constructor(redis: Redis, options: RedisRunStateOptions) {
    this.redis = checkRedisClient(redis, 'RedisRunState');
    checkKnownKeys(checkObject(options, 'RedisRunState options'), KNOWN, 'RedisRunState options');
    if (!(options.transport instanceof RedisPubSubTransport)) {
      throw new InvalidArgumentError(`RedisRunState options.transport must be a RedisPubSubTransport, received ${show(options.transport)}`);
    }
    this.transport = options.transport;
    const maxAttempts = checkPositiveInt(options.maxAttempts ?? 100, 'maxAttempts');
    this.#kept = new KeptRuns(checkPositiveInt(options.cachedRuns ?? 1000, 'cachedRuns'));
    this.#commits = new RunStateCommits(this.redis, this.transport, this.#kept, maxAttempts);
  }

  async create(record: RunRecord, events: EventDraft[]): Promise<FlowcastEvent[]> {
    this.#checkOpen('create');
    checkObject(record, 'create(record)');
    checkId(record.run_id, 'record.run_id');
    checkObject(record.plan, 'record.plan');
    return this.#commits.create(record, events);
  }

  /** What this process last wrote of a run, to hand to the process that writes it next (see {@link RunStateHandoff}); `null` when it holds nothing. */
  handoff(runId: string): RunStateHandoff | null {
    return this.#kept.handoff(runId);
  }

  /**
   * Takes a handoff of a run this process holds nothing of (else, or when it does not
   * know the plan yet, ignores it): its first transition of the run then needs no read.
   */
  prime(runId: string, handoff: unknown): void {
    if (this.#closed) return;
    this.#kept.prime(runId, handoff);
  }

  async get(runId: string): Promise<RunRecord | null> {
    this.#checkOpen('get');
    checkId(runId, 'get(runId)');
    const [rec, plan] = await this.redis.hmget(runStateKey(this.transport.keyPrefix, runId), 'rec', 'plan');
    if (rec === null || plan === null || rec === undefined || plan === undefined) return null;
    const record = parseRecord(rec);
    record.plan = JSON.parse(plan) as PipelinePlan;
    return record;
  }

  async getSummary(runId: string): Promise<RunSummary | null> {
    this.#checkOpen('getSummary');
    checkId(runId, 'getSummary(runId)');
    const sum = await this.redis.hget(runStateKey(this.transport.keyPrefix, runId), 'sum');
    return sum === null ? null : (JSON.parse(sum) as RunSummary);
  }

  transition<T>(runId: string, fn: (record: RunRecord) => Transition<T>): Promise<{ value: T; events: FlowcastEvent[] }> {
    try {
      this.#checkOpen('transition');
      checkId(runId, 'transition(runId)');
      if (typeof fn !== 'function') throw new InvalidArgumentError(`transition(runId, fn): fn must be a function, received ${show(fn)}`);
    } catch (error) {
      return Promise.reject(toError(error));
    }
    return this.#queued(runId, () => this.#commits.transition(runId, fn));
  }

  /**
   * See `RunStateStore.reopen`: on a fresh read of the record, and, when `fn` turns the
   * ended run back to RUNNING, one script that checks the version, removes the log's end
   * mark and appends the events (so every process agrees: the run runs again).
   */
  reopen<T>(runId: string, fn: (record: RunRecord) => Transition<T>): Promise<{ value: T; events: FlowcastEvent[] }> {
    try {
      this.#checkOpen('reopen');
      checkId(runId, 'reopen(runId)');
      if (typeof fn !== 'function') throw new InvalidArgumentError(`reopen(runId, fn): fn must be a function, received ${show(fn)}`);
    } catch (error) {
      return Promise.reject(toError(error));
    }
    return this.#queued(runId, () => this.#commits.reopen(runId, fn));
  }

  /** Runs `task` after this process's earlier transitions of the run: local transitions never conflict with each other. */
  #queued<R>(runId: string, task: () => Promise<R>): Promise<R> {
    const prev = this.#queues.get(runId);
    const next = prev === undefined ? task() : prev.then(task, task);
    this.#queues.set(runId, next);
    void next.then(
      () => this.#dequeue(runId, next),
      () => this.#dequeue(runId, next),
    );
    return next;
  }

  #dequeue(runId: string, p: Promise<unknown>): void {
    if (this.#queues.get(runId) === p) this.#queues.delete(runId);
  }

  #checkOpen(what: string): void {
    if (this.#closed) throw new FlowcastError(ErrorCodes.CLOSED, `RedisRunState is closed (${what})`);
  }

  /** Waits for this process's queued transitions; closes nothing of the caller's. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.allSettled([...this.#queues.values()]);
    this.#kept.clear();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
