import type { Redis } from 'ioredis';
import { loggerOf } from '../core/logger.js';
import { logError } from '../core/log-throttle.js';
import { FlowcastError, ErrorCodes, InvalidArgumentError } from '../core/errors.js';
import type { ServerInstanceStatus } from '../core/engine-status.js';
import { checkId, checkKnownKeys, checkObject, checkPositiveInt, show } from '../core/validate.js';
import type { EventDraft, FlowcastEvent } from '../events/types.js';
import type { Channel, EventListener, EventTransport, LogRead } from '../transport/transport.js';
import { DEFAULT_RUN_STREAM_LENGTH, type RunMarkerKind, type RunStreams } from '../transport/run-streams.js';
import { RedisEpoch, type EpochListener } from './epoch.js';
import { RedisRunStreams } from './run-streams.js';
import { readRunLog } from './log-read.js';
import { appendEvent } from './log-append.js';
import { eventJson, finishEvent, type EncodedDraft } from './event-codec.js';
import { DEFAULT_KEY_PREFIX, allChannel, checkKeyPrefix, pipelineChannel, runChannel } from './keys.js';
import { announceInstance, listInstances } from './instances.js';
import { ingestEvent } from './log-ingest.js';
import { ChannelMux } from './channel-mux.js';
import { LiveListeners } from './live-listeners.js';
import { LivePublisher } from './live-publisher.js';
import { KNOWN, checkRedisClient, type RedisPubSubTransportOptions } from './transport-options.js';

export { checkRedisClient, type RedisPubSubTransportOptions } from './transport-options.js';

/** The append scripts' channel arguments when they publish nothing. */
const NO_CHANNELS: readonly string[] = ['', '', ''];

/**
 * The event log and live fan-out on Redis (seed 000 §6.4): every server instance and
 * worker that shares a Redis shares every run's events.
 *
 * - Each run's log is a stream `<prefix>{<run_id>}:log` whose entry ids are the seqs;
 *   a Lua script gives each event the run's next seq atomically, whichever process
 *   appends it, and refuses everything after the terminal event.
 * - Live events go through Pub/Sub on exact channels (`<prefix>ev:run:<id>`,
 *   `<prefix>ev:pipeline:<id>`, `<prefix>ev:all`), one PUBLISH script per event. Each
 *   transport opens ONE subscription connection (a `duplicate()` of the client, on the
 *   first `subscribe`) and multiplexes every local listener over it.
 * - Local listeners get each run's events in seq order, once each, without gaps from
 *   the first event this transport saw of the run: events that cross (two workers
 *   publishing for one run) or that Pub/Sub lost (the subscription connection
 *   reconnected) are read from the run's log (see `RunSequencer`).
 *
 * Where to read on: the append path in log-append.ts (log-ingest.ts for events that
 * have their seq already, log-read.ts for reads), the listeners and their ordered
 * delivery in live-listeners.ts, the batched publishes in live-publisher.ts, the options
 * in transport-options.ts.
 *
 * The caller owns `redis`: `close()` closes only the subscription connection.
 *
 * @example
 * const redis = new Redis('redis://localhost:6379');
 * const transport = new RedisPubSubTransport(redis, { keyPrefix: 'myapp:' });
 * const server = getWebSocketServer({ port: 8765, transport });
 */
export class RedisPubSubTransport implements EventTransport {
  /** The client commands go through (the caller's). */
  readonly redis: Redis;
  /** See {@link RedisPubSubTransportOptions.keyPrefix}. */
  readonly keyPrefix: string;
  /** See {@link RedisPubSubTransportOptions.maxEventsPerRun}. */
  readonly maxEventsPerRun: number;
  /** See {@link RedisPubSubTransportOptions.ttlSeconds}. */
  readonly ttlSeconds: number;
  /** See {@link RedisPubSubTransportOptions.endedTtlSeconds}. */
  readonly endedTtlSeconds: number;
  /** See {@link RedisPubSubTransportOptions.publishOnAppend}. */
  readonly publishOnAppend: boolean;
  readonly #onError: (error: unknown, where: string) => void;
  readonly #mux: ChannelMux;
  readonly #live: LiveListeners;
  readonly #publisher: LivePublisher;
  readonly #allChannel: string;
  readonly #runs: RedisRunStreams;
  readonly #epoch: RedisEpoch;
  /** The run streams: the starts and ends of each pipeline's runs and of every pipeline's (src/redis/run-streams.ts). */
  readonly runs: RunStreams;
  #closed = false;

  constructor(redis: Redis, options: RedisPubSubTransportOptions = {}) {
    this.redis = checkRedisClient(redis, 'RedisPubSubTransport');
    checkKnownKeys(checkObject(options, 'RedisPubSubTransport options'), KNOWN, 'RedisPubSubTransport options');
    this.keyPrefix = checkKeyPrefix(options.keyPrefix ?? DEFAULT_KEY_PREFIX);
    this.maxEventsPerRun = checkPositiveInt(options.maxEventsPerRun ?? 10_000, 'maxEventsPerRun');
    this.ttlSeconds = checkPositiveInt(options.ttlSeconds ?? 7 * 86_400, 'ttlSeconds');
    this.endedTtlSeconds = checkPositiveInt(options.endedTtlSeconds ?? 86_400, 'endedTtlSeconds');
    const trackedRuns = checkPositiveInt(options.trackedRuns ?? 10_000, 'trackedRuns');
    if (options.publishOnAppend !== undefined && typeof options.publishOnAppend !== 'boolean') {
      throw new InvalidArgumentError(`publishOnAppend must be a boolean, received ${show(options.publishOnAppend)}`);
    }
    this.publishOnAppend = options.publishOnAppend ?? true;
    if (options.onListenerError !== undefined && typeof options.onListenerError !== 'function') {
      throw new InvalidArgumentError(`onListenerError must be a function, received ${show(options.onListenerError)}`);
    }
    if (options.onError !== undefined && typeof options.onError !== 'function') {
      throw new InvalidArgumentError(`onError must be a function, received ${show(options.onError)}`);
    }
    const logger = loggerOf(options.logger, 'RedisPubSubTransport options.logger');
    const onListenerError =
      options.onListenerError ?? ((error: unknown, event: FlowcastEvent) => logError(logger, error, `a live event listener on ${event.type} of run ${event.run_id}`));
    this.#onError = options.onError ?? ((error, where) => logError(logger, error, `redis transport: ${where}`));
    this.#allChannel = allChannel(this.keyPrefix);
    this.#mux = new ChannelMux(this.redis, {
      message: (channel, payload) => this.#live.message(channel, payload),
      resubscribed: () => this.#live.resubscribed(),
      error: (error, where) => this.#onError(error, where),
    });
    this.#publisher = new LivePublisher(this.redis, this.#allChannel, this.#mux, (error, where) => this.#onError(error, where));
    this.#live = new LiveListeners(this.#mux, {
      keyPrefix: this.keyPrefix,
      trackedRuns,
      read: (runId, options) => this.read(runId, options),
      other: (channel, payload) => {
        if (this.#runs.handles(channel)) this.#runs.message(channel, payload);
      },
      received: (event) => this.#publisher.received(event.event_id),
      onListenerError,
      onError: (error, where) => this.#onError(error, where),
    });
    this.#runs = new RedisRunStreams({
      redis: this.redis,
      keyPrefix: this.keyPrefix,
      length: checkPositiveInt(options.runStreamLength ?? DEFAULT_RUN_STREAM_LENGTH, 'runStreamLength'),
      ttlSeconds: this.ttlSeconds,
      acquire: (channel) => this.#mux.acquire(channel),
      release: (channel) => this.#mux.release(channel),
      epoch: () => this.#epoch.current(),
      checkOpen: (what) => this.#checkOpen(what),
      onListenerError: (error) => this.#onError(error, 'a run stream listener'),
    });
    this.runs = this.#runs;
    this.#epoch = new RedisEpoch(this.redis, this.keyPrefix, (error) => this.#onError(error, 'redis'));
    // Another history: the seqs followed so far are the old one's (the new logs start at 1 again).
    this.#epoch.onChange(() => this.#live.forgetSeqs());
    // Known from the start, so that a Redis that comes back without its data is noticed (servers and workers alike).
    this.#epoch.watch();
  }

  /** Channels this process is subscribed to (one per channel with a local listener). */
  get subscribedChannels(): number {
    return this.#mux.channelCount;
  }

  /** The subscription connection once opened (diagnostics and tests). */
  get subscriberConnection(): Redis | null {
    return this.#mux.connection;
  }

  /** Appends a draft to its run's log with the run's next seq (see log-append.ts); `null` once the run ended. */
  async append(draft: EventDraft): Promise<FlowcastEvent | null> {
    this.#checkOpen('append');
    return appendEvent(this, draft);
  }

  /**
   * Writes a run's start (before its first event), resume (before its
   * PipelineResumeEvent, at `seq`) or end (after its terminal event) to its pipeline's
   * run stream and to `*`. Used by the append paths (`RedisRunState` too);
   * a failure is reported to `onError`, never thrown: the run goes on without it.
   */
  markRun(kind: RunMarkerKind, pipelineId: string, runId: string, seq?: number): Promise<void> {
    return this.#runs.mark(kind, pipelineId, runId, seq).catch((error: unknown) => this.#onError(error, `writing the ${kind} of run ${runId} to the run streams`));
  }

  /** The epoch of this Redis's history (run logs and run streams), read again after every reconnect. */
  epoch(): Promise<string> {
    this.#checkOpen('epoch');
    return this.#epoch.current();
  }

  /** Calls `listener` when the epoch changes (the Redis lost its data). Returns the disposer. */
  onEpochChange(listener: EpochListener): () => void {
    return this.#epoch.onChange(listener);
  }

  /**
   * The channels the append scripts (this transport's, `RedisRunState`'s) publish an
   * event of the run to as they append it: its run, pipeline and `*` channels, or none.
   *
   * Published where appended (option `publishOnAppend`, and no listener of this
   * transport wants the run's events): one command per append instead of two, and live
   * order is log order. {@link publish} of such an event then sends nothing. Subscribers
   * of other processes may get it before this process's tracking and hooks do (tracking
   * reads of a run catch up from its log).
   *
   * With a listener of this transport on the run, its pipeline or `*`: none. The event
   * is published by {@link publish} as the engine hands it on, after tracking and
   * hooks, and `await publish()` resolves once that listener has it.
   */
  liveChannels(runId: string, pipelineId: string): readonly string[] {
    if (!this.publishOnAppend) return NO_CHANNELS;
    const run = runChannel(this.keyPrefix, runId);
    const pipeline = pipelineChannel(this.keyPrefix, pipelineId);
    return this.#live.listened(run, pipeline) ? NO_CHANNELS : [run, pipeline, this.#allChannel];
  }

  /**
   * An appended event given its seq, as an append script with `channels` (from
   * {@link liveChannels}) left it: published there already ({@link publish} of it then
   * sends nothing), or with its JSON kept for {@link publish}. `RedisRunState` finishes
   * its events here too.
   */
  finishAppended(encoded: EncodedDraft, seq: number, channels: readonly string[]): FlowcastEvent {
    const published = channels[0] !== '';
    const event = finishEvent(encoded, seq, !published);
    if (published) this.#publisher.publishedOnAppend(event);
    return event;
  }

  /**
   * Publishes a stored event to its run, pipeline and `*` channels. The events published
   * in one turn of the event loop go out together, in order, in one script call.
   * Returns nothing when no listener of this transport wants the event (the command is
   * on its way); otherwise a promise that resolves once the event came back through
   * Redis and was handed to them, so `await publish()` means the same as in memory.
   */
  publish(event: FlowcastEvent): void | Promise<void> {
    this.#checkOpen('publish');
    checkObject(event, 'RedisPubSubTransport.publish: event');
    // Published already, by the script that appended it (no listener here wanted it then).
    if (this.#publisher.takePublished(event)) return undefined;
    checkId(event.run_id, 'event.run_id');
    checkId(event.pipeline_id, 'event.pipeline_id');
    const runCh = runChannel(this.keyPrefix, event.run_id);
    const pipelineCh = pipelineChannel(this.keyPrefix, event.pipeline_id);
    this.#publisher.send(eventJson(event), runCh, pipelineCh);
    // Commands of one connection run in the order they are sent: the caller may go on at
    // once (failures go to onError; Pub/Sub is best-effort, the log is the record).
    if (!this.#live.listened(runCh, pipelineCh) || this.#mux.down) return undefined;
    // A listener of this transport wants it: resolve once it came back and was handed on,
    // as the memory transport does synchronously.
    return this.#publisher.echo(event.event_id);
  }

  /** Reads a run's log after `since` (see log-read.ts). */
  read(runId: string, options: { since?: number; limit?: number } = {}): Promise<LogRead> {
    return readRunLog(this.redis, this.keyPrefix, runId, options);
  }

  /** Adds a local listener of a run, a pipeline or `*` (see live-listeners.ts). Returns the disposer. */
  subscribe(channel: Channel, listener: EventListener): () => void {
    this.#checkOpen('subscribe');
    return this.#live.subscribe(channel, listener);
  }

  /**
   * Resolves once every subscription asked for so far is active on Redis (nothing to
   * wait for when none is pending): an event published after that reaches its listener.
   */
  subscribed(): Promise<void> {
    return this.#mux.settled() ?? Promise.resolve();
  }

  /**
   * Stores an event that already has its seq (from another log: the hook bridge) under
   * that seq and publishes it; ignored at or below the log's last seq or after its end.
   * Resolves to whether it was stored. See {@link EventTransport.ingest}.
   */
  ingest(event: FlowcastEvent): Promise<boolean> {
    this.#checkOpen('ingest');
    return ingestEvent(this, event);
  }

  /**
   * Announces this server instance to the others sharing the Redis (for the engine
   * status view); it counts as alive for `ttlMs` after its last announcement.
   */
  async announceInstance(status: ServerInstanceStatus, ttlMs: number): Promise<void> {
    this.#checkOpen('announceInstance');
    await announceInstance(this.redis, this.keyPrefix, status, ttlMs);
  }

  /** Every server instance whose last announcement has not expired. */
  async instances(): Promise<ServerInstanceStatus[]> {
    this.#checkOpen('instances');
    return listInstances(this.redis, this.keyPrefix);
  }

  #checkOpen(what: string): void {
    if (this.#closed) throw new FlowcastError(ErrorCodes.CLOSED, `RedisPubSubTransport is closed (${what})`);
  }

  /** Closes the subscription connection (not the caller's client). Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // What was published goes out (on the caller's client, which stays open).
    this.#publisher.flush();
    this.#live.clear();
    this.#runs.clear();
    this.#epoch.close();
    this.#publisher.close();
    await this.#mux.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
