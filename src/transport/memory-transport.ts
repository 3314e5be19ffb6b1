import { randomUUID } from 'node:crypto';
import { checkLogger, defaultLogger, type Logger } from '../core/logger.js';
import { Fifo } from '../core/fifo.js';
import { FlowcastError, ErrorCodes, describeError } from '../core/errors.js';
import { checkPositiveInt, checkNonNegativeNumber, checkObject, checkKnownKeys } from '../core/validate.js';
import { checkChannel, checkListener, checkReadOptions } from './checks.js';
import { EVENT_SCHEMA_VERSION, isTerminalEvent, type EventDraft, type FlowcastEvent } from '../events/types.js';
import { type Channel, type EventListener, type EventTransport, type LogRead } from './transport.js';
import { packLog, readPacked, type PackedLog } from './packed-log.js';
import { DEFAULT_RUN_STREAM_LENGTH, MemoryRunStreams, type RunStreams } from './run-streams.js';

/** Options of {@link InMemoryTransport}. */
export interface InMemoryTransportOptions {
  /**
   * Events kept per run; older ones are trimmed (readers are told with `complete: false`).
   * @default 10000
   */
  maxEventsPerRun?: number;
  /**
   * Logs of ended runs kept; the oldest ended ones go first. Running runs are never evicted.
   * @default 1000
   */
  maxRuns?: number;
  /**
   * How long the log of an ended run is kept, in milliseconds.
   * @default 3600000 (one hour)
   */
  retentionMs?: number;
  /**
   * Markers kept per run stream (the starts and ends of a pipeline's runs, and of every
   * pipeline's: what a resuming pipeline subscription reads, docs/protocol.md).
   * @default 10000
   */
  runStreamLength?: number;
  /** Called when a live listener throws. Defaults to printing to stderr. */
  onListenerError?: (error: unknown, event: FlowcastEvent) => void;
  /**
   * Where listener failures go unless `onListenerError` takes them. A pino-compatible logger.
   * @default a pino logger at `info` on stderr
   */
  logger?: Logger;
}

interface RunLog {
  pipelineId: string;
  events: FlowcastEvent[];
  /** Index in `events` of the first event still held. */
  head: number;
  /** The held events as JSON chunks once the run ended (see packed-log.ts). */
  packed: PackedLog | null;
  nextSeq: number;
  /** The highest seq retention trimmed (0: none). */
  trimmed: number;
  endedAt: number | null;
}

const KNOWN = ['maxEventsPerRun', 'maxRuns', 'retentionMs', 'runStreamLength', 'logger', 'onListenerError'] as const;

/** The embedded event log and fan-out: one process, bounded memory. */
export class InMemoryTransport implements EventTransport {
  readonly #maxEvents: number;
  readonly #maxRuns: number;
  readonly #retentionMs: number;
  readonly #onListenerError: (error: unknown, event: FlowcastEvent) => void;
  readonly #logs = new Map<string, RunLog>();
  /** Ended runs, oldest first, for eviction. */
  readonly #ended = new Fifo<{ runId: string; endedAt: number }>();
  readonly #all = new Set<EventListener>();
  readonly #byPipeline = new Map<string, Set<EventListener>>();
  readonly #byRun = new Map<string, Set<EventListener>>();
  readonly #runs: MemoryRunStreams;
  #closed = false;

  constructor(options: InMemoryTransportOptions = {}) {
    checkKnownKeys(checkObject(options, 'InMemoryTransport options'), KNOWN, 'InMemoryTransport options');
    this.#maxEvents = checkPositiveInt(options.maxEventsPerRun ?? 10_000, 'maxEventsPerRun');
    this.#maxRuns = checkPositiveInt(options.maxRuns ?? 1000, 'maxRuns');
    this.#retentionMs = checkNonNegativeNumber(options.retentionMs ?? 3_600_000, 'retentionMs');
    const given = options.logger === undefined ? null : checkLogger(options.logger, 'InMemoryTransport options.logger');
    const log = (): Logger => given ?? defaultLogger();
    this.#onListenerError =
      options.onListenerError ??
      ((error, event) => {
        log().error({ err: error, run_id: event.run_id }, `a live event listener threw on ${event.type} of run ${event.run_id}: ${describeError(error)}`);
      });
    this.#runs = new MemoryRunStreams(checkPositiveInt(options.runStreamLength ?? DEFAULT_RUN_STREAM_LENGTH, 'runStreamLength'), (error) => {
      log().error({ err: error }, `a run stream listener threw: ${describeError(error)}`);
    });
  }

  append(draft: EventDraft): Promise<FlowcastEvent | null> {
    return Promise.resolve(this.appendSync(draft));
  }

  /** The synchronous core of {@link append}, for in-process callers. */
  appendSync(draft: EventDraft): FlowcastEvent | null {
    if (this.#closed) throw new FlowcastError(ErrorCodes.CLOSED, 'InMemoryTransport is closed');
    let log = this.#logs.get(draft.run_id);
    if (log === undefined) {
      log = this.#open(draft.run_id, draft.pipeline_id);
    } else if (log.endedAt !== null) {
      return null;
    }
    // A resumed run's marker goes before its PipelineResumeEvent, as a start marker before a first event.
    if (draft.type === 'PipelineResumeEvent') this.#runs.mark('resume', log.pipelineId, draft.run_id, log.nextSeq);
    // The draft is the engine's own object: completing it in place saves a copy per event.
    const event = draft as FlowcastEvent;
    event.v = EVENT_SCHEMA_VERSION;
    event.event_id = randomUUID();
    event.seq = log.nextSeq++;
    this.#hold(log, event);
    if (isTerminalEvent(event)) {
      const now = Date.now();
      log.endedAt = now;
      log.packed = packLog(log.head === 0 ? log.events : log.events.slice(log.head));
      log.events = [];
      log.head = 0;
      this.#ended.push({ runId: draft.run_id, endedAt: now });
      this.#evict(now);
      this.#runs.mark('end', log.pipelineId, draft.run_id);
    }
    return event;
  }

  /**
   * Stores an event that already has its seq (from another log: the hook bridge) and
   * publishes it. Duplicates and events after the run's end are ignored; returns
   * whether the event was new.
   */
  ingest(event: FlowcastEvent): boolean {
    let log = this.#logs.get(event.run_id);
    if (log === undefined) log = this.#open(event.run_id, event.pipeline_id);
    if (log.endedAt !== null || event.seq < log.nextSeq) return false;
    if (event.type === 'PipelineResumeEvent') this.#runs.mark('resume', log.pipelineId, event.run_id, event.seq);
    log.nextSeq = event.seq + 1;
    this.#hold(log, event);
    if (isTerminalEvent(event)) {
      const now = Date.now();
      log.endedAt = now;
      log.packed = packLog(log.head === 0 ? log.events : log.events.slice(log.head));
      log.events = [];
      log.head = 0;
      this.#ended.push({ runId: event.run_id, endedAt: now });
      this.#evict(now);
    }
    this.publish(event);
    if (log.endedAt !== null) this.#runs.mark('end', log.pipelineId, event.run_id);
    return true;
  }

  /**
   * Reopens the log of an ended run (a resume): the next append follows its terminal
   * event with the next seq. `false` when the log is no longer held (evicted). A log
   * that is open already stays as it is (`true`).
   */
  reopenSync(runId: string): boolean {
    const log = this.#logs.get(runId);
    if (log === undefined) return false;
    if (log.endedAt === null) return true;
    if (log.packed !== null) {
      log.events = readPacked(log.packed, log.trimmed, Infinity);
      log.packed = null;
      log.head = 0;
    }
    log.endedAt = null;
    return true;
  }

  /** A run's new log; its start marker comes first, so a pipeline's run stream announces it before any of its events. */
  #open(runId: string, pipelineId: string): RunLog {
    this.#runs.mark('start', pipelineId, runId);
    const log: RunLog = { pipelineId, events: [], head: 0, packed: null, nextSeq: 1, trimmed: 0, endedAt: null };
    this.#logs.set(runId, log);
    return log;
  }

  /** Adds an event to a running log, trimming the oldest past `maxEventsPerRun`. */
  #hold(log: RunLog, event: FlowcastEvent): void {
    log.events.push(event);
    if (log.events.length - log.head > this.#maxEvents) {
      log.trimmed = (log.events[log.head] as FlowcastEvent).seq;
      log.head++;
      if (log.head > 1024 && log.head * 2 > log.events.length) {
        log.events = log.events.slice(log.head);
        log.head = 0;
      }
    }
  }

  publish(event: FlowcastEvent): void {
    if (this.#all.size > 0) this.#deliver(this.#all, event);
    const byPipeline = this.#byPipeline.get(event.pipeline_id);
    if (byPipeline !== undefined) this.#deliver(byPipeline, event);
    const byRun = this.#byRun.get(event.run_id);
    if (byRun !== undefined) this.#deliver(byRun, event);
  }

  #deliver(listeners: Set<EventListener>, event: FlowcastEvent): void {
    for (const listener of listeners) {
      try {
        listener(event);
      } catch (error) {
        this.#onListenerError(error, event);
      }
    }
  }

  read(runId: string, options: { since?: number; limit?: number } = {}): Promise<LogRead> {
    // A bad argument rejects, as with every transport (never a synchronous throw from an async API).
    try {
      return Promise.resolve(this.readSync(runId, options));
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
  }

  /** The synchronous core of {@link read}. */
  readSync(runId: string, options: { since?: number; limit?: number } = {}): LogRead {
    const checked = checkReadOptions(options);
    const since = checked.since;
    const limit = checked.limit ?? Infinity;
    const log = this.#logs.get(runId);
    if (log === undefined) return { events: [], first_seq: 0, last_seq: 0, complete: since === 0, ended: false };
    const firstSeq = log.trimmed + 1;
    if (log.packed !== null) {
      return {
        events: readPacked(log.packed, Math.max(Math.floor(since), firstSeq - 1), limit),
        first_seq: firstSeq,
        last_seq: log.nextSeq - 1,
        complete: since + 1 >= firstSeq,
        ended: true,
      };
    }
    const events = log.events;
    const head = log.head;
    // Seqs may have gaps (a log fed through a filter holds only the events that passed it):
    // the first event after `since` is looked up, not computed.
    let lo = head;
    let hi = events.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((events[mid] as FlowcastEvent).seq <= since) lo = mid + 1;
      else hi = mid;
    }
    return {
      events: events.slice(lo, Math.min(events.length, lo + limit)),
      first_seq: firstSeq,
      last_seq: log.nextSeq - 1,
      complete: since + 1 >= firstSeq,
      ended: log.endedAt !== null,
    };
  }

  subscribe(channel: Channel, listener: EventListener): () => void {
    checkListener(listener);
    checkChannel(channel);
    if (channel === '*') {
      this.#all.add(listener);
      return () => this.#all.delete(listener);
    }
    const [map, key] = 'runId' in channel ? [this.#byRun, channel.runId] : [this.#byPipeline, channel.pipelineId];
    let set = map.get(key);
    if (set === undefined) {
      set = new Set();
      map.set(key, set);
    }
    set.add(listener);
    return () => {
      const current = map.get(key);
      if (current === undefined) return;
      current.delete(listener);
      if (current.size === 0) map.delete(key);
    };
  }

  /** The epoch of this transport's logs and run streams: one per transport (a process restart is a new history). */
  epoch(): Promise<string> {
    return Promise.resolve(this.#runs.epoch);
  }

  /** The run streams: the starts and ends of each pipeline's runs and of every pipeline's. */
  get runs(): RunStreams {
    return this.#runs;
  }

  /** Number of run logs held (running and ended). */
  get size(): number {
    return this.#logs.size;
  }

  #evict(now: number): void {
    for (let first = this.#ended.peek(); first !== undefined; first = this.#ended.peek()) {
      if (this.#ended.size <= this.#maxRuns && now - first.endedAt < this.#retentionMs) break;
      this.#ended.shift();
      // A log reopened since (a resumed run) is not this entry's to evict.
      if (this.#logs.get(first.runId)?.endedAt === first.endedAt) this.#logs.delete(first.runId);
    }
  }

  close(): Promise<void> {
    this.#closed = true;
    this.#all.clear();
    this.#byPipeline.clear();
    this.#byRun.clear();
    this.#runs.clear();
    return Promise.resolve();
  }
}
