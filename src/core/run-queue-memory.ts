/**
 * The run queue of the in-memory broker (see `RunQueue` in ./run-queue.ts): atomic
 * because each operation reads and changes the queue and the slots in one synchronous
 * step, and JavaScript runs one thing at a time.
 */
import type { QueueHolder, QueueOffer, QueuedPlace, QueuedStart, RunQueue, StartingStart } from './run-queue.js';

/** The slots the queue takes from, synchronously (`InMemoryRunSlots`). */
export interface SyncSlots {
  acquireSync(group: string, limit: number, runId: string, ttlMs: number): { ok: true } | { ok: false; holders: QueueHolder[] };
  holdersSync(group: string): QueueHolder[];
}

interface GroupQueue {
  waiting: QueuedStart[];
  starting: Map<string, StartingStart>;
}

/** Queues in this process, next to the slots of `InMemoryRunSlots`. */
export class InMemoryRunQueue implements RunQueue {
  readonly #slots: SyncSlots;
  readonly #groups = new Map<string, GroupQueue>();
  /** Run id → its group, for {@link find}. */
  readonly #where = new Map<string, string>();
  readonly closed = false;

  constructor(slots: SyncSlots) {
    this.#slots = slots;
  }

  #group(group: string): GroupQueue {
    let q = this.#groups.get(group);
    if (q === undefined) {
      q = { waiting: [], starting: new Map() };
      this.#groups.set(group, q);
    }
    return q;
  }

  #promote(group: string, limit: number, ttlMs: number): QueuedStart[] {
    const q = this.#groups.get(group);
    const out: QueuedStart[] = [];
    while (q !== undefined && q.waiting.length > 0) {
      const head = q.waiting[0] as QueuedStart;
      if (!this.#slots.acquireSync(group, limit, head.run_id, ttlMs).ok) break;
      q.waiting.shift();
      q.starting.set(head.run_id, { ...head, promoted_ms: Date.now() });
      out.push(head);
    }
    return out;
  }

  offer(group: string, limit: number, ttlMs: number, start: { run_id: string; request: string }, maxWaiting: number): Promise<QueueOffer> {
    const q = this.#group(group);
    // Free slots go to the starts already waiting first: no overtaking.
    const promoted = this.#promote(group, limit, ttlMs);
    if (q.waiting.length === 0 && this.#slots.acquireSync(group, limit, start.run_id, ttlMs).ok) {
      this.#drop(group);
      return Promise.resolve({ ok: true, promoted });
    }
    const holders = this.#slots.holdersSync(group);
    if (q.waiting.length >= maxWaiting) {
      this.#drop(group);
      return Promise.resolve({ ok: false, full: true, waiting: q.waiting.length, holders, promoted });
    }
    q.waiting.push({ run_id: start.run_id, request: start.request, queued_ms: Date.now() });
    this.#where.set(start.run_id, group);
    return Promise.resolve({ ok: false, full: false, position: q.waiting.length, holders, promoted });
  }

  promote(group: string, limit: number, ttlMs: number): Promise<QueuedStart[]> {
    return Promise.resolve(this.#promote(group, limit, ttlMs));
  }

  started(group: string, runId: string): Promise<void> {
    const q = this.#groups.get(group);
    if (q?.starting.delete(runId) === true) this.#where.delete(runId);
    this.#drop(group);
    return Promise.resolve();
  }

  remove(group: string, runId: string): Promise<QueuedStart | null> {
    const q = this.#groups.get(group);
    const at = q === undefined ? -1 : q.waiting.findIndex((s) => s.run_id === runId);
    if (q === undefined || at < 0) return Promise.resolve(null);
    const [start] = q.waiting.splice(at, 1);
    this.#where.delete(runId);
    this.#drop(group);
    return Promise.resolve(start ?? null);
  }

  find(runId: string): Promise<QueuedPlace | null> {
    const group = this.#where.get(runId);
    const q = group === undefined ? undefined : this.#groups.get(group);
    if (group === undefined || q === undefined) return Promise.resolve(null);
    const at = q.waiting.findIndex((s) => s.run_id === runId);
    if (at >= 0) return Promise.resolve({ group, position: at + 1, start: q.waiting[at] as QueuedStart });
    const starting = q.starting.get(runId);
    return Promise.resolve(starting === undefined ? null : { group, position: 0, start: starting });
  }

  waiting(group: string, max = Infinity): Promise<QueuedStart[]> {
    return Promise.resolve((this.#groups.get(group)?.waiting ?? []).slice(0, max));
  }

  starting(group: string): Promise<StartingStart[]> {
    return Promise.resolve([...(this.#groups.get(group)?.starting.values() ?? [])]);
  }

  groups(): Promise<string[]> {
    return Promise.resolve([...this.#groups.keys()]);
  }

  forget(group: string): Promise<void> {
    this.#drop(group);
    return Promise.resolve();
  }

  #drop(group: string): void {
    const q = this.#groups.get(group);
    if (q !== undefined && q.waiting.length === 0 && q.starting.size === 0) this.#groups.delete(group);
  }
}
