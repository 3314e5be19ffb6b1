/**
 * What a subscription gets before the live events: its late join. A run subscription gets
 * the run's snapshot (or, with `since`, the replay of what it missed); a pipeline or "*"
 * subscription gets a snapshot of each running run, and with `started_since` the replay of
 * every run started while the client was away. Each joined run is then brought level with
 * its log (`run-fill.ts`) before its live events resume.
 */
import type { EventTransport } from '../transport/transport.js';
import type { Connection, RunCursor } from './connection.js';
import { setCursor } from './cursor-limit.js';
import type { SnapshotSource } from './hub-options.js';

/** At most this many runs are replayed for a resuming pipeline subscription (`started_since`). */
const RESUME_RUNS_MAX = 1000;
/** Runs brought level with their log at once after a pipeline subscription's snapshots. */
const SNAPSHOT_FILLS_AT_ONCE = 16;

/** What a late join needs of the hub. */
export interface JoinHost {
  readonly transport: EventTransport;
  readonly snapshots: SnapshotSource | null;
  /** May this connection read this pipeline's events? */
  canRead(conn: Connection, pipelineId: string): boolean;
  /** Sends a run's missed events from the log (see `fillRun`). */
  fill(conn: Connection, runId: string, cursor: RunCursor, replaySince: number | undefined): Promise<void>;
}

/** The late join of a pipeline subscription (`pipelineId` `undefined`: "*"): snapshots of its running runs, each then filled from its log. */
export async function joinPipeline(host: JoinHost, conn: Connection, pipelineId: string | undefined, startedSince: string | undefined): Promise<void> {
  if (host.snapshots === null) return;
  if (startedSince !== undefined) await replayStartedSince(host, conn, pipelineId, startedSince);
  const query: { status: 'RUNNING'; pipelineId?: string; limit: number } = { status: 'RUNNING', limit: 1000 };
  if (pipelineId !== undefined) query.pipelineId = pipelineId;
  const running = await host.snapshots.listPipelines(query);
  // A listed status may be behind its run's log (tracking that coalesces writes, see
  // docs/tracking.md): after its snapshot, each run is brought level with its log, so
  // events published before this subscription and not in the snapshot still arrive.
  const fills: (() => Promise<void>)[] = [];
  for (const status of running) {
    if (conn.state !== 'open') return;
    if (!host.canRead(conn, status.pipeline_id) || conn.cursors.has(status.run_id)) continue;
    const cursor: RunCursor = { last: status.last_seq, filling: true, buffer: [] };
    setCursor(conn, status.run_id, cursor);
    conn.sendControl({ type: 'snapshot', pipeline_id: status.pipeline_id, run_id: status.run_id, last_seq: status.last_seq, status });
    fills.push(() => host.fill(conn, status.run_id, cursor, undefined));
  }
  // A few reads at a time: a subscription to "*" may meet a thousand running runs.
  for (let i = 0; i < fills.length; i += SNAPSHOT_FILLS_AT_ONCE) {
    if (conn.state !== 'open') return;
    await Promise.all(fills.slice(i, i + SNAPSHOT_FILLS_AT_ONCE).map((fill) => fill()));
  }
}

/**
 * A resuming client's pipeline subscription: every run started since `since` that this
 * connection has no cursor for is replayed from its first event (a run the client saw
 * before has a cursor from its resume message, sent before this one). So a run that
 * began and ended while the client was away reaches it too.
 */
async function replayStartedSince(host: JoinHost, conn: Connection, pipelineId: string | undefined, since: string): Promise<void> {
  const query: { pipelineId?: string; since: string; limit: number } = { since, limit: RESUME_RUNS_MAX };
  if (pipelineId !== undefined) query.pipelineId = pipelineId;
  const runs = await (host.snapshots as SnapshotSource).listPipelines(query);
  // Oldest first, so that the client gets runs in the order they started.
  for (const run of runs.reverse()) {
    if (conn.state !== 'open') return;
    if (!host.canRead(conn, run.pipeline_id) || conn.cursors.has(run.run_id)) continue;
    const cursor: RunCursor = { last: 0, filling: true, buffer: [] };
    setCursor(conn, run.run_id, cursor);
    await host.fill(conn, run.run_id, cursor, undefined);
  }
}

/** The late join of a run subscription: with `since`, the replay of what the client missed; else the run's snapshot, or live from the log's end. */
export async function joinRun(host: JoinHost, conn: Connection, runId: string, since: number | undefined, epoch: string | undefined): Promise<void> {
  if (since !== undefined) {
    const cursor: RunCursor = { last: since, filling: true, buffer: [] };
    const previous = conn.cursors.get(runId);
    if (previous?.filling === true) cursor.buffer = previous.buffer;
    setCursor(conn, runId, cursor);
    // Even replay_complete would tell a reader of another pipeline how far this run got.
    const head = await host.transport.read(runId, { since: 0, limit: 1 });
    const now = epoch === undefined ? undefined : await host.transport.epoch?.();
    if (conn.state !== 'open' || conn.cursors.get(runId) !== cursor) return;
    const owner = head.events[0]?.pipeline_id;
    if (owner !== undefined && !host.canRead(conn, owner)) return asUnknownRun(conn, runId, since, now !== undefined && now !== epoch ? now : undefined);
    if (now !== undefined && now !== epoch) {
      // Another history (a Redis that lost its data): the seqs the client holds are not this log's.
      conn.sendControl({ type: 'replay_incomplete', run_id: runId, requested_since: since, first_seq: head.first_seq, last_seq: head.last_seq, epoch: now, reason: 'epoch' });
      cursor.last = 0;
      await host.fill(conn, runId, cursor, 0);
      return;
    }
    await host.fill(conn, runId, cursor, since);
    return;
  }
  if (conn.cursors.has(runId)) return;
  const status = host.snapshots === null ? null : await host.snapshots.getStatus(runId);
  if (conn.state !== 'open' || conn.cursors.has(runId)) return;
  if (status !== null && status.run_id === runId) {
    if (!host.canRead(conn, status.pipeline_id)) return asUnknownRun(conn, runId, undefined, undefined);
    const cursor: RunCursor = { last: status.last_seq, filling: true, buffer: [] };
    setCursor(conn, runId, cursor);
    conn.sendControl({ type: 'snapshot', pipeline_id: status.pipeline_id, run_id: runId, last_seq: status.last_seq, status });
    // Level with the log, in case the snapshot is behind it (see #joinPipeline).
    await host.fill(conn, runId, cursor, undefined);
    return;
  }
  // No snapshot to give: follow live from the log's current end.
  const log = await host.transport.read(runId, { since: Number.MAX_SAFE_INTEGER });
  if (conn.state !== 'open' || conn.cursors.has(runId)) return;
  setCursor(conn, runId, { last: log.last_seq, filling: false, buffer: [] });
}

/**
 * A run a positioned subscription announced: followed after seq `after` (0: from its
 * first event; a resumed run: from its PipelineResumeEvent), `replay`: it may be under
 * way, its log first. A run followed already keeps its cursor, except one held for this
 * very announcement (its first live event came first, nothing sent yet): a resumed run
 * then starts at its resume, not at seq 1 again.
 */
export function followAnnounced(host: JoinHost, conn: Connection, runId: string, replay: boolean, after: number): Promise<void> | undefined {
  const held = conn.cursors.get(runId);
  if (held !== undefined) {
    if (held.filling && held.last === 0 && held.awaitsPosition === true) held.last = after;
    return undefined;
  }
  const cursor: RunCursor = { last: after, filling: replay, buffer: [] };
  setCursor(conn, runId, cursor);
  return replay ? host.fill(conn, runId, cursor, undefined) : undefined;
}

/**
 * A run of a pipeline this connection may not read answers exactly as a run that does
 * not exist (docs/security.md): `subscribed`, and with `since` a `replay_complete` at the
 * client's own seq (or the reset answer of another epoch), then nothing, ever. Its
 * events are never sent (every delivery checks the right to read); the cursor only
 * spares the hub from filling a run it would not send.
 */
function asUnknownRun(conn: Connection, runId: string, since: number | undefined, newEpoch: string | undefined): void {
  setCursor(conn, runId, { last: Number.MAX_SAFE_INTEGER, filling: false, buffer: [] });
  if (since === undefined) return;
  if (newEpoch !== undefined) {
    conn.sendControl({ type: 'replay_incomplete', run_id: runId, requested_since: since, first_seq: 0, last_seq: 0, epoch: newEpoch, reason: 'epoch' });
    conn.sendControl({ type: 'replay_complete', run_id: runId, last_seq: 0 });
    return;
  }
  conn.sendControl({ type: 'replay_complete', run_id: runId, last_seq: since });
}
