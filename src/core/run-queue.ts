/**
 * Run queues: the starts of a concurrency group that wait for a free slot (a pipeline
 * whose `concurrency.onLimit` is `"queue"`). Each group's queue is FIFO and sits next to
 * the group's slots (src/core/run-slots.ts), so that "take a slot, or queue behind the
 * runs already waiting" and "give the freed slot to the oldest waiting start" are each
 * one atomic step: in this process for the in-memory broker, one Lua script for Redis
 * (src/redis/run-queue.ts).
 *
 * A queued start carries its whole start request (the pipeline's plan, the input, the
 * slot) as JSON: whichever process frees a slot, or any process's keeper, can start it.
 * A start given a slot moves to the group's "starting" entries until the run exists, so
 * that a process dying in between loses nothing: another process starts it.
 */

/** A run holding a slot (the shape of `SlotHolder` in ./run-slots.ts). */
export interface QueueHolder {
  run_id: string;
  since_ms: number;
}

/** A start waiting in a group's queue (or given a slot and starting). */
export interface QueuedStart {
  /** The run id it was given when it queued. */
  run_id: string;
  /** The start request as JSON: opaque to the queue (see src/pipeline/run-queue.ts). */
  request: string;
  /** When it queued (epoch ms, the queue's clock). */
  queued_ms: number;
}

/** A start that was given a slot and whose run is not known to exist yet. */
export interface StartingStart extends QueuedStart {
  /** When it was given its slot (epoch ms, the queue's clock). */
  promoted_ms: number;
}

/** What {@link RunQueue.offer} answers. */
export type QueueOffer =
  /** The start holds a slot now: start its run. `promoted`: other starts given a slot in the same step, to start too. */
  | { ok: true; promoted: QueuedStart[] }
  /** The start waits at `position` (1: next), behind these holders; `promoted` as above. */
  | { ok: false; full: false; position: number; holders: QueueHolder[]; promoted: QueuedStart[] }
  /** The queue holds `waiting` starts already (its limit): nothing was queued; `promoted` as above. */
  | { ok: false; full: true; waiting: number; holders: QueueHolder[]; promoted: QueuedStart[] };

/** Where a queued start is (see {@link RunQueue.find}). */
export interface QueuedPlace {
  group: string;
  /** 1 for the next to start; 0 once it was given a slot and its run is starting. */
  position: number;
  start: QueuedStart;
}

/** The queues of concurrency groups (the seam of the policy's `onLimit: "queue"`). */
export interface RunQueue {
  /**
   * Takes a slot of `group` for `start.run_id` when one is free and no start waits;
   * else appends the start to the group's queue (no overtaking), unless `maxWaiting`
   * starts wait already. In the same step, free slots go to the oldest waiting starts.
   */
  offer(group: string, limit: number, ttlMs: number, start: { run_id: string; request: string }, maxWaiting: number): Promise<QueueOffer>;
  /** Gives the free slots of `group` (at most `limit` holders) to its oldest waiting starts, which become starting; answers them. */
  promote(group: string, limit: number, ttlMs: number): Promise<QueuedStart[]>;
  /** Forgets a starting start once its run exists. */
  started(group: string, runId: string): Promise<void>;
  /** Takes a waiting start out of the queue (a cancel); `null` when it does not wait (started, starting, or unknown). */
  remove(group: string, runId: string): Promise<QueuedStart | null>;
  /** Where a run waits or starts, or `null`. */
  find(runId: string): Promise<QueuedPlace | null>;
  /** The starts waiting in `group`, oldest first (at most `max`). */
  waiting(group: string, max?: number): Promise<QueuedStart[]>;
  /** The starts of `group` that were given a slot and are not known to have started. */
  starting(group: string): Promise<StartingStart[]>;
  /** Groups that may have waiting or starting starts (a hint: check each). */
  groups(): Promise<string[]>;
  /** Drops `group` from {@link groups} when it has nothing waiting or starting. */
  forget(group: string): Promise<void>;
  /** `true` once the queue's connection was closed for good (its keeper stops). */
  readonly closed: boolean;
}
