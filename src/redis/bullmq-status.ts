/**
 * Engine status of a BullMQ deployment: a heartbeat per worker process (a Redis key that
 * expires after three missed beats, indexed by a sorted set) and BullMQ's queue counts.
 */
import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Queue } from 'bullmq';
import { isoTime } from '../core/clock.js';
import type { QueueStatus, WorkerStatus } from '../core/engine-status.js';
import { workerKey, workersIndexKey } from './keys.js';

/** Busy/idle changes within this many milliseconds make one heartbeat write. */
export const STATE_COALESCE_MS = 50;

/** What a worker process counts about itself. */
export interface WorkerCounters {
  active: number;
  processed: number;
  /** Jobs whose processing threw (BullMQ retries them or keeps them failed); a task's own error is a failed step, not a failed job. */
  failed: number;
}

/** Writes one worker's heartbeat every `intervalMs` until stopped. */
export class WorkerHeartbeat {
  readonly id: string;
  readonly #redis: Redis;
  readonly #prefix: string;
  readonly #intervalMs: number;
  readonly #concurrency: number;
  readonly #counters: WorkerCounters;
  readonly #startedAt = isoTime();
  readonly #onError: (error: Error) => void;
  #timer: NodeJS.Timeout | undefined;
  #beating: Promise<void> | null = null;
  #again = false;
  #soon: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(redis: Redis, prefix: string, options: { intervalMs: number; concurrency: number; counters: WorkerCounters; onError: (error: Error) => void }) {
    this.id = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
    this.#redis = redis;
    this.#prefix = prefix;
    this.#intervalMs = options.intervalMs;
    this.#concurrency = options.concurrency;
    this.#counters = options.counters;
    this.#onError = options.onError;
  }

  /** Writes the first heartbeat now and the next ones on a timer that does not keep the process alive. */
  start(): Promise<void> {
    this.#timer = setInterval(() => void this.beat(), this.#intervalMs);
    this.#timer.unref();
    return this.beat();
  }

  /**
   * The busy/idle state changed: writes the heartbeat soon. Changes within
   * {@link STATE_COALESCE_MS} make one write, so a worker that flips between busy and
   * idle on every job does not write on every job.
   */
  stateChanged(): void {
    if (this.#soon !== undefined || this.#stopped) return;
    this.#soon = setTimeout(() => {
      this.#soon = undefined;
      void this.beat();
    }, STATE_COALESCE_MS);
    this.#soon.unref();
  }

  /** Writes the heartbeat now. Never rejects. */
  beat(): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    if (this.#beating !== null) {
      // The state may have changed since that write was built: write again after it.
      this.#again = true;
      return this.#beating;
    }
    const now = Date.now();
    const status: WorkerStatus = {
      id: this.id,
      host: hostname(),
      pid: process.pid,
      state: this.#counters.active > 0 ? 'busy' : 'idle',
      active_jobs: this.#counters.active,
      concurrency: this.#concurrency,
      started_at: this.#startedAt,
      last_heartbeat: isoTime(now),
      processed: this.#counters.processed,
    };
    this.#beating = this.#redis
      .multi()
      .set(workerKey(this.#prefix, this.id), JSON.stringify(status), 'PX', this.#intervalMs * 3)
      .zadd(workersIndexKey(this.#prefix), now, this.id)
      .exec()
      .then(
        () => undefined,
        (error: unknown) => this.#onError(error instanceof Error ? error : new Error(String(error))),
      )
      .finally(() => {
        this.#beating = null;
        if (this.#again && !this.#stopped) {
          this.#again = false;
          void this.beat();
        }
      });
    return this.#beating;
  }

  /** Stops the timer and deletes the heartbeat: the worker leaves the status at once. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    clearTimeout(this.#soon);
    // Redis unreachable: the heartbeat expires by itself, and waiting would never end.
    if (this.#redis.status !== 'ready') return;
    await this.#beating;
    try {
      await this.#redis.multi().del(workerKey(this.#prefix, this.id)).zrem(workersIndexKey(this.#prefix), this.id).exec();
    } catch (error) {
      this.#onError(error instanceof Error ? error : new Error(String(error)));
    }
  }
}

/** The live workers of a deployment, oldest first; prunes the index of workers whose heartbeat expired. */
export async function readWorkers(redis: Redis, prefix: string): Promise<WorkerStatus[]> {
  const ids = await redis.zrange(workersIndexKey(prefix), 0, -1);
  if (ids.length === 0) return [];
  const values = await redis.mget(ids.map((id) => workerKey(prefix, id)));
  const workers: WorkerStatus[] = [];
  const gone: string[] = [];
  ids.forEach((id, i) => {
    const raw = values[i];
    if (raw === null || raw === undefined) gone.push(id);
    else workers.push(JSON.parse(raw) as WorkerStatus);
  });
  if (gone.length > 0) await redis.zrem(workersIndexKey(prefix), ...gone);
  workers.sort((a, b) => a.started_at.localeCompare(b.started_at) || a.id.localeCompare(b.id));
  return workers;
}

/** Depth of one BullMQ queue (`waiting` includes prioritized jobs and those waiting for children). */
export async function readQueue(queue: Queue, name: string): Promise<QueueStatus> {
  const c = await queue.getJobCounts('waiting', 'prioritized', 'waiting-children', 'active', 'delayed', 'failed', 'completed');
  return {
    name,
    waiting: (c.waiting ?? 0) + (c.prioritized ?? 0) + (c['waiting-children'] ?? 0),
    active: c.active ?? 0,
    delayed: c.delayed ?? 0,
    failed: c.failed ?? 0,
    completed: c.completed ?? 0,
  };
}
