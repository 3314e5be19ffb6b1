/**
 * Rate limit for connection errors in the log. While Redis is away, every connection
 * of a process fails again on each reconnect attempt; logged one by one that is dozens
 * of identical lines a second. Here the first failure of a kind is logged, the next ones
 * are counted, and one summary line per interval says how many there were. Other errors
 * pass through unchanged.
 */
import { ErrorCodes, FlowcastError, describeError } from './errors.js';
import type { Logger } from './logger.js';

/** Codes of errors that mean "the server cannot be reached" rather than "the command failed". */
const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE', 'ECONNABORTED']);

/**
 * How often a summary of repeated connection errors is written, in milliseconds.
 * @default 10000
 */
export const CONNECTION_LOG_INTERVAL_MS = 10_000;

/** `ECONNREFUSED 127.0.0.1:6399` for a connection error, `null` for any other error. */
export function connectionFailure(error: unknown): string | null {
  if (typeof error !== 'object' || error === null) return null;
  const e = error as { code?: unknown; address?: unknown; port?: unknown; message?: unknown; errors?: unknown };
  if (typeof e.code === 'string' && CONNECTION_CODES.has(e.code)) {
    const where = typeof e.address === 'string' ? ` ${e.address}${typeof e.port === 'number' ? `:${e.port}` : ''}` : '';
    return `${e.code}${where}`;
  }
  // Node's happy-eyeballs: every address failed.
  if (Array.isArray(e.errors) && e.errors.length > 0) return connectionFailure(e.errors[0]);
  if (typeof e.message === 'string' && /^(Connection is closed|connect ETIMEDOUT|Stream isn't writeable)/.test(e.message)) return e.message;
  return null;
}

interface Pending {
  first: string;
  count: number;
}

/** Per logger: the kinds of connection failures seen, and their counts since the last line. */
class ConnectionLog {
  readonly #logger: Logger;
  readonly #intervalMs: number;
  readonly #seen = new Map<string, Pending>();
  #timer: NodeJS.Timeout | null = null;

  constructor(logger: Logger, intervalMs: number) {
    this.#logger = logger;
    this.#intervalMs = intervalMs;
  }

  /** Set by {@link stopWithoutRedis}: the consequences of that stop are not logged any more. */
  stopped = false;

  report(failure: string, where: string): void {
    if (this.stopped) return;
    const pending = this.#seen.get(failure);
    if (pending !== undefined) {
      pending.count++;
      return;
    }
    this.#seen.set(failure, { first: where, count: 0 });
    this.#logger.error({ failure, where }, `Redis unreachable (${failure})`);
    this.#timer ??= setInterval(() => this.#flush(), this.#intervalMs).unref();
  }

  /** The one line of a stop while Redis is away; from then on this log is quiet. */
  stopWithoutRedis(what: string, reason: string): void {
    if (this.stopped) return;
    this.stopped = true;
    this.#stop();
    this.#logger.warn(
      { failure: reason, where: what },
      `${what}: closing without Redis (${reason}): what this process had not written to it yet is dropped; runs and queued jobs stay in Redis, and a step this process was running is retried elsewhere once Redis is back (BullMQ stalled-job recovery)`,
    );
  }

  /** A connection is back: the next failure is news again. */
  recovered(what: string): void {
    if (this.stopped || this.#seen.size === 0) return;
    this.#flush();
    this.#seen.clear();
    this.#stop();
    this.#logger.info({ where: what }, 'Redis reachable again');
  }

  #flush(): void {
    let quiet = true;
    for (const [failure, pending] of this.#seen) {
      if (pending.count === 0) continue;
      quiet = false;
      this.#logger.error({ failure, repeated: pending.count }, `Redis unreachable (${failure}), ${pending.count} more in the last ${Math.round(this.#intervalMs / 1000)} s`);
      pending.count = 0;
    }
    // Nothing new for a whole interval: stop the timer until the next failure.
    if (quiet) this.#stop();
  }

  #stop(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }
}

const logs = new WeakMap<Logger, ConnectionLog>();

function connectionLog(logger: Logger): ConnectionLog {
  let log = logs.get(logger);
  if (log === undefined) {
    log = new ConnectionLog(logger, CONNECTION_LOG_INTERVAL_MS);
    logs.set(logger, log);
  }
  return log;
}

/**
 * Logs `error` at `error` level with `where` (what failed); a connection error
 * (ECONNREFUSED and the like) only the first time, then as a count every
 * {@link CONNECTION_LOG_INTERVAL_MS}. Components that share a logger share the count.
 *
 * @example
 * redis.on('error', (error) => logError(logger, error, 'broker connection'));
 */
export function logError(logger: Logger, error: unknown, where: string): void {
  const failure = connectionFailure(error);
  if (failure !== null) {
    connectionLog(logger).report(failure, where);
    return;
  }
  // After a stop without Redis, parts that closed refuse what still comes: said already.
  if (error instanceof FlowcastError && error.code === ErrorCodes.CLOSED && logs.get(logger)?.stopped === true) return;
  logger.error({ err: error instanceof Error ? error : new Error(describeError(error)), where }, `${where}: ${describeError(error)}`);
}

/** Says a connection of `logger`'s process works again (logged once, when failures were logged before). */
export function logRecovered(logger: Logger, what: string): void {
  logs.get(logger)?.recovered(what);
}

/**
 * Says in one line (`warn`) that `what` closes while Redis is unreachable (`reason`,
 * e.g. `ECONNREFUSED 127.0.0.1:6379`) and drops what it had not written there yet. From
 * then on {@link logError} on this logger is quiet about what follows from that stop:
 * connection failures, and parts refusing work because they closed (`FLOWCAST_ERR_CLOSED`).
 * Once per logger; later calls do nothing.
 *
 * @example
 * if (!broker.health().ok) logStopWithoutRedis(logger, 'bullmq broker', 'ECONNREFUSED 127.0.0.1:6379');
 */
export function logStopWithoutRedis(logger: Logger, what: string, reason: string): void {
  connectionLog(logger).stopWithoutRedis(what, reason);
}
