/**
 * The runs the overview shows: loaded by REST, then kept live from the WebSocket with
 * the tracking reducer the server itself uses (src/tracking/reducer.ts), so a row is
 * exactly what tracking would say.
 */
import { applyEvent } from '../../src/tracking/reducer.js';
import type { FlowcastEvent } from '../../src/events/types.js';
import type { PipelineStatus } from '../../src/tracking/models.js';

export class RunsStore {
  readonly runs = new Map<string, PipelineStatus>();
  /** Bumped on every change: the view re-renders on it. */
  version = 0;

  /** A status from REST or a snapshot: kept unless what we hold is newer. */
  put(status: PipelineStatus): void {
    const held = this.runs.get(status.run_id);
    if (held !== undefined && held.last_seq >= status.last_seq) return;
    this.runs.set(status.run_id, structuredClone(status));
    this.version++;
  }

  apply(event: FlowcastEvent): void {
    const held = this.runs.get(event.run_id) ?? null;
    const next = applyEvent(held, event);
    if (next === null) return;
    if (next !== held) this.runs.set(event.run_id, next);
    this.version++;
  }

  /** Every run, newest started first. */
  sorted(): PipelineStatus[] {
    return [...this.runs.values()].sort((a, b) => (b.started_at ?? '').localeCompare(a.started_at ?? '') || b.run_id.localeCompare(a.run_id));
  }
}
