/**
 * Filling a connection's gap in a run from the run's log: a late joiner, an explicit
 * replay (`since`), or a live event that overtook others. Pages are read from the log and
 * sent within the connection's outgoing budget; the live events that arrive meanwhile wait
 * in the cursor's buffer and go out after, in seq order, with no gap and no duplicate.
 */
import type { FlowcastEvent } from '../events/types.js';
import type { EventTransport } from '../transport/transport.js';
import type { Connection, RunCursor } from './connection.js';
import type { HubStats } from './hub-options.js';

/** A replay whose connection stays over its soft limit this long is cut (4008). */
const REPLAY_DRAIN_TIMEOUT_MS = 30_000;
/** Events per log read for a replay whose reader fell behind once. */
const SLOW_READER_PAGE = 256;
/**
 * Longest time, in ms, a fill waits in all for the events missing between the log's end and
 * a live event that overtook them (published, but not yet delivered here). It is woken by
 * each live event of the run, never by a timer; past this bound the missing events are
 * taken as never coming.
 */
const FILL_GAP_WAIT_MS = 1000;

/** What a fill needs of the hub. */
export interface FillHost {
  readonly transport: EventTransport;
  /** Events per log read. */
  readonly page: number;
  readonly stats: HubStats;
  /** `true` when one of the connection's subscriptions wants the event. */
  wants(conn: Connection, event: FlowcastEvent): boolean;
  onError(error: unknown, where: string): void;
}

/**
 * Sends a run's events after `cursor.last` from the log, then the live events that
 * arrived meanwhile, until the connection is level with the live stream. With
 * `replaySince`, this is an explicit replay: it ends with `replay_complete`, and says
 * `replay_incomplete` first when retention trimmed what was asked.
 */
export async function fillRun(host: FillHost, conn: Connection, runId: string, cursor: RunCursor, replaySince: number | undefined): Promise<void> {
  cursor.filling = true;
  let told = false;
  let congested = false;
  let slow = false;
  let gapDeadline = 0;
  try {
    for (;;) {
      // A slow reader: wait until its queue is written, holding no page (the rest is read again from the log).
      if (congested && !(await conn.drained(REPLAY_DRAIN_TIMEOUT_MS))) return;
      if (congested) slow = true;
      congested = false;
      if (conn.cursors.get(runId) !== cursor) return;
      // A reader that could not take a page gets small ones: what waits for it stays small too.
      const limit = slow ? Math.min(host.page, SLOW_READER_PAGE) : host.page;
      const log = await host.transport.read(runId, { since: cursor.last, limit });
      if (conn.state !== 'open' || conn.cursors.get(runId) !== cursor) return;
      if (!log.complete && log.first_seq > cursor.last + 1) {
        if (replaySince !== undefined && !told) {
          conn.sendControl({ type: 'replay_incomplete', run_id: runId, requested_since: replaySince, first_seq: log.first_seq, last_seq: log.last_seq });
          told = true;
        }
        cursor.last = log.first_seq - 1;
      }
      for (const e of log.events) {
        if (e.seq <= cursor.last) continue;
        cursor.last = e.seq;
        if (host.wants(conn, e)) {
          // Counted against the connection's outgoing budget (past its hard limit it is cut, 4008).
          conn.send(Buffer.from(JSON.stringify(e)), e);
          host.stats.replayed++;
          if (conn.state !== 'open') return;
          if (conn.congested) {
            congested = true;
            break;
          }
        }
      }
      if (congested) continue;
      if (log.events.length >= limit && cursor.last < log.last_seq) continue;
      // Read to the log's end: a seq up to last_seq that it lacks is a gap a filter left
      // (docs/events.md), never to come; waiting for it would stall the run for good.
      if (log.last_seq > cursor.last) cursor.last = log.last_seq;
      const buffered = cursor.buffer.sort((a, b) => a.seq - b.seq);
      cursor.buffer = [];
      let gap = false;
      for (let i = 0; i < buffered.length; i++) {
        const e = buffered[i] as FlowcastEvent;
        if (e.seq <= cursor.last) continue;
        if (e.seq > cursor.last + 1) {
          gap = true;
          cursor.buffer = buffered.slice(i);
          break;
        }
        cursor.last = e.seq;
        if (host.wants(conn, e)) {
          conn.send(Buffer.from(JSON.stringify(e)), e);
          host.stats.deliveries++;
        }
      }
      if (!gap) break;
      // A live event overtook others of the run (published, not delivered here yet): wait
      // for the next live event of the run, then read again; past FILL_GAP_WAIT_MS in all,
      // it goes out without what never came.
      if (gapDeadline === 0) gapDeadline = Date.now() + FILL_GAP_WAIT_MS;
      const left = gapDeadline - Date.now();
      if (left <= 0 || !(await nextLiveEvent(cursor, left))) cursor.last = (cursor.buffer[0] as FlowcastEvent).seq - 1;
    }
    cursor.filling = false;
    if (replaySince !== undefined && conn.state === 'open') conn.sendControl({ type: 'replay_complete', run_id: runId, last_seq: cursor.last });
  } catch (error) {
    cursor.filling = false;
    host.onError(error, `replay of run ${runId}`);
  }
}

/** Resolves `true` when the next live event of the cursor's run arrives (a later one, or an overtaken one), `false` after `ms`. */
function nextLiveEvent(cursor: RunCursor, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      cursor.wake = undefined;
      resolve(false);
    }, ms);
    cursor.wake = () => {
      clearTimeout(timer);
      cursor.wake = undefined;
      resolve(true);
    };
  });
}
