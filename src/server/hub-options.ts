/**
 * What a `Hub` (hub.ts) is built on and what it counts: its options, the source of late
 * joiners' snapshots, and the counters the server exposes on /metrics.
 */
import type { Logger } from '../core/logger.js';
import type { EventTransport } from '../transport/transport.js';
import type { Authenticator } from './auth.js';

/** Where late joiners' snapshots come from (a PipelineTrackingManager fits). */
export interface SnapshotSource {
  /** The tracked status of a run, or `null`. */
  getStatus(id: string): Promise<{ run_id: string; pipeline_id: string; last_seq: number; status: string } | null>;
  /** Tracked runs, newest first. */
  listPipelines(options: { status?: 'RUNNING'; pipelineId?: string; since?: string; limit?: number }): Promise<{ run_id: string; pipeline_id: string; last_seq: number }[]>;
}

/** What a `Hub` (hub.ts) is built on. */
export interface HubOptions {
  /** The event log and live fan-out the hub reads. */
  transport: EventTransport;
  /** Decides which pipelines a connection may read. */
  auth: Authenticator;
  /** Where late joiners' snapshots come from; `null`: none (a late joiner follows live from the log's end). @default null */
  snapshots?: SnapshotSource | null;
  /**
   * Events read from the log per page during a replay. A page is one read: for an ended
   * run of the memory transport that is one parse of its packed log, so one page for a
   * whole default-sized log (10,000 events) keeps a late joiner's replay fast.
   * @default 10000
   */
  replayPage?: number;
  /** Where errors go unless `onError` takes them. @default a pino logger at `info` on stderr */
  logger?: Logger;
  /** Takes the errors the hub meets (a failed replay, a transport that refuses a read) instead of the logger. */
  onError?: (error: unknown, where: string) => void;
}

/** Counters the server exposes on /metrics. */
export interface HubStats {
  /** Live events received from upstream (each once). */
  eventsIn: number;
  /** Live events serialised (once each, for every connection that gets it). */
  serialised: number;
  /** Live events written to connections. */
  deliveries: number;
  /** Events written to connections from the log (late joins, replays, gaps). */
  replayed: number;
}
