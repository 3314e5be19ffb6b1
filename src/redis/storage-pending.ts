/**
 * A run's pending events in {@link RedisPipelineStorage}: what the offer script read, and
 * how the buffered events are applied with the reducer, in seq order.
 */
import type { FlowcastEvent } from '../events/types.js';
import type { PipelineStatus } from '../tracking/models.js';
import { applyEvent } from '../tracking/reducer.js';

/** What the offer script (`OFFER` in storage-lua.ts) read. */
export interface Loaded {
  version: string;
  status: PipelineStatus | null;
  waitedMs: number;
  /** seq → event JSON. */
  pending: Map<number, string>;
}

/** Parses the reply of the offer script (`null` for a duplicate). */
export function parseOffer(reply: unknown): Loaded | null {
  const r = reply as (string | number | null)[];
  if (r[0] === 0) return null;
  const pending = new Map<number, string>();
  for (let i = 4; i + 1 < r.length; i += 2) {
    const seq = Number(r[i]);
    // Pending events first, then those the event log filled in: the first copy of a seq stays.
    if (!pending.has(seq)) pending.set(seq, String(r[i + 1]));
  }
  const json = r[2];
  return {
    version: String(r[1]),
    status: typeof json === 'string' ? (JSON.parse(json) as PipelineStatus) : null,
    waitedMs: Number(r[3]),
    pending,
  };
}

/** What {@link drainPending} makes of a run's pending events. */
export interface Drained {
  /** The status after them. */
  status: PipelineStatus;
  /** Seqs to remove from the pending hash (applied, or already below last_seq). */
  remove: number[];
  /** Seqs applied. */
  applied: Set<number>;
}

/**
 * Applies the pending events that can go now to the loaded status (in place): in seq
 * order from `last_seq + 1`, and past a gap only once `gapTimeoutMs` passed. `null` when
 * none can.
 */
export function drainPending(loaded: Loaded, gapTimeoutMs: number): Drained | null {
  let status = loaded.status;
  let last = status?.last_seq ?? 0;
  const gapTimedOut = loaded.waitedMs >= gapTimeoutMs;
  const remove: number[] = [];
  const applied = new Set<number>();
  for (const seq of [...loaded.pending.keys()].sort((a, b) => a - b)) {
    if (seq <= last) {
      remove.push(seq);
      continue;
    }
    if (seq !== last + 1 && !gapTimedOut) break;
    const next = applyEvent(status, JSON.parse(loaded.pending.get(seq) as string) as FlowcastEvent);
    // Only a start event makes a run: the others wait for it.
    if (next === null) break;
    status = next;
    last = seq;
    remove.push(seq);
    applied.add(seq);
  }
  if (status === null || remove.length === 0) return null;
  return { status, remove, applied };
}
