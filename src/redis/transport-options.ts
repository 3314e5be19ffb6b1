/** The options of `RedisPubSubTransport` and the check of the client it is given. */
import type { Redis } from 'ioredis';
import { InvalidArgumentError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { show } from '../core/validate.js';
import type { FlowcastEvent } from '../events/types.js';

/** Options of {@link RedisPubSubTransport}. */
export interface RedisPubSubTransportOptions {
  /**
   * Prefix of every key and channel. Transports, run states, storages and ingestors that
   * work together must share it.
   * @default "flowcast:"
   */
  keyPrefix?: string;
  /**
   * Events kept per run log (older ones are trimmed; readers are told with `complete: false`).
   * @default 10000
   */
  maxEventsPerRun?: number;
  /**
   * Seconds a running run's log (and run state) lives after its last write: refreshed on
   * every write, so only a run silent for this long expires.
   * @default 604800 (7 days)
   */
  ttlSeconds?: number;
  /**
   * Seconds an ended run's log (and run state) is kept after its terminal event.
   * @default 86400 (1 day)
   */
  endedTtlSeconds?: number;
  /**
   * Runs this process follows the seq of (the most recently active ones), to deliver
   * their events in order and read what Pub/Sub lost from their logs.
   * @default 10000
   */
  trackedRuns?: number;
  /**
   * Publish an event from the script that appends it to the run's log (this transport's
   * `append`, `RedisRunState`'s transitions) when no listener of this transport wants
   * the run's events: one command instead of two, and live order is log order; other
   * processes' subscribers may then get an event before this process's tracking and
   * hooks do. `false`: every event is published by `publish`, after tracking and hooks.
   * See {@link RedisPubSubTransport.liveChannels}.
   * @default true
   */
  publishOnAppend?: boolean;
  /**
   * Markers kept per run stream (the starts and ends of a pipeline's runs, and of every
   * pipeline's: what a resuming pipeline subscription reads, docs/protocol.md).
   * @default 10000
   */
  runStreamLength?: number;
  /**
   * Where the transport logs (listener and connection errors, unless `onListenerError` /
   * `onError` take them). A pino-compatible logger.
   * @default a pino logger at `info` on stderr
   */
  logger?: Logger;
  /** Called when a live listener throws. Defaults to the logger. */
  onListenerError?: (error: unknown, event: FlowcastEvent) => void;
  /**
   * Called on subscription connection and catch-up errors, and once with a
   * `FLOWCAST_ERR_DATA_LOST` error when the Redis lost its data (its epoch changed).
   * Defaults to the logger (connection errors rate-limited).
   */
  onError?: (error: unknown, where: string) => void;
}

/** Every option {@link RedisPubSubTransport} takes. */
export const KNOWN = ['keyPrefix', 'maxEventsPerRun', 'ttlSeconds', 'endedTtlSeconds', 'trackedRuns', 'publishOnAppend', 'runStreamLength', 'logger', 'onListenerError', 'onError'] as const;

/** Checks that `redis` looks like an ioredis client. */
export function checkRedisClient(redis: unknown, what: string): Redis {
  const r = redis as Partial<Redis> | null;
  if (typeof r !== 'object' || r === null || typeof r.evalsha !== 'function' || typeof r.duplicate !== 'function') {
    throw new InvalidArgumentError(`${what}: redis must be an ioredis client (new Redis(url)), received ${show(redis)}`);
  }
  // ioredis' own keyPrefix would prefix the keys of scripts and transactions but not
  // Pub/Sub channels: flowcast's `keyPrefix` option does this consistently.
  const ioredisPrefix = (r as { options?: { keyPrefix?: unknown } }).options?.keyPrefix;
  if (typeof ioredisPrefix === 'string' && ioredisPrefix.length > 0) {
    throw new InvalidArgumentError(`${what}: the ioredis client has keyPrefix ${show(ioredisPrefix)}: use flowcast's keyPrefix option instead and a client without one`);
  }
  return redis as Redis;
}
