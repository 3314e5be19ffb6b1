/**
 * The options of {@link RedisPipelineStorage}, in a file of their own: the tracking
 * manager's public types name them, and this file imports nothing from ioredis, so the
 * types of `flowcast` compile without the Redis packages installed.
 */
/** Options of {@link RedisPipelineStorage}. */
export interface RedisPipelineStorageOptions {
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
