/**
 * A real pino logger (flowcast's `createLogger`) whose JSON lines are kept in memory, for
 * tests that check what the library logs.
 */
import { Writable } from 'node:stream';
import { createLogger, type Logger, type LogLevel } from '../../src/core/logger.js';

/** One logged line, parsed. */
export interface LogLine {
  level: number;
  msg: string;
  [field: string]: unknown;
}

/** A logger at `level` and the lines it wrote so far. */
export function captureLogger(level: LogLevel = 'info'): { logger: Logger; lines: LogLine[]; messages: () => string[] } {
  const lines: LogLine[] = [];
  const destination = new Writable({
    write(chunk: Buffer | string, _encoding, done) {
      for (const line of String(chunk).split('\n')) if (line.trim() !== '') lines.push(JSON.parse(line) as LogLine);
      done();
    },
  });
  return { logger: createLogger({ level, destination, pretty: false }), lines, messages: () => lines.map((l) => l.msg) };
}
