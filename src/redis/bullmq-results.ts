/**
 * `waitResult()` of standalone task jobs on BullMQ: the job's stored outcome when it
 * already finished, else BullMQ's queue events (one `QueueEvents` reader per broker,
 * opened on first use).
 */
import { QueueEvents, type Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { ErrorCodes, FlowcastError } from '../core/errors.js';
import type { JsonValue } from '../core/json.js';

type Outcome = { ok: true; value: JsonValue } | { ok: false; error: string };

interface Waiter {
  settle: (outcome: Outcome) => void;
}

/** Waits for task jobs of one queue. */
export class TaskResults {
  readonly #queue: Queue;
  readonly #connection: Redis;
  readonly #prefix: string;
  readonly #waiters = new Map<string, Set<Waiter>>();
  #events: Promise<QueueEvents> | null = null;
  #closed = false;

  constructor(queue: Queue, connection: Redis, prefix: string) {
    this.#queue = queue;
    this.#connection = connection;
    this.#prefix = prefix;
  }

  /** Resolves with the job's result; rejects with its error, or `WAIT_TIMEOUT` after `timeoutMs`. */
  async wait(jobId: string, bullmqId: string, timeoutMs: number | undefined): Promise<JsonValue> {
    if (this.#closed) throw new FlowcastError(ErrorCodes.CLOSED, 'BullMQBroker is closed');
    const deadline = timeoutMs === undefined ? undefined : Date.now() + timeoutMs;
    // Listen first, then read the stored state: a job that finishes in between is seen by one or the other.
    const outcome = new Promise<Outcome>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const waiter: Waiter = {
        settle: (o) => {
          clearTimeout(timer);
          this.#forget(bullmqId, waiter);
          resolve(o);
        },
      };
      const set = this.#waiters.get(bullmqId) ?? new Set<Waiter>();
      set.add(waiter);
      this.#waiters.set(bullmqId, set);
      if (deadline !== undefined) {
        timer = setTimeout(() => {
          this.#forget(bullmqId, waiter);
          reject(new FlowcastError(ErrorCodes.WAIT_TIMEOUT, `No result for task job ${jobId} after ${timeoutMs}ms`));
        }, Math.max(0, deadline - Date.now()));
      }
    });
    try {
      await this.#reader();
      const job = await this.#queue.getJob(bullmqId);
      if (job === undefined) throw new FlowcastError(ErrorCodes.NOT_FOUND, `Unknown task job ${jobId} (never sent, or its result expired)`);
      const state = await job.getState();
      if (state === 'completed') this.#settle(bullmqId, { ok: true, value: (job.returnvalue ?? null) as JsonValue });
      else if (state === 'failed') this.#settle(bullmqId, { ok: false, error: job.failedReason });
    } catch (error) {
      const set = this.#waiters.get(bullmqId);
      this.#waiters.delete(bullmqId);
      for (const w of set ?? []) w.settle({ ok: false, error: '' });
      throw error;
    }
    const o = await outcome;
    if (o.ok) return o.value;
    throw new FlowcastError(ErrorCodes.TASK_FAILED, `Task job ${jobId} failed: ${o.error}`);
  }

  #forget(bullmqId: string, waiter: Waiter): void {
    const set = this.#waiters.get(bullmqId);
    if (set === undefined) return;
    set.delete(waiter);
    if (set.size === 0) this.#waiters.delete(bullmqId);
  }

  #settle(bullmqId: string, outcome: Outcome): void {
    const set = this.#waiters.get(bullmqId);
    if (set === undefined) return;
    for (const w of [...set]) w.settle(outcome);
  }

  #reader(): Promise<QueueEvents> {
    this.#events ??= (async () => {
      // Start after the newest event now in the stream: nothing is replayed, nothing after it is missed.
      const last = await this.#connection.xrevrange(this.#queue.keys.events ?? this.#queue.toKey('events'), '+', '-', 'COUNT', 1);
      const lastEventId = last[0]?.[0] ?? '0-0';
      const events = new QueueEvents(this.#queue.name, { connection: this.#connection, prefix: this.#prefix, lastEventId });
      events.on('completed', ({ jobId, returnvalue }) => {
        this.#settle(jobId, { ok: true, value: parseReturn(returnvalue) });
      });
      events.on('failed', ({ jobId, failedReason }) => this.#settle(jobId, { ok: false, error: failedReason }));
      events.on('error', () => undefined);
      await events.waitUntilReady();
      return events;
    })();
    return this.#events;
  }

  /** Closes the events reader; waiting callers reject with `CLOSED`. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const events = this.#events;
    this.#events = null;
    if (events !== null) await (await events.catch(() => null))?.close();
    for (const id of [...this.#waiters.keys()]) this.#settle(id, { ok: false, error: 'the broker was closed before the job finished' });
  }
}

/** BullMQ parsed the stored JSON already. */
function parseReturn(value: unknown): JsonValue {
  return (value ?? null) as JsonValue;
}
