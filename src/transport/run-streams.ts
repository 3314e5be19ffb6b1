/**
 * Run streams: per pipeline, and for every pipeline (`*`), the runs that started and
 * ended, in the order their markers were written, each at an offset 1, 2, 3… with no gap.
 * A pipeline subscription resumes from an offset in its stream (docs/protocol.md,
 * "Resuming a pipeline"), as Centrifugo's channels do with offset + epoch: the offset
 * says which runs a client already knows, the epoch which history the offset belongs to.
 *
 * A run's start marker is written before its first event, its end marker after its
 * terminal event: a run with events always has a start marker (unless its writer was
 * stopped between the two), and a run with an end marker has its terminal event logged.
 * A resumed run (docs/pipelines.md, "Retry and resume") gets a `resume` marker before its
 * `PipelineResumeEvent`, carrying that event's seq: a reader that knew the run up to its
 * end follows it again from there, without reading its first attempt twice.
 */
import { randomUUID } from 'node:crypto';
import { InvalidArgumentError } from '../core/errors.js';
import { checkId, checkNonNegativeNumber, checkObject, checkPositiveInt } from '../core/validate.js';

/** One entry of a run stream. */
export interface RunMarker {
  /** Position in its stream: 1, 2, 3… with no gap. */
  offset: number;
  /** The run started (its first event follows), was resumed (its `PipelineResumeEvent` follows, at `seq`) or ended (its terminal event is logged). */
  kind: RunMarkerKind;
  run_id: string;
  pipeline_id: string;
  /** A `resume` marker's: the seq of the run's `PipelineResumeEvent` (absent on `start` and `end`). */
  seq?: number;
}

/** What a run marker says of its run. */
export type RunMarkerKind = 'start' | 'resume' | 'end';

/** What `readRuns()` returns. */
export interface RunStreamRead {
  /** The markers after `after`, in offset order (up to `limit`). */
  markers: RunMarker[];
  /** The first offset the stream still holds (retention trims older markers); `last_offset + 1` when it holds none. */
  first_offset: number;
  /** The last offset given in this stream (0: none yet). */
  last_offset: number;
  /** The history these offsets (and every run log's seqs) belong to: another epoch, another history. */
  epoch: string;
}

/** A run stream: one pipeline's (its id) or every pipeline's (`*`). */
export type RunStreamName = string;

/** Receives the start and end markers of runs in a run stream. */
export type RunMarkerListener = (marker: RunMarker) => void;

/** The run streams of a transport (its `runs`). */
export interface RunStreams {
  /** Reads a run stream (a pipeline id, or `*` for every pipeline) after offset `after` (default 0). */
  read(stream: RunStreamName, options?: { after?: number; limit?: number }): Promise<RunStreamRead>;
  /** Listens to the markers written to a run stream from now on; returns the disposer. */
  subscribe(stream: RunStreamName, listener: RunMarkerListener): () => void;
}

/** Checks a run stream's name: a pipeline id or `*`. */
export function checkStreamName(stream: unknown, what: string): RunStreamName {
  return stream === '*' ? stream : checkId(stream, what);
}

/** Checks the options of {@link RunStreams.read}. */
export function checkReadOptions(options: { after?: number; limit?: number }): { after: number; limit: number | undefined } {
  checkObject(options, 'run stream read options');
  const after = Math.floor(checkNonNegativeNumber(options.after ?? 0, 'after'));
  return { after, limit: options.limit === undefined ? undefined : checkPositiveInt(options.limit, 'limit') };
}

/** Markers kept per run stream when no other bound is given. */
export const DEFAULT_RUN_STREAM_LENGTH = 10_000;

interface Stream {
  markers: RunMarker[];
  head: number;
}

/**
 * The in-process run streams of an {@link InMemoryTransport}: bounded per stream; the
 * offsets of a pipeline never restart while the transport lives (its epoch).
 */
export class MemoryRunStreams implements RunStreams {
  /** This transport's history: a new process, a new epoch. */
  readonly epoch = randomUUID();
  readonly #max: number;
  readonly #streams = new Map<RunStreamName, Stream>();
  readonly #next = new Map<RunStreamName, number>();
  readonly #listeners = new Map<RunStreamName, Set<RunMarkerListener>>();
  readonly #onListenerError: (error: unknown) => void;

  constructor(max: number, onListenerError: (error: unknown) => void) {
    this.#max = max;
    this.#onListenerError = onListenerError;
  }

  /** Writes a marker to the run's pipeline stream and to `*`, and hands each to their listeners (`seq`: a `resume` marker's). */
  mark(kind: RunMarkerKind, pipelineId: string, runId: string, seq?: number): void {
    this.#add(pipelineId, kind, pipelineId, runId, seq);
    this.#add('*', kind, pipelineId, runId, seq);
  }

  #add(name: RunStreamName, kind: RunMarkerKind, pipelineId: string, runId: string, seq: number | undefined): void {
    const offset = (this.#next.get(name) ?? 0) + 1;
    this.#next.set(name, offset);
    let stream = this.#streams.get(name);
    if (stream === undefined) {
      stream = { markers: [], head: 0 };
      this.#streams.set(name, stream);
    }
    const marker: RunMarker = { offset, kind, run_id: runId, pipeline_id: pipelineId };
    if (seq !== undefined) marker.seq = seq;
    stream.markers.push(marker);
    if (stream.markers.length - stream.head > this.#max) {
      stream.head++;
      if (stream.head > 1024 && stream.head * 2 > stream.markers.length) {
        stream.markers = stream.markers.slice(stream.head);
        stream.head = 0;
      }
    }
    const listeners = this.#listeners.get(name);
    if (listeners === undefined) return;
    for (const listener of listeners) {
      try {
        listener(marker);
      } catch (error) {
        this.#onListenerError(error);
      }
    }
  }

  read(stream: RunStreamName, options: { after?: number; limit?: number } = {}): Promise<RunStreamRead> {
    const name = checkStreamName(stream, 'runs.read(stream)');
    const { after, limit } = checkReadOptions(options);
    return Promise.resolve(this.#read(name, after, limit ?? Infinity));
  }

  #read(name: RunStreamName, after: number, limit: number): RunStreamRead {
    const last = this.#next.get(name) ?? 0;
    const stream = this.#streams.get(name);
    const first = stream?.markers[stream.head]?.offset ?? last + 1;
    if (stream === undefined) return { markers: [], first_offset: first, last_offset: last, epoch: this.epoch };
    const from = stream.head + Math.max(0, Math.floor(after) + 1 - first);
    return { markers: stream.markers.slice(from, from + limit), first_offset: first, last_offset: last, epoch: this.epoch };
  }

  subscribe(stream: RunStreamName, listener: RunMarkerListener): () => void {
    const name = checkStreamName(stream, 'runs.subscribe(stream)');
    if (typeof listener !== 'function') throw new InvalidArgumentError('runs.subscribe(stream, listener): listener must be a function');
    let set = this.#listeners.get(name);
    if (set === undefined) {
      set = new Set();
      this.#listeners.set(name, set);
    }
    set.add(listener);
    return () => {
      const current = this.#listeners.get(name);
      if (current === undefined) return;
      current.delete(listener);
      if (current.size === 0) this.#listeners.delete(name);
    };
  }

  clear(): void {
    this.#listeners.clear();
  }
}
