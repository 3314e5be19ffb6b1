/**
 * One Redis subscription connection shared by every local listener of a transport: exact
 * channel names, SUBSCRIBE when a channel's first listener comes, UNSUBSCRIBE when its
 * last goes. Never a pattern subscription (a PSUBSCRIBE taxes every PUBLISH of the server).
 *
 * The connection is a `duplicate()` of the caller's client, opened on the first
 * subscription and closed by {@link ChannelMux.close}. After a reconnect it subscribes
 * again to every channel itself (ioredis' own auto-resubscribe is off, so we know when it
 * is done) and then tells the owner, which reads what Pub/Sub lost from the logs.
 */
import type { Redis } from 'ioredis';
import { closeConnection } from './connection-end.js';

/** What a {@link ChannelMux} reports to its owner. */
export interface ChannelMuxHandlers {
  /** A message on a subscribed channel. */
  message(channel: string, payload: string): void;
  /** The connection came back and every channel is subscribed again. */
  resubscribed(): void;
  /** A connection or command error (never thrown: Pub/Sub keeps going). */
  error(error: unknown, where: string): void;
}

/** Reference-counted exact-channel subscriptions over one connection. */
export class ChannelMux {
  readonly #base: Redis;
  readonly #handlers: ChannelMuxHandlers;
  readonly #counts = new Map<string, number>();
  readonly #pending = new Set<Promise<unknown>>();
  #conn: Redis | null = null;
  #readyOnce = false;
  #closed = false;

  constructor(base: Redis, handlers: ChannelMuxHandlers) {
    this.#base = base;
    this.#handlers = handlers;
  }

  /** Channels with at least one listener. */
  get channelCount(): number {
    return this.#counts.size;
  }

  /** The subscription connection, once opened (for tests and diagnostics). */
  get connection(): Redis | null {
    return this.#conn;
  }

  /** Adds a listener's interest in `channel`; the first one subscribes. */
  acquire(channel: string): void {
    if (this.#closed) return;
    const n = this.#counts.get(channel) ?? 0;
    this.#counts.set(channel, n + 1);
    if (n === 0) this.#track(this.#open().subscribe(channel), `subscribing to ${channel}`);
  }

  /** Drops a listener's interest in `channel`; the last one unsubscribes. */
  release(channel: string): void {
    const n = this.#counts.get(channel);
    if (n === undefined) return;
    if (n > 1) {
      this.#counts.set(channel, n - 1);
      return;
    }
    this.#counts.delete(channel);
    if (this.#conn !== null && !this.#closed) this.#track(this.#conn.unsubscribe(channel), `unsubscribing from ${channel}`);
  }

  /** `true` while the connection, once up, is down (reconnecting). */
  get down(): boolean {
    return this.#readyOnce && this.#conn !== null && this.#conn.status !== 'ready';
  }

  /**
   * Resolves once every SUBSCRIBE and UNSUBSCRIBE sent so far was answered (or failed);
   * `undefined` when none is pending, or when the connection was up and is down now (the
   * answer could take as long as the outage: publishers must not wait for it).
   */
  settled(): Promise<void> | undefined {
    if (this.#pending.size === 0 || this.down) return undefined;
    return Promise.all(this.#pending).then(() => undefined);
  }

  #track(command: Promise<unknown>, where: string): void {
    const p = command.then(
      () => undefined,
      (error: unknown) => {
        if (!this.#closed) this.#handlers.error(error, where);
      },
    );
    this.#pending.add(p);
    void p.finally(() => this.#pending.delete(p));
  }

  #open(): Redis {
    if (this.#conn !== null) return this.#conn;
    // No ready check: its INFO would be refused once the connection is in subscriber mode
    // (a SUBSCRIBE queued while it reconnects goes out first), and that failed the
    // subscriptions made during a Redis restart. SUBSCRIBE works while Redis loads its AOF.
    const conn = this.#base.duplicate({ autoResubscribe: false, lazyConnect: false, enableReadyCheck: false, enableAutoPipelining: false });
    this.#conn = conn;
    conn.on('message', (channel: string, payload: string) => this.#handlers.message(channel, payload));
    conn.on('error', (error: unknown) => this.#handlers.error(error, 'subscription connection'));
    conn.on('ready', () => {
      if (!this.#readyOnce) {
        this.#readyOnce = true;
        return;
      }
      this.#resubscribe(conn);
    });
    return conn;
  }

  #resubscribe(conn: Redis): void {
    const channels = [...this.#counts.keys()];
    if (channels.length === 0 || this.#closed) {
      this.#handlers.resubscribed();
      return;
    }
    const p = conn.subscribe(...channels).then(
      () => {
        if (!this.#closed) this.#handlers.resubscribed();
      },
      (error: unknown) => {
        if (!this.#closed) this.#handlers.error(error, 'subscribing again after a reconnect');
      },
    );
    this.#pending.add(p);
    void p.finally(() => this.#pending.delete(p));
  }

  /** Closes the subscription connection (it is ours: we opened it). Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#counts.clear();
    const conn = this.#conn;
    this.#conn = null;
    if (conn === null) return;
    await closeConnection(conn);
  }
}
