/**
 * The cap on a connection's run cursors: a connection that follows runs without end (a
 * subscription to "*" on a busy server) keeps at most {@link CURSORS_MAX} of them, the
 * oldest dropped first (a run whose cursor was dropped is joined again from the log if
 * one of its events comes).
 */
import type { Connection, RunCursor } from './connection.js';

/** Run cursors kept per connection. */
export const CURSORS_MAX = 10_000;

/** Sets the connection's cursor of run `runId`, dropping its oldest cursor past {@link CURSORS_MAX}. */
export function setCursor(conn: Connection, runId: string, cursor: RunCursor): void {
  conn.cursors.set(runId, cursor);
  if (conn.cursors.size > CURSORS_MAX) {
    const oldest = conn.cursors.keys().next().value;
    if (oldest !== undefined && oldest !== runId) conn.cursors.delete(oldest);
  }
}
