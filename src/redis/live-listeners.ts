/**
 * The local listeners of a {@link RedisPubSubTransport} and the live delivery to them:
 * each listener's exact channel acquired on the shared subscription connection
 * (`ChannelMux`), every message parsed once, put back in its run's seq order by the
 * `RunSequencer` (gaps read from the log), and handed to the listeners of its run, its
 * pipeline and `*`. After a reconnect, what Pub/Sub lost is replayed from the logs.
 */
import { checkChannel, checkListener } from '../transport/checks.js';
import type { FlowcastEvent } from '../events/types.js';
import type { Channel, EventListener, LogRead } from '../transport/transport.js';
import type { ChannelMux } from './channel-mux.js';
import { parseEvent } from './event-codec.js';
import { allChannel, pipelineChannel, runChannel } from './keys.js';
import { RunSequencer } from './sequencer.js';

/** What {@link LiveListeners} needs of its transport. */
export interface LiveListenersHost {
  /** The transport's key prefix (channel names). */
  readonly keyPrefix: string;
  /** Runs the sequencer follows at most (the transport's `trackedRuns`). */
  readonly trackedRuns: number;
  /** Reads a run's log (the transport's `read`). */
  read(runId: string, options: { since: number }): Promise<LogRead>;
  /** A message on a channel no listener of this kind holds (the run streams' channels). */
  other(channel: string, payload: string): void;
  /** An event that came through the subscription (a publish of this transport may wait for it). */
  received(event: FlowcastEvent): void;
  /** A listener threw. */
  onListenerError(error: unknown, event: FlowcastEvent): void;
  /** Anything else that failed (never thrown: live delivery goes on). */
  onError(error: unknown, where: string): void;
}

/** The listeners of one transport by channel name, and the ordered delivery of live events to them. */
export class LiveListeners {
  readonly #host: LiveListenersHost;
  readonly #mux: ChannelMux;
  readonly #listeners = new Map<string, Set<EventListener>>();
  readonly #allChannel: string;
  readonly #sequencer: RunSequencer;
  #lastRaw: string | null = null;
  #lastParsed: FlowcastEvent | null = null;
  #closed = false;

  /** Listeners whose channels are acquired on `mux`; the mux's messages go to {@link message}. */
  constructor(mux: ChannelMux, host: LiveListenersHost) {
    this.#host = host;
    this.#mux = mux;
    this.#allChannel = allChannel(host.keyPrefix);
    this.#sequencer = new RunSequencer(
      async (runId, since) => (await host.read(runId, { since })).events,
      (event) => this.#dispatch(event),
      (error, where) => host.onError(error, where),
      host.trackedRuns,
    );
  }

  /** Adds a listener (the same function twice on one channel counts once). Returns the disposer. */
  subscribe(channel: Channel, listener: EventListener): () => void {
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

  /** Whether a listener holds the run channel, the pipeline channel (names) or `*`. */
  listened(runCh: string, pipelineCh: string): boolean {
    return this.#listeners.size > 0 && (this.#listeners.has(runCh) || this.#listeners.has(pipelineCh) || this.#listeners.has(this.#allChannel));
  }

  /** A message of the subscription connection. */
  message(channel: string, payload: string): void {
    if (!this.#listeners.has(channel)) {
      this.#host.other(channel, payload);
      return;
    }
    // One event comes on up to three channels in a row: parse it once.
    let event = payload === this.#lastRaw ? this.#lastParsed : null;
    if (event === null) {
      event = parseEvent(payload);
      if (event === null) {
        this.#host.onError(new Error(`not an event: ${payload.slice(0, 80)}`), `message on ${channel}`);
        return;
      }
      this.#lastRaw = payload;
      this.#lastParsed = event;
    }
    this.#sequencer.push(event);
    this.#host.received(event);
  }

  /** The subscription connection came back: every followed run is read from its log again. */
  resubscribed(): void {
    this.#sequencer.resync();
    void this.#endedWhileAway();
  }

  /** Another history began (the Redis lost its data): the seqs followed so far are the old one's. */
  forgetSeqs(): void {
    this.#sequencer.clear();
  }

  /** Drops every listener and cursor, for good (the transport closes). */
  clear(): void {
    this.#closed = true;
    this.#listeners.clear();
    this.#sequencer.clear();
  }

  #unsubscribe(name: string, listener: EventListener): void {
    const set = this.#listeners.get(name);
    if (set === undefined || !set.delete(listener)) return;
    this.#mux.release(name);
    if (set.size > 0) return;
    this.#listeners.delete(name);
    const prefix = this.#host.keyPrefix;
    const followed = (runId: string, pipelineId: string): boolean =>
      this.#listeners.has(this.#allChannel) || this.#listeners.has(runChannel(prefix, runId)) || this.#listeners.has(pipelineChannel(prefix, pipelineId));
    const runPrefix = runChannel(prefix, '');
    if (name.startsWith(runPrefix)) this.#sequencer.forget(followed, name.slice(runPrefix.length));
    else this.#sequencer.forget(followed);
  }

  #channelName(channel: Channel): string {
    const checked = checkChannel(channel);
    if (checked === '*') return this.#allChannel;
    const prefix = this.#host.keyPrefix;
    return 'runId' in checked ? runChannel(prefix, checked.runId) : pipelineChannel(prefix, checked.pipelineId);
  }

  /**
   * After a reconnect, for runs listened to by id of which no event came yet: a run that
   * ended meanwhile gets its terminal event delivered (someone waiting for the end would
   * otherwise wait forever; the server hub fills the rest from the log).
   */
  async #endedWhileAway(): Promise<void> {
    const prefix = runChannel(this.#host.keyPrefix, '');
    for (const name of [...this.#listeners.keys()]) {
      if (this.#closed) return;
      if (!name.startsWith(prefix)) continue;
      const runId = name.slice(prefix.length);
      if (this.#sequencer.has(runId)) continue;
      try {
        const tail = await this.#host.read(runId, { since: Number.MAX_SAFE_INTEGER });
        if (!tail.ended || tail.last_seq === 0 || this.#sequencer.has(runId)) continue;
        const last = await this.#host.read(runId, { since: tail.last_seq - 1 });
        for (const event of last.events) this.#sequencer.push(event);
      } catch (error) {
        this.#host.onError(error, `reading run ${runId} after a reconnect`);
      }
    }
  }

  /** Hands an event, in its run's order, to every local listener of its run, its pipeline and `*`. */
  #dispatch(event: FlowcastEvent): void {
    const prefix = this.#host.keyPrefix;
    const byRun = this.#listeners.get(runChannel(prefix, event.run_id));
    if (byRun !== undefined) this.#deliver(byRun, event);
    const byPipeline = this.#listeners.get(pipelineChannel(prefix, event.pipeline_id));
    if (byPipeline !== undefined) this.#deliver(byPipeline, event);
    const all = this.#listeners.get(this.#allChannel);
    if (all !== undefined) this.#deliver(all, event);
  }

  #deliver(set: Set<EventListener>, event: FlowcastEvent): void {
    for (const listener of set) {
      try {
        listener(event);
      } catch (error) {
        this.#host.onListenerError(error, event);
      }
    }
  }
}
