import { checkChannel, checkListener } from '../transport/checks.js';
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
import { encodeDraft, eventJson, finishEvent, parseEvent, type EncodedDraft } from './event-codec.js';
import { DEFAULT_KEY_PREFIX, allChannel, checkKeyPrefix, pipelineChannel, runChannel, runLogKey, runLogMetaKey } from './keys.js';
import { announceInstance, listInstances } from './instances.js';
import { ingestEvent } from './log-ingest.js';
import { APPEND_SCRIPT, LuaScript, PUBLISH_SCRIPT } from './lua.js';
import { RunSequencer } from './sequencer.js';
import { ChannelMux } from './channel-mux.js';
import { KNOWN, checkRedisClient, type RedisPubSubTransportOptions } from './transport-options.js';

export { checkRedisClient, type RedisPubSubTransportOptions } from './transport-options.js';


/** Longest a publish waits for its event to reach this transport's own listeners. */
const ECHO_WAIT_MS = 2000;

const appendScript = new LuaScript(APPEND_SCRIPT);
/** The append scripts' channel arguments when they publish nothing. */
const NO_CHANNELS: readonly string[] = ['', '', ''];
const publishScript = new LuaScript(PUBLISH_SCRIPT);


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
 * The caller owns `redis`: `close()` closes only the subscription connection.
 *
 * @example
 * const redis = new Redis('redis://localhost:6379');
 * const transport = new RedisPubSubTransport(redis, { keyPrefix: 'myapp:' });
 * const server = getWebSocketServer({ port: 8765, transport });
 */
export class RedisPubSubTransport implements EventTransport {
  /** Events this transport's append script published already: `publish` sends them no more. */
  readonly #publishedOnAppend = new WeakSet<FlowcastEvent>();
  /** The client commands go through (the caller's). */
  readonly redis: Redis;
  readonly keyPrefix: string;
  readonly maxEventsPerRun: number;
  readonly ttlSeconds: number;
  readonly endedTtlSeconds: number;
  /** See {@link RedisPubSubTransportOptions.publishOnAppend}. */
  readonly publishOnAppend: boolean;
  readonly #trackedRuns: number;
  readonly #onListenerError: (error: unknown, event: FlowcastEvent) => void;
  readonly #onError: (error: unknown, where: string) => void;
  readonly #listeners = new Map<string, Set<EventListener>>();
  readonly #mux: ChannelMux;
  readonly #allChannel: string;
  readonly #sequencer: RunSequencer;
  readonly #runs: RedisRunStreams;
  readonly #epoch: RedisEpoch;
  /** The run streams: the starts and ends of each pipeline's runs and of every pipeline's (src/redis/run-streams.ts). */
  readonly runs: RunStreams;
  /** Publishes of this transport waiting for their event to come back to its own listeners. */
  readonly #echoes = new Map<string, () => void>();
  /** Events to publish at the next flush (payload, run channel, pipeline channel each), and the ids awaited among them. */
  #outbox: string[] = [];
  #outboxIds: string[] = [];
  #flushScheduled = false;
  /** The last batch still waiting for pending SUBSCRIBEs, if any. */
  #gate: Promise<void> | null = null;
  #lastRaw: string | null = null;
  #lastParsed: FlowcastEvent | null = null;
  #closed = false;

  constructor(redis: Redis, options: RedisPubSubTransportOptions = {}) {
    this.redis = checkRedisClient(redis, 'RedisPubSubTransport');
    checkKnownKeys(checkObject(options, 'RedisPubSubTransport options'), KNOWN, 'RedisPubSubTransport options');
    this.keyPrefix = checkKeyPrefix(options.keyPrefix ?? DEFAULT_KEY_PREFIX);
    this.maxEventsPerRun = checkPositiveInt(options.maxEventsPerRun ?? 10_000, 'maxEventsPerRun');
    this.ttlSeconds = checkPositiveInt(options.ttlSeconds ?? 7 * 86_400, 'ttlSeconds');
    this.endedTtlSeconds = checkPositiveInt(options.endedTtlSeconds ?? 86_400, 'endedTtlSeconds');
    this.#trackedRuns = checkPositiveInt(options.trackedRuns ?? 10_000, 'trackedRuns');
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
    this.#onListenerError =
      options.onListenerError ?? ((error, event) => logError(logger, error, `a live event listener on ${event.type} of run ${event.run_id}`));
    this.#onError = options.onError ?? ((error, where) => logError(logger, error, `redis transport: ${where}`));
    this.#allChannel = allChannel(this.keyPrefix);
    this.#sequencer = new RunSequencer(
      async (runId, since) => (await this.read(runId, { since })).events,
      (event) => this.#dispatch(event),
      (error, where) => this.#onError(error, where),
      this.#trackedRuns,
    );
    this.#mux = new ChannelMux(this.redis, {
      message: (channel, payload) => this.#onMessage(channel, payload),
      resubscribed: () => {
        this.#sequencer.resync();
        void this.#endedWhileAway();
      },
      error: (error, where) => this.#onError(error, where),
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
    this.#epoch.onChange(() => this.#sequencer.clear());
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

  async append(draft: EventDraft): Promise<FlowcastEvent | null> {
    this.#checkOpen('append');
    const encoded = encodeDraft(draft, 'RedisPubSubTransport.append');
    const keys = [runLogMetaKey(this.keyPrefix, draft.run_id), runLogKey(this.keyPrefix, draft.run_id)];
    const channels = this.liveChannels(draft.run_id, draft.pipeline_id);
    const args = [this.maxEventsPerRun, this.ttlSeconds, this.endedTtlSeconds, ...channels, encoded.head, encoded.terminal ? 1 : 0];
    // A run's start marker goes first (sent before the append, on the same connection).
    const marked = draft.type === 'PipelineStartEvent' ? this.markRun('start', draft.pipeline_id, draft.run_id) : null;
    const seq = Number(await appendScript.run(this.redis, keys, args));
    await marked;
    if (seq !== 0 && encoded.terminal) void this.markRun('end', draft.pipeline_id, draft.run_id);
    return seq === 0 ? null : this.finishAppended(encoded, seq, channels);
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
    const listened = this.#listeners.size > 0 && (this.#listeners.has(run) || this.#listeners.has(pipeline) || this.#listeners.has(this.#allChannel));
    return listened ? NO_CHANNELS : [run, pipeline, this.#allChannel];
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
    if (published) this.#publishedOnAppend.add(event);
    return event;
  }

  /** Resolves when the event with this id comes back through the subscription (bounded, should Pub/Sub lose it). */
  #echo(eventId: string): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        if (this.#echoes.get(eventId) === done) this.#echoes.delete(eventId);
        resolve();
      };
      const timer = setTimeout(done, ECHO_WAIT_MS);
      this.#echoes.set(eventId, done);
    });
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
    if (this.#publishedOnAppend.delete(event)) return undefined;
    checkId(event.run_id, 'event.run_id');
    checkId(event.pipeline_id, 'event.pipeline_id');
    const runCh = runChannel(this.keyPrefix, event.run_id);
    const pipelineCh = pipelineChannel(this.keyPrefix, event.pipeline_id);
    this.#outbox.push(eventJson(event), runCh, pipelineCh);
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      setImmediate(() => this.#flush());
    }
    const local = this.#listeners.has(runCh) || this.#listeners.has(pipelineCh) || this.#listeners.has(this.#allChannel);
    // Commands of one connection run in the order they are sent: the caller may go on at
    // once (failures go to onError; Pub/Sub is best-effort, the log is the record).
    if (!local || this.#mux.down) return undefined;
    // A listener of this transport wants it: resolve once it came back and was handed on,
    // as the memory transport does synchronously.
    this.#outboxIds.push(event.event_id);
    return this.#echo(event.event_id);
  }

  /** Sends the events published since the last flush, in one script call. */
  #flush(): void {
    this.#flushScheduled = false;
    const batch = this.#outbox;
    const ids = this.#outboxIds;
    if (batch.length === 0) return;
    this.#outbox = [];
    this.#outboxIds = [];
    const failed = (error: unknown): void => {
      this.#onError(error, `publishing ${batch.length / 3} event(s)`);
      for (const id of ids) this.#echoes.get(id)?.();
    };
    const send = (): Promise<unknown> => publishScript.run(this.redis, [], [this.#allChannel, ...batch]);
    // A listener added just before must not miss its event: pending SUBSCRIBEs go first,
    // and a batch never overtakes one that waits for them.
    const settled = this.#mux.settled();
    const before = this.#gate;
    if (settled === undefined && before === null) {
      send().catch(failed);
      return;
    }
    const gate: Promise<void> = Promise.all([settled, before])
      .then(send)
      .then(() => undefined, failed)
      .finally(() => {
        if (this.#gate === gate) this.#gate = null;
      });
    this.#gate = gate;
  }

  read(runId: string, options: { since?: number; limit?: number } = {}): Promise<LogRead> {
    return readRunLog(this.redis, this.keyPrefix, runId, options);
  }

  subscribe(channel: Channel, listener: EventListener): () => void {
    this.#checkOpen('subscribe');
    checkListener(listener);
    const name = this.#channelName(channel);
    let set = this.#listeners.get(name);
    if (set === undefined) {
      set = new Set();
      this.#listeners.set(name, set);
    }
    // The same function twice on one channel counts once, as with the memory transport.
    if (set.has(listener)) return () => this.#unsubscribe(name, listener);
    set.add(listener);
    this.#mux.acquire(name);
    let active = true;
    return () => {
      if (!active) return;
      active = false;
      this.#unsubscribe(name, listener);
    };
  }

  /**
   * Resolves once every subscription asked for so far is active on Redis (nothing to
   * wait for when none is pending): an event published after that reaches its listener.
   */
  subscribed(): Promise<void> {
    return this.#mux.settled() ?? Promise.resolve();
  }

  #unsubscribe(name: string, listener: EventListener): void {
    const set = this.#listeners.get(name);
    if (set === undefined || !set.delete(listener)) return;
    this.#mux.release(name);
    if (set.size > 0) return;
    this.#listeners.delete(name);
    const followed = (runId: string, pipelineId: string): boolean =>
      this.#listeners.has(this.#allChannel) || this.#listeners.has(runChannel(this.keyPrefix, runId)) || this.#listeners.has(pipelineChannel(this.keyPrefix, pipelineId));
    const runPrefix = runChannel(this.keyPrefix, '');
    if (name.startsWith(runPrefix)) this.#sequencer.forget(followed, name.slice(runPrefix.length));
    else this.#sequencer.forget(followed);
  }

  #channelName(channel: Channel): string {
    const checked = checkChannel(channel);
    if (checked === '*') return this.#allChannel;
    return 'runId' in checked ? runChannel(this.keyPrefix, checked.runId) : pipelineChannel(this.keyPrefix, checked.pipelineId);
  }

  #onMessage(channel: string, payload: string): void {
    if (!this.#listeners.has(channel)) {
      if (this.#runs.handles(channel)) this.#runs.message(channel, payload);
      return;
    }
    // One event comes on up to three channels in a row: parse it once.
    let event = payload === this.#lastRaw ? this.#lastParsed : null;
    if (event === null) {
      event = parseEvent(payload);
      if (event === null) {
        this.#onError(new Error(`not an event: ${payload.slice(0, 80)}`), `message on ${channel}`);
        return;
      }
      this.#lastRaw = payload;
      this.#lastParsed = event;
    }
    this.#sequencer.push(event);
    if (this.#echoes.size > 0) this.#echoes.get(event.event_id)?.();
  }

  /**
   * After a reconnect, for runs listened to by id of which no event came yet: a run that
   * ended meanwhile gets its terminal event delivered (someone waiting for the end would
   * otherwise wait forever; the server hub fills the rest from the log).
   */
  async #endedWhileAway(): Promise<void> {
    const prefix = runChannel(this.keyPrefix, '');
    for (const name of [...this.#listeners.keys()]) {
      if (this.#closed) return;
      if (!name.startsWith(prefix)) continue;
      const runId = name.slice(prefix.length);
      if (this.#sequencer.has(runId)) continue;
      try {
        const tail = await this.read(runId, { since: Number.MAX_SAFE_INTEGER });
        if (!tail.ended || tail.last_seq === 0 || this.#sequencer.has(runId)) continue;
        const last = await this.read(runId, { since: tail.last_seq - 1 });
        for (const event of last.events) this.#sequencer.push(event);
      } catch (error) {
        this.#onError(error, `reading run ${runId} after a reconnect`);
      }
    }
  }

  /** Hands an event, in its run's order, to every local listener of its run, its pipeline and `*`. */
  #dispatch(event: FlowcastEvent): void {
    const byRun = this.#listeners.get(runChannel(this.keyPrefix, event.run_id));
    if (byRun !== undefined) this.#deliver(byRun, event);
    const byPipeline = this.#listeners.get(pipelineChannel(this.keyPrefix, event.pipeline_id));
    if (byPipeline !== undefined) this.#deliver(byPipeline, event);
    const all = this.#listeners.get(this.#allChannel);
    if (all !== undefined) this.#deliver(all, event);
  }

  #deliver(set: Set<EventListener>, event: FlowcastEvent): void {
    for (const listener of set) {
      try {
        listener(event);
      } catch (error) {
        this.#onListenerError(error, event);
      }
    }
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
    this.#flush();
    this.#listeners.clear();
    this.#sequencer.clear();
    this.#runs.clear();
    this.#epoch.close();
    for (const done of [...this.#echoes.values()]) done();
    await this.#mux.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
