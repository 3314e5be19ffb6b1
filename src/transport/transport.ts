import type { ServerInstanceStatus } from '../core/engine-status.js';
import type { EventDraft, FlowcastEvent } from '../events/types.js';
import type { RunStreams } from './run-streams.js';

/** What a subscriber listens to: one run, one pipeline, or everything. */
export type Channel = { runId: string } | { pipelineId: string } | '*';

/** What `read()` returns from a run's log. */
export interface LogRead {
  /**
   * The events after `since`, in seq order (up to `limit`). Their seqs may have gaps: a
   * log fed through a filter (`setupWebSocketBridge` behind `hooks.addFilter`) holds only
   * the events that passed it, with their run's seqs. A seq up to `last_seq` that the log
   * lacks is never coming: it is no loss.
   */
  events: FlowcastEvent[];
  /**
   * The first seq the log answers for: events before it were trimmed by retention (1
   * unless retention trimmed some; 0 when the log is unknown). A filtered log may lack it.
   */
  first_seq: number;
  /** The last seq the log holds (0 when empty or unknown). */
  last_seq: number;
  /** `false` when retention trimmed events that were asked for (`since + 1 < first_seq`). */
  complete: boolean;
  /** `true` once the run's terminal event is in the log. */
  ended: boolean;
}

/** Receives live events of a subscribed channel. */
export type EventListener = (event: FlowcastEvent) => void;

/**
 * The per-run event log and the live fan-out of events. The engine appends every event
 * here first (which gives it its seq), then publishes it once it is recorded.
 * Implementations: {@link InMemoryTransport} here, Redis in the distributed setup.
 */
export interface EventTransport {
  /**
   * Gives the draft the run's next seq, `v` and `event_id`, and stores it in the run's log.
   * Resolves to `null` when the run's log already holds a terminal event: nothing is
   * ever appended after a run ended, so each run has exactly one terminal event.
   */
  append(draft: EventDraft): Promise<FlowcastEvent | null>;
  /**
   * Optional synchronous form of {@link append} for in-process logs: the engine uses it
   * when present, so that an event gets its seq at the moment it happens.
   */
  appendSync?(draft: EventDraft): FlowcastEvent | null;
  /** Sends a stored event to live subscribers (synchronously when it can: then it returns nothing). */
  publish(event: FlowcastEvent): void | Promise<void>;
  /** Reads a run's log after `since` (default 0: from the start). */
  read(runId: string, options?: { since?: number; limit?: number }): Promise<LogRead>;
  /** Listens to live events of a channel; returns the disposer. */
  subscribe(channel: Channel, listener: EventListener): () => void;
  /**
   * Optional, for transports whose subscriptions take effect later (Redis): resolves once
   * every subscription asked for so far is active, so that what is published next reaches it.
   */
  subscribed?(): Promise<void>;
  /**
   * Optional: stores an event that already has its seq (from another log: the hook
   * bridge, `setupWebSocketBridge()`) under that seq, and publishes it. An event at or
   * below the log's last seq, or after its terminal event, is ignored (so the same event
   * ingested twice, or into the log it came from, changes nothing). Resolves to whether
   * it was new. Seqs may skip (a filter upstream): the log then has gaps.
   */
  ingest?(event: FlowcastEvent): boolean | Promise<boolean>;
  /**
   * Optional: the epoch of this transport's history (run logs and run streams). Seqs and
   * offsets are positions within one epoch: a new epoch (a process restart for the memory
   * transport, a Redis that lost its data) is another history.
   */
  epoch?(): Promise<string>;
  /** Optional: calls `listener` when the epoch changes (the history was lost). Returns the disposer. */
  onEpochChange?(listener: (epoch: string, before: string) => void): () => void;
  /**
   * Optional: the run streams (per pipeline and `*`: the runs that started and ended, at
   * offsets 1, 2, 3…), which a resuming pipeline subscription reads (docs/protocol.md).
   */
  readonly runs?: RunStreams;
  /** Optional: announces a server instance to the others sharing this transport; alive for `ttlMs` after its last announcement. */
  announceInstance?(status: ServerInstanceStatus, ttlMs: number): Promise<void>;
  /** Optional: every server instance whose announcement has not expired. */
  instances?(): Promise<ServerInstanceStatus[]>;
  /** Releases what the transport opened. Idempotent. */
  close(): Promise<void>;
}

/** A transport that takes events with their seq ({@link EventTransport.ingest}): what the hook bridge feeds. */
export type IngestingTransport = EventTransport & { ingest(event: FlowcastEvent): boolean | Promise<boolean> };

/** Key of a channel, for maps. */
export function channelKey(channel: Channel): string {
  if (channel === '*') return '*';
  return 'runId' in channel ? `run:${channel.runId}` : `pipeline:${channel.pipelineId}`;
}
