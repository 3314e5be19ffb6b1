/**
 * The runs the overview shows: loaded by REST, then kept live from the WebSocket with
 * the tracking reducer the server itself uses (src/tracking/reducer.ts), so a row is
 * exactly what tracking would say.
 */
import { applyEvent } from '../../src/tracking/reducer.js';
import type { FlowcastEvent } from '../../src/events/types.js';
import type { PipelineStatus } from '../../src/tracking/models.js';

/** Runs a page keeps; past it, the oldest ended ones are dropped (a page left open for days stays small). */
export const MAX_RUNS = 10_000;

export class RunsStore {
  readonly runs = new Map<string, PipelineStatus>();
  readonly #max: number;

  constructor(max = MAX_RUNS) {
    this.#max = max;
  }
  /** Bumped on every change: the view re-renders on it. */
  version = 0;

  /**
   * A status from REST or a snapshot, kept unless what we hold is newer. The store takes
   * it over (events are applied to it in place): pass an object nobody else keeps, as a
   * freshly parsed answer is.
   */
  put(status: PipelineStatus): void {
    const held = this.runs.get(status.run_id);
    if (held !== undefined && held.last_seq >= status.last_seq) return;
    this.runs.set(status.run_id, status);
    if (held === undefined) this.#trim();
    this.version++;
  }

  apply(event: FlowcastEvent): void {
    const held = this.runs.get(event.run_id) ?? null;
    const next = applyEvent(held, event);
    if (next === null) return;
    if (next !== held) this.runs.set(event.run_id, next);
    if (held === null) this.#trim();
    this.version++;
  }

  /** Over the cap: drops the oldest ended runs, a tenth of the cap at once (so this runs rarely). */
  #trim(): void {
    if (this.runs.size <= this.#max) return;
    const ended = [...this.runs.values()].filter((r) => r.status !== 'RUNNING' && r.status !== 'PENDING');
    ended.sort((a, b) => (a.started_at ?? '').localeCompare(b.started_at ?? ''));
    const drop = Math.min(ended.length, this.runs.size - this.#max + Math.ceil(this.#max / 10));
    for (let i = 0; i < drop; i++) this.runs.delete((ended[i] as PipelineStatus).run_id);
  }

  /** Every run, newest started first. */
  sorted(): PipelineStatus[] {
    return [...this.runs.values()].sort((a, b) => (b.started_at ?? '').localeCompare(a.started_at ?? '') || b.run_id.localeCompare(a.run_id));
  }
}
