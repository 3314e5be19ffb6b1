import { InvalidArgumentError } from '../core/errors.js';
import { checkKnownKeys, checkNonNegativeInt, checkObject, checkPositiveInt, show } from '../core/validate.js';

/** How {@link PipelineMonitor} waits between connection attempts. */
export interface ReconnectOptions {
  /**
   * Upper bound of the first wait, in milliseconds. The bound doubles with each
   * attempt that fails in a row, up to `maxDelayMs`.
   * @default 500
   */
  initialDelayMs?: number;
  /**
   * Largest upper bound of a wait, in milliseconds.
   * @default 15000
   */
  maxDelayMs?: number;
  /**
   * Connection attempts in a row that may fail to open before the monitor gives up
   * (state `closed`, an `error` event, `connect()` rejects). The count restarts at every
   * successful open.
   * @default Infinity
   */
  maxAttempts?: number;
  /**
   * A connection that stays open this long is stable: the next drop waits from
   * `initialDelayMs` again. A server that accepts and then drops at once keeps backing off.
   * @default 5000
   */
  stableAfterMs?: number;
}

/** {@link ReconnectOptions} with every default filled in. */
export type ResolvedReconnectOptions = Required<ReconnectOptions>;

/** The reconnect policy's defaults: exponential backoff with jitter. */
export const RECONNECT_DEFAULTS: ResolvedReconnectOptions = {
  initialDelayMs: 500,
  maxDelayMs: 15_000,
  maxAttempts: Number.POSITIVE_INFINITY,
  stableAfterMs: 5_000,
};

/** Validates reconnect options (`false` turns reconnecting off) and merges the defaults. */
export function resolveReconnect(value: unknown): ResolvedReconnectOptions | false {
  if (value === false) return false;
  if (value === undefined || value === true) return { ...RECONNECT_DEFAULTS };
  checkKnownKeys(checkObject(value, 'reconnect'), Object.keys(RECONNECT_DEFAULTS), 'reconnect');
  const opts = { ...RECONNECT_DEFAULTS, ...(value as ReconnectOptions) };
  checkPositiveInt(opts.initialDelayMs, 'reconnect.initialDelayMs');
  checkPositiveInt(opts.maxDelayMs, 'reconnect.maxDelayMs');
  checkNonNegativeInt(opts.stableAfterMs, 'reconnect.stableAfterMs');
  if (opts.maxDelayMs < opts.initialDelayMs) {
    throw new InvalidArgumentError(`reconnect.maxDelayMs must be >= reconnect.initialDelayMs (${opts.initialDelayMs}), received ${show(opts.maxDelayMs)}`);
  }
  if (opts.maxAttempts !== Number.POSITIVE_INFINITY) checkPositiveInt(opts.maxAttempts, 'reconnect.maxAttempts');
  return opts;
}

/**
 * "Full jitter" exponential backoff (AWS Architecture Blog, "Exponential Backoff and
 * Jitter"): a wait drawn uniformly from `[0, min(maxDelayMs, initialDelayMs * 2^attempt))`.
 * Clients dropped together by a restarting server spread their reconnects over the
 * whole window instead of arriving in waves.
 *
 * @param attempt 0 for the first retry after a drop, 1 for the next, and so on.
 * @param random a source in [0, 1); injectable for tests.
 * @example
 * fullJitterDelay(3, { initialDelayMs: 500, maxDelayMs: 15_000 }) // somewhere in [0, 4000)
 */
export function fullJitterDelay(
  attempt: number,
  options: Pick<ResolvedReconnectOptions, 'initialDelayMs' | 'maxDelayMs'>,
  random: () => number = Math.random,
): number {
  checkNonNegativeInt(attempt, 'attempt');
  // 2^attempt overflows to Infinity long after it passed maxDelayMs: min() still holds.
  const ceiling = Math.min(options.maxDelayMs, options.initialDelayMs * 2 ** attempt);
  return Math.floor(random() * ceiling);
}
