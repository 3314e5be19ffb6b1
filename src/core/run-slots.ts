/**
 * Run slots: named groups of at most N holders, each a run id with an expiry. The
 * pipeline's concurrency policy ("at most N runs of this key in flight") and idempotent
 * starts ("this key already started run X") are both a group of slots. The broker owns
 * them (`Broker.slots`): one process for the in-memory broker, every process sharing a
 * Redis for the BullMQ broker (src/redis/run-slots.ts).
 */
import { InMemoryRunQueue } from './run-queue-memory.js';
import type { RunQueue } from './run-queue.js';

/** A run holding a slot. */
export interface SlotHolder {
  run_id: string;
  /** When it took the slot (epoch ms, the taker's clock). */
  since_ms: number;
}

/** What {@link RunSlots.acquire} answers: the slot was taken, or every slot is held (by these runs). */
export type SlotClaim = { ok: true } | { ok: false; holders: SlotHolder[] };

/** Groups of slots, each taken atomically (the seam of the concurrency policy). */
export interface RunSlots {
  /** Takes a free slot of `group` (at most `limit` holders) for `runId`, expiring after `ttlMs` unless refreshed. */
  acquire(group: string, limit: number, runId: string, ttlMs: number): Promise<SlotClaim>;
  /** Frees the slot `runId` holds in `group` (a no-op when it holds none). */
  release(group: string, runId: string): Promise<void>;
  /** Pushes the expiry of the slot `runId` holds in `group` to `ttlMs` from now. */
  refresh(group: string, runId: string, ttlMs: number): Promise<void>;
  /** The runs holding a live (unexpired) slot of `group` now, oldest first; changes nothing. */
  holders(group: string): Promise<SlotHolder[]>;
  /** Optional: the queues of groups whose policy queues starts over the limit (`concurrency.onLimit: "queue"`). */
  readonly queue?: RunQueue;
}

interface HeldSlot {
  run_id: string;
  since_ms: number;
  expires_ms: number;
}

/** Slots in this process (the in-memory broker's): atomic because JavaScript runs one thing at a time. */
export class InMemoryRunSlots implements RunSlots {
  readonly #groups = new Map<string, HeldSlot[]>();
  /** The queues of the groups whose policy queues starts over the limit (`onLimit: "queue"`). */
  readonly queue: RunQueue = new InMemoryRunQueue(this);
  /** Acquires since the last sweep: groups nobody asks for again (idempotency keys) are dropped once expired. */
  #sinceSweep = 0;

  #sweep(): void {
    this.#sinceSweep = 0;
    const now = Date.now();
    for (const [group, held] of this.#groups) {
      const live = held.filter((s) => s.expires_ms > now);
      if (live.length === 0) this.#groups.delete(group);
      else if (live.length !== held.length) this.#groups.set(group, live);
    }
  }

  #live(group: string): HeldSlot[] {
    const now = Date.now();
    const held = (this.#groups.get(group) ?? []).filter((s) => s.expires_ms > now);
    if (held.length === 0) this.#groups.delete(group);
    else this.#groups.set(group, held);
    return held;
  }

  acquire(group: string, limit: number, runId: string, ttlMs: number): Promise<SlotClaim> {
    return Promise.resolve(this.acquireSync(group, limit, runId, ttlMs));
  }

  /** The synchronous core of {@link acquire} (the in-memory queue takes slots in the same step as it reads its queue). */
  acquireSync(group: string, limit: number, runId: string, ttlMs: number): SlotClaim {
    if (++this.#sinceSweep > Math.max(256, this.#groups.size)) this.#sweep();
    const held = this.#live(group);
    if (held.some((s) => s.run_id === runId)) return { ok: true };
    if (held.length >= limit) return { ok: false, holders: held.map((s) => ({ run_id: s.run_id, since_ms: s.since_ms })) };
    const now = Date.now();
    this.#groups.set(group, [...held, { run_id: runId, since_ms: now, expires_ms: now + ttlMs }]);
    return { ok: true };
  }

  release(group: string, runId: string): Promise<void> {
    const held = this.#live(group).filter((s) => s.run_id !== runId);
    if (held.length === 0) this.#groups.delete(group);
    else this.#groups.set(group, held);
    return Promise.resolve();
  }

  holders(group: string): Promise<SlotHolder[]> {
    return Promise.resolve(this.holdersSync(group));
  }

  /** The synchronous core of {@link holders}. */
  holdersSync(group: string): SlotHolder[] {
    const now = Date.now();
    const held = (this.#groups.get(group) ?? []).filter((s) => s.expires_ms > now);
    return held.map((s) => ({ run_id: s.run_id, since_ms: s.since_ms })).sort((a, b) => a.since_ms - b.since_ms);
  }

  /** Groups held now (expired ones may linger until the next sweep). */
  get size(): number {
    return this.#groups.size;
  }

  refresh(group: string, runId: string, ttlMs: number): Promise<void> {
    for (const s of this.#live(group)) if (s.run_id === runId) s.expires_ms = Date.now() + ttlMs;
    return Promise.resolve();
  }
}
