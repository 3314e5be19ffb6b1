/**
 * The one logger of the library: a small pino-compatible interface, so a user can pass
 * their own pino instance (or anything with the same level methods and `child`), and
 * {@link createLogger} for the default. pino-pretty is loaded only when a terminal
 * reads the output, never by `import 'flowcast'`.
 */
import { createRequire } from 'node:module';
import { pino, type DestinationStream } from 'pino';
import { InvalidArgumentError } from './errors.js';
import { show } from './validate.js';

/** One level method: `log.info('text')` or `log.error({ err, run_id }, 'text')`, as pino takes them. */
export interface LogFn {
  (msg: string): void;
  (obj: object, msg?: string): void;
}

/**
 * What flowcast logs through: pino's level methods and `child`. A pino logger is one;
 * so is Fastify's `app.log`.
 *
 * @example
 * import { pino } from 'pino';
 * const broker = new BullMQBroker({ connection: 'redis://127.0.0.1:6379', logger: pino({ level: 'debug' }) });
 */
export interface Logger {
  /** The lowest level written (`'info'`, `'debug'`, ...). */
  level: string;
  fatal: LogFn;
  error: LogFn;
  warn: LogFn;
  info: LogFn;
  debug: LogFn;
  trace: LogFn;
  /** A logger whose lines carry `bindings` too (e.g. `{ component: 'hub' }`). */
  child(bindings: Record<string, unknown>): Logger;
}

/** The levels, most severe first; `silent` writes nothing. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** A level name of {@link LOG_LEVELS}. */
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Options of {@link createLogger}. */
export interface CreateLoggerOptions {
  /**
   * The lowest level written.
   * @default "info"
   */
  level?: LogLevel;
  /**
   * Readable lines (pino-pretty) instead of JSON lines.
   * @default true when `destination` is a terminal (stderr by default)
   */
  pretty?: boolean;
  /**
   * Where the lines go.
   * @default process.stderr
   */
  destination?: NodeJS.WritableStream;
}

/** Checks a level name; throws `InvalidArgumentError` naming `what` and the value. */
export function checkLogLevel(value: unknown, what = 'level'): LogLevel {
  if (typeof value === 'string' && (LOG_LEVELS as readonly string[]).includes(value)) return value as LogLevel;
  throw new InvalidArgumentError(`${what} must be one of ${LOG_LEVELS.join(', ')}, received ${show(value)}`);
}

/**
 * A pino logger writing JSON lines, or readable lines when its destination is a
 * terminal (pino-pretty, loaded only then).
 *
 * @example
 * const logger = createLogger({ level: 'debug' });
 * logger.info({ port: 8765 }, 'listening');
 */
export function createLogger(options: CreateLoggerOptions = {}): Logger {
  const level = checkLogLevel(options.level ?? 'info', 'createLogger options.level');
  const destination = options.destination ?? process.stderr;
  const pretty = options.pretty ?? (destination as { isTTY?: boolean }).isTTY === true;
  const stream: DestinationStream = pretty ? prettyStream(destination) : destination;
  return pino({ level, base: { name: 'flowcast' } }, stream);
}

/** pino-pretty, required only here (it is the part of logging a server never needs). */
function prettyStream(destination: NodeJS.WritableStream): DestinationStream {
  const require = createRequire(import.meta.url);
  const pretty = require('pino-pretty') as (o: object) => DestinationStream;
  return pretty({ destination, colorize: (destination as { isTTY?: boolean }).isTTY === true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,name', sync: true });
}

let fallback: Logger | null = null;

/** The logger of every component created without one: {@link createLogger} at `info`, made on first use. */
export function defaultLogger(): Logger {
  fallback ??= createLogger();
  return fallback;
}

/** Checks a `logger` option: an object with the level methods and `child`. */
export function checkLogger(value: unknown, what: string): Logger {
  const methods = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'child'] as const;
  if (typeof value === 'object' && value !== null && methods.every((m) => typeof (value as Record<string, unknown>)[m] === 'function')) return value as Logger;
  throw new InvalidArgumentError(`${what} must be a pino-compatible logger (${methods.join(', ')} methods), received ${show(value)}`);
}

/**
 * `options.logger` checked, else the default logger. Components log through it as it is
 * (no child per component), so the rate limit of connection errors is shared by all of a
 * process's components that share a logger.
 */
export function loggerOf(value: unknown, what: string): Logger {
  return value === undefined ? defaultLogger() : checkLogger(value, what);
}
