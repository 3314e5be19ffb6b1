/**
 * The epoch of a Redis's event history (keys.ts `epochKey`): a random id stored once. A
 * Redis that restarts without its data (no persistence, a lost volume) comes back
 * without it; the first process to look sets a new one, and every process that knew the
 * old one reports one clear line and tells its listeners (the server closes its clients'
 * connections so that they resume, and get `replay_incomplete`, against the new one).
 *
 * It is read on first use and again after every reconnect of the caller's client (a
 * restart always drops connections); between the drop and that read, `current()` waits
 * for it, so a resume never compares against an epoch from before the drop.
 */
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { ErrorCodes, FlowcastError } from '../core/errors.js';
import { epochKey } from './keys.js';
import { EPOCH_SCRIPT, LuaScript } from './lua.js';

const epochScript = new LuaScript(EPOCH_SCRIPT);
/** Losses already reported by this process (`<prefix>|<old epoch>`): one line each, however many transports saw it. */
const reported = new Set<string>();

/** Told when Redis's epoch changed (it lost its data): the new epoch and the one before. */
export type EpochListener = (epoch: string, before: string) => void;

/** Watches the epoch of one key prefix on one client. */
export class RedisEpoch {
  readonly #redis: Redis;
  readonly #prefix: string;
  readonly #report: (error: Error) => void;
  readonly #listeners = new Set<EpochListener>();
  #known: string | null = null;
  #current: Promise<string> | null = null;
  #watching = false;
  #closed = false;

  /** `report` gets the one error that says the Redis lost its data (a clear line for the logs). */
  constructor(redis: Redis, prefix: string, report: (error: Error) => void) {
    this.#redis = redis;
    this.#prefix = prefix;
    this.#report = report;
  }

  /** Starts watching (idempotent): reads the epoch now and after every reconnect. */
  watch(): void {
    if (this.#watching || this.#closed) return;
    this.#watching = true;
    this.#redis.on('close', this.#dropped);
    this.#redis.on('ready', this.#ready);
    this.current().catch(() => undefined);
  }

  /** The epoch as this Redis holds it now (read again after a reconnect). */
  current(): Promise<string> {
    if (this.#closed) return Promise.reject(new FlowcastError(ErrorCodes.CLOSED, 'RedisPubSubTransport is closed (epoch)'));
    this.watch();
    if (this.#current !== null) return this.#current;
    const p = this.#fetch();
    this.#current = p;
    p.catch(() => {
      if (this.#current === p) this.#current = null;
    });
    return p;
  }

  /** Calls `listener` when the epoch changes. Returns the disposer. */
  onChange(listener: EpochListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  readonly #dropped = (): void => {
    this.#current = null;
  };

  readonly #ready = (): void => {
    this.#current = null;
    this.current().catch(() => undefined);
  };

  async #fetch(): Promise<string> {
    const [epoch] = (await epochScript.run(this.#redis, [epochKey(this.#prefix)], [randomUUID()])) as [string, number];
    const before = this.#known;
    this.#known = epoch;
    if (before !== null && before !== epoch) this.#lost(before, epoch);
    return epoch;
  }

  #lost(before: string, epoch: string): void {
    const key = `${this.#prefix}|${before}`;
    if (!reported.has(key)) {
      reported.add(key);
      const { host, port } = this.#redis.options;
      this.#report(
        new FlowcastError(
          ErrorCodes.DATA_LOST,
          `Redis at ${host ?? '?'}:${port ?? '?'} lost its data (epoch ${before} is gone, now ${epoch}): run logs and run streams start over; clients that resume from before get replay_incomplete`,
        ),
      );
    }
    for (const listener of this.#listeners) {
      try {
        listener(epoch, before);
      } catch (error) {
        this.#report(error instanceof Error ? error : new Error(String(error)));
      }
    }
  }

  /** Stops watching (the caller's client stays open). */
  close(): void {
    this.#closed = true;
    this.#listeners.clear();
    this.#redis.off('close', this.#dropped);
    this.#redis.off('ready', this.#ready);
  }
}
