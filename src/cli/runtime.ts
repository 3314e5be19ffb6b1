/**
 * What the long-running commands (`serve`, `worker`) share: the options read from the
 * environment too (flags win), waiting a bounded time for Redis at start, and a bounded
 * shutdown.
 */
import { InvalidArgumentError as UsageError, Option, type Command } from 'commander';
import { Redis } from 'ioredis';
import { describeError } from '../core/errors.js';
import { LOG_LEVELS, type LogLevel } from '../core/logger.js';
import { urlWith } from './options.js';

/** Seconds `serve` and `worker` try to reach Redis at start before they exit 1. */
export const DEFAULT_REDIS_CONNECT_TIMEOUT_S = 5;
/** Seconds a stop (SIGINT/SIGTERM) may take before the process exits anyway. */
export const DEFAULT_SHUTDOWN_TIMEOUT_S = 10;

/** A duration in seconds: a number > 0 and <= 3600 (decimals allowed). */
export function seconds(value: string): number {
  const n = Number(value);
  if (!/^\d+(\.\d+)?$/.test(value) || !(n > 0) || n > 3600) throw new UsageError(`expected seconds, a number > 0 and <= 3600, received "${value}"`);
  return n;
}

/** A log level of {@link LOG_LEVELS}. */
export function logLevel(value: string): LogLevel {
  if (!(LOG_LEVELS as readonly string[]).includes(value)) throw new UsageError(`expected one of ${LOG_LEVELS.join(', ')}, received "${value}"`);
  return value as LogLevel;
}

/** `--log-level`, `--redis-connect-timeout` and `--shutdown-timeout`, each with its variable. */
export function addRuntimeOptions(command: Command): Command {
  return command
    .addOption(new Option('--log-level <level>', `lowest level logged: ${LOG_LEVELS.join(', ')} (JSON lines on stderr; readable ones on a terminal)`).env('FLOWCAST_LOG_LEVEL').argParser(logLevel).default('info'))
    .addOption(
      new Option('--redis-connect-timeout <seconds>', 'with Redis: how long to try to reach it at start before exiting 1').env('FLOWCAST_REDIS_CONNECT_TIMEOUT').argParser(seconds).default(DEFAULT_REDIS_CONNECT_TIMEOUT_S),
    )
    .addOption(
      new Option('--shutdown-timeout <seconds>', 'after SIGINT/SIGTERM: how long closing may take before the process exits anyway').env('FLOWCAST_SHUTDOWN_TIMEOUT').argParser(seconds).default(DEFAULT_SHUTDOWN_TIMEOUT_S),
    );
}

/**
 * The Redis URL when `--redis` (or `FLOWCAST_REDIS_URL`, which commander read) was not
 * given: `REDIS_URL` from the environment, checked like the flag. Throws a usage error
 * naming the variable.
 */
export function redisUrlFromEnv(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const raw = env.REDIS_URL;
  if (raw === undefined || raw === '') return undefined;
  try {
    return urlWith(['redis:', 'rediss:'])(raw);
  } catch (error) {
    throw new UsageError(`REDIS_URL: ${error instanceof Error ? error.message : describeError(error)}`);
  }
}

/**
 * Tries to reach Redis (connect and PING) until it answers or `timeoutS` ran out.
 * `null` once it answers, else the last reason (`connect ECONNREFUSED 127.0.0.1:6399`).
 */
export async function waitForRedis(url: string, timeoutS: number, signal?: AbortSignal): Promise<string | null> {
  const deadline = Date.now() + timeoutS * 1000;
  let reason = 'no answer';
  let delay = 100;
  for (;;) {
    const left = deadline - Date.now();
    const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: Math.max(100, Math.min(left, 2000)), enableOfflineQueue: false });
    // The socket's own error (ECONNREFUSED...) says more than connect()'s "Connection is closed".
    let socketError: Error | null = null;
    probe.on('error', (error: Error) => {
      socketError = error;
    });
    try {
      await probe.connect();
      await probe.ping();
      return null;
    } catch (error) {
      reason = (socketError as Error | null)?.message ?? (error instanceof Error ? error.message : describeError(error));
    } finally {
      probe.disconnect();
    }
    const wait = Math.min(delay, deadline - Date.now());
    if (wait <= 0 || signal?.aborted === true) return reason;
    await new Promise((resolve) => setTimeout(resolve, wait));
    delay = Math.min(delay * 2, 1000);
  }
}

/**
 * Bounds a stop: once armed, the process exits after `timeoutS` even if closing hangs
 * (a dependency that is away) or something is still open after closing. Call the
 * returned function once closed: from then on the timer no longer keeps the process
 * alive, it only ends one that something else would keep.
 */
export function armShutdownTimer(timeoutS: number, stderr: NodeJS.WritableStream, name: string): () => void {
  let closed = false;
  const timer = setTimeout(() => {
    if (!closed) {
      stderr.write(`${name}: closing took longer than ${timeoutS} s (--shutdown-timeout); exiting\n`);
      process.exit(1);
    }
    process.exit(typeof process.exitCode === 'number' ? process.exitCode : 0);
  }, timeoutS * 1000);
  return () => {
    closed = true;
    timer.unref();
  };
}

/** The URL without its password, for printing. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    return u.toString();
  } catch {
    return url;
  }
}
