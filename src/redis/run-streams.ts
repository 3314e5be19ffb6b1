/**
 * Run streams on Redis (src/transport/run-streams.ts says what they are): per pipeline
 * and for `*`, a stream `<prefix>{runs:<name>}:stream` of run markers whose entry ids are
 * the offsets, trimmed to a bounded length (MAXLEN) and expiring when idle, and a meta
 * hash with the last offset that never expires (offsets never restart within an epoch).
 * One script per marker assigns the offset, appends and publishes it on
 * `<prefix>runs:<name>`; live markers reach listeners over the transport's one
 * subscription connection. Pub/Sub may lose a marker: a reader that sees a gap in the
 * offsets reads the stream (the server hub does).
 */
import type { Redis } from 'ioredis';
import { FlowcastError, ErrorCodes } from '../core/errors.js';
import { InvalidArgumentError } from '../core/errors.js';
import { checkReadOptions, checkStreamName, type RunMarker, type RunMarkerKind, type RunMarkerListener, type RunStreamName, type RunStreamRead, type RunStreams } from '../transport/run-streams.js';
import { runStreamChannel, runStreamKey, runStreamMetaKey } from './keys.js';
import { MARK_RUN_SCRIPT } from './lua.js';

/** What {@link RedisRunStreams} needs of its transport. */
export interface RunStreamsHost {
  redis: Redis;
  keyPrefix: string;
  /** Markers kept per stream. */
  length: number;
  /** Seconds an idle stream lives. */
  ttlSeconds: number;
  /** Interest in a Pub/Sub channel (the transport's one subscription connection). */
  acquire(channel: string): void;
  release(channel: string): void;
  /** The epoch of this Redis's history. */
  epoch(): Promise<string>;
  /** Throws when the transport is closed. */
  checkOpen(what: string): void;
  onListenerError(error: unknown): void;
}

function parseMarker(offset: number, fields: string[]): RunMarker | null {
  const get = (name: string): string | undefined => {
    for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === name) return fields[i + 1];
    return undefined;
  };
  const kind = get('k');
  const runId = get('r');
  const pipelineId = get('p');
  if ((kind !== 'start' && kind !== 'end' && kind !== 'resume') || runId === undefined || pipelineId === undefined || !Number.isSafeInteger(offset)) return null;
  const marker: RunMarker = { offset, kind, run_id: runId, pipeline_id: pipelineId };
  if (kind === 'resume') {
    const seq = Number(get('s'));
    if (!Number.isSafeInteger(seq) || seq < 1) return null;
    marker.seq = seq;
  }
  return marker;
}

/** The run streams of one {@link RedisPubSubTransport}. */
export class RedisRunStreams implements RunStreams {
  readonly #host: RunStreamsHost;
  readonly #listeners = new Map<string, Set<RunMarkerListener>>();

  constructor(host: RunStreamsHost) {
    this.#host = host;
  }

  /** Writes a marker to the run's pipeline stream and to `*` (two slots: two scripts, sent together); `seq`: a `resume` marker's. */
  async mark(kind: RunMarkerKind, pipelineId: string, runId: string, seq?: number): Promise<void> {
    await Promise.all([this.#mark(pipelineId, kind, pipelineId, runId, seq), this.#mark('*', kind, pipelineId, runId, seq)]);
  }

  #mark(name: RunStreamName, kind: RunMarkerKind, pipelineId: string, runId: string, seq: number | undefined): Promise<unknown> {
    const h = this.#host;
    const args: (string | number)[] = [runStreamKey(h.keyPrefix, name), runStreamMetaKey(h.keyPrefix, name), h.length, h.ttlSeconds, runStreamChannel(h.keyPrefix, name), kind, runId, pipelineId];
    if (seq !== undefined) args.push(seq);
    // EVAL, not EVALSHA: a NOSCRIPT retry would go out after the append sent next, and a
    // run's start marker must be written before its first event.
    return h.redis.eval(MARK_RUN_SCRIPT, 2, ...args);
  }

  async read(name: RunStreamName, options: { after?: number; limit?: number } = {}): Promise<RunStreamRead> {
    const h = this.#host;
    h.checkOpen('runs.read');
    checkStreamName(name, 'runs.read(stream)');
    const { after, limit } = checkReadOptions(options);
    const epoch = h.epoch();
    const stream = runStreamKey(h.keyPrefix, name);
    const multi = h.redis.multi().hget(runStreamMetaKey(h.keyPrefix, name), 'n').xrange(stream, '-', '+', 'COUNT', 1);
    const start = `${Math.min(after + 1, Number.MAX_SAFE_INTEGER)}-0`;
    if (limit === undefined) multi.xrange(stream, start, '+');
    else multi.xrange(stream, start, '+', 'COUNT', limit);
    const replies = await multi.exec();
    if (replies === null) throw new FlowcastError(ErrorCodes.CONNECTION_FAILED, `Reading the run stream "${name}" was aborted`);
    for (const [error] of replies) if (error !== null) throw error;
    const [n, head, entries] = replies.map((r) => r[1]) as [string | null, [string, string[]][], [string, string[]][]];
    const last = Number(n ?? 0);
    const markers: RunMarker[] = [];
    for (const [id, fields] of entries) {
      const marker = parseMarker(Number.parseInt(id, 10), fields);
      if (marker !== null) markers.push(marker);
    }
    return { markers, first_offset: head[0] === undefined ? last + 1 : Number.parseInt(head[0][0], 10), last_offset: last, epoch: await epoch };
  }

  subscribe(name: RunStreamName, listener: RunMarkerListener): () => void {
    this.#host.checkOpen('runs.subscribe');
    checkStreamName(name, 'runs.subscribe(stream)');
    if (typeof listener !== 'function') throw new InvalidArgumentError('runs.subscribe(stream, listener): listener must be a function');
    const channel = runStreamChannel(this.#host.keyPrefix, name);
    let set = this.#listeners.get(channel);
    if (set === undefined) {
      set = new Set();
      this.#listeners.set(channel, set);
    }
    if (set.has(listener)) return () => this.#unsubscribe(channel, listener);
    set.add(listener);
    this.#host.acquire(channel);
    let active = true;
    return () => {
      if (!active) return;
      active = false;
      this.#unsubscribe(channel, listener);
    };
  }

  #unsubscribe(channel: string, listener: RunMarkerListener): void {
    const set = this.#listeners.get(channel);
    if (set === undefined || !set.delete(listener)) return;
    this.#host.release(channel);
    if (set.size === 0) this.#listeners.delete(channel);
  }

  /** `true` when `channel` is a run stream's (the transport hands its messages here). */
  handles(channel: string): boolean {
    return this.#listeners.has(channel);
  }

  /** A message on a run stream's channel: `<offset> <kind> <run id> <pipeline id>[ <seq>]`. */
  message(channel: string, payload: string): void {
    const set = this.#listeners.get(channel);
    if (set === undefined) return;
    const [offset, kind, runId, pipelineId, seq] = payload.split(' ');
    const marker = parseMarker(Number(offset), ['k', kind ?? '', 'r', runId ?? '', 'p', pipelineId ?? '', 's', seq ?? '']);
    if (marker === null || runId === undefined || pipelineId === undefined) return;
    for (const listener of set) {
      try {
        listener(marker);
      } catch (error) {
        this.#host.onListenerError(error);
      }
    }
  }

  clear(): void {
    this.#listeners.clear();
  }
}
