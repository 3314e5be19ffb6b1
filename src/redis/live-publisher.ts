/**
 * How a {@link RedisPubSubTransport} publishes live events: the events published in one
 * turn of the event loop go out together, in order, in one PUBLISH script call, never
 * before the SUBSCRIBEs asked for before them; a publish a local listener waits for
 * resolves when its event comes back through the subscription (bounded: Pub/Sub may
 * lose it). Events the append scripts published already are remembered, so that they
 * are not sent twice.
 */
import type { Redis } from 'ioredis';
import type { FlowcastEvent } from '../events/types.js';
import type { ChannelMux } from './channel-mux.js';
import { LuaScript, PUBLISH_SCRIPT } from './lua.js';

/** Longest a publish waits for its event to reach this transport's own listeners. */
const ECHO_WAIT_MS = 2000;

const publishScript = new LuaScript(PUBLISH_SCRIPT);

/** The publishing side of one transport. */
export class LivePublisher {
  readonly #redis: Redis;
  readonly #allChannel: string;
  readonly #mux: ChannelMux;
  readonly #onError: (error: unknown, where: string) => void;
  /** Events this transport's append script published already: `publish` sends them no more. */
  readonly #publishedOnAppend = new WeakSet<FlowcastEvent>();
  /** Publishes of this transport waiting for their event to come back to its own listeners. */
  readonly #echoes = new Map<string, () => void>();
  /** Events to publish at the next flush (payload, run channel, pipeline channel each), and the ids awaited among them. */
  #outbox: string[] = [];
  #outboxIds: string[] = [];
  #flushScheduled = false;
  /** The last batch still waiting for pending SUBSCRIBEs, if any. */
  #gate: Promise<void> | null = null;

  /** Publishes on `redis` (the caller's client) to `allChannel` and each event's own channels, after the SUBSCRIBEs pending on `mux`. */
  constructor(redis: Redis, allChannel: string, mux: ChannelMux, onError: (error: unknown, where: string) => void) {
    this.#redis = redis;
    this.#allChannel = allChannel;
    this.#mux = mux;
    this.#onError = onError;
  }

  /** Remembers that an append script published this event already. */
  publishedOnAppend(event: FlowcastEvent): void {
    this.#publishedOnAppend.add(event);
  }

  /** Whether an append script published this event already (asked once: the event is forgotten). */
  takePublished(event: FlowcastEvent): boolean {
    return this.#publishedOnAppend.delete(event);
  }

  /** Queues an event's JSON for its run and pipeline channels (and `*`), sent at the next flush. */
  send(json: string, runCh: string, pipelineCh: string): void {
    this.#outbox.push(json, runCh, pipelineCh);
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /**
   * Resolves when the event just sent (see {@link LivePublisher.send}) comes back through the subscription
   * (at most {@link ECHO_WAIT_MS}, or at once should its batch fail).
   */
  echo(eventId: string): Promise<void> {
    this.#outboxIds.push(eventId);
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

  /** An event came through the subscription: the publish waiting for it resolves. */
  received(eventId: string): void {
    if (this.#echoes.size > 0) this.#echoes.get(eventId)?.();
  }

  /** Sends the events published since the last flush, in one script call. */
  flush(): void {
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
    const send = (): Promise<unknown> => publishScript.run(this.#redis, [], [this.#allChannel, ...batch]);
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

  /** Resolves every publish still waiting for its echo (the transport closes). */
  close(): void {
    for (const done of [...this.#echoes.values()]) done();
  }
}
