/**
 * How `PipelineTrackingManager.withAutoStorage(broker)` finds the storage that fits a
 * broker without tracking importing any broker's module: a broker layer (flowcast/redis)
 * registers a provider when it is loaded, and tracking asks the providers in order.
 * Tracking itself only knows the in-memory storage.
 */
import type { TrackingStorage } from './storage.js';

/** What a provider makes for a broker it recognises. */
export interface AutoStorage {
  readonly storage: TrackingStorage;
  /** The `writeDelayMs` the manager uses with it when the user gave none. */
  readonly writeDelayMs: number;
}

/**
 * Makes a shared storage for the brokers it recognises (the Redis provider: any broker
 * with an ioredis client as `broker.redis`). Returns `undefined` for a broker it does not
 * recognise; throws `InvalidArgumentError` for one it recognises but cannot serve.
 */
export type AutoStorageProvider = (broker: Readonly<Record<string, unknown>>, options: AutoStorageOptions) => AutoStorage | undefined;

const providers: AutoStorageProvider[] = [];

/** Adds a provider (once; later calls with the same function do nothing). */
export function registerAutoStorage(provider: AutoStorageProvider): void {
  if (!providers.includes(provider)) providers.push(provider);
}

/** The first provider's storage for `broker`, or `undefined` when none recognises it. */
export function findAutoStorage(broker: Readonly<Record<string, unknown>>, options: AutoStorageOptions): AutoStorage | undefined {
  for (const provider of providers) {
    const made = provider(broker, options);
    if (made !== undefined) return made;
  }
  return undefined;
}

/**
 * Options of the shared storage {@link PipelineTrackingManager.withAutoStorage} picks for a
 * broker with a Redis connection, and of `RedisPipelineStorage` (flowcast/redis), which
 * takes exactly these.
 */
export interface AutoStorageOptions {
  /**
   * Prefix of every key (seed 001 §5.2 `key_prefix`). 1-100 printable characters
   * without spaces or braces. The storage's keys are `<keyPrefix>{<run_id>}:track…` and
   * `<keyPrefix>track:idx:…`.
   * @default "flowcast:"
   */
  keyPrefix?: string;
  /**
   * Seconds a run is kept after its last write (seed 001 §5.2 `ttl_seconds`). Every
   * write refreshes it, so a run that keeps running never expires.
   * @default 604800 (7 days)
   */
  ttlSeconds?: number;
  /**
   * How long events that arrived ahead of a missing seq wait for it before they are
   * applied anyway (the missing event is then ignored if it comes later).
   * @default 10000
   */
  gapTimeoutMs?: number;
  /**
   * At most one full prune pass (removing the index entries of expired runs) per this
   * many ms, started by a write. `0` turns the automatic full pass off (call
   * {@link RedisPipelineStorage.prune}); the pruning on write goes on (see `pruneOnWrite`).
   * @default 60000
   */
  pruneIntervalMs?: number;
  /**
   * Prune the indexes as runs expire, a little on every write that adds index entries
   * (at most 2 entries checked per write and index, in a background step every 16 such
   * writes): the indexes stay about as large as the live runs, also where nothing ever
   * lists the runs. `false`: only the full passes and the readers prune.
   * @default true
   */
  pruneOnWrite?: boolean;
  /** Where failures of the background pruning go. @default console.error */
  onError?: (error: Error) => void;
  /**
   * Every run this storage records has its events in its event log under the same
   * `keyPrefix` (the storage shares a Redis broker's prefix: `withAutoStorage` sets this).
   * A run's start is then recorded by its index entries alone (one light script call, no
   * status JSON): the run is listed at once, and reads build its status from its log
   * until the first write of a later event stores it (a worker's, usually at the run's end).
   * @default false
   */
  logBacked?: boolean;
}

