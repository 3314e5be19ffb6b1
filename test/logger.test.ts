/**
 * The library's logger: pino JSON lines, a user's own logger taken by the server (with
 * Fastify's request lines at debug), connection errors logged once then counted, and
 * options checked.
 */
import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { Writable } from 'node:stream';
import { createLogger, InvalidArgumentError } from '../src/index.js';
import { getWebSocketServer } from '../src/server/index.js';
import { logError, logRecovered } from '../src/core/log-throttle.js';
import { captureLogger } from './helpers/logger.js';

function refused(port: number): Error {
  return Object.assign(new Error(`connect ECONNREFUSED 127.0.0.1:${port}`), { code: 'ECONNREFUSED', address: '127.0.0.1', port });
}

describe('createLogger', () => {
  it('writes JSON lines at the level asked for, and refuses an unknown level', () => {
    const out: string[] = [];
    const destination = new Writable({
      write(chunk: Buffer, _e, done) {
        out.push(String(chunk));
        done();
      },
    });
    const logger = createLogger({ level: 'warn', destination });
    logger.info('not written');
    logger.warn({ run_id: 'r1' }, 'written');
    expect(out).toHaveLength(1);
    expect(JSON.parse(out[0] as string)).toMatchObject({ level: 40, msg: 'written', run_id: 'r1', name: 'flowcast' });
    expect(() => createLogger({ level: 'loud' as 'info' })).toThrow(InvalidArgumentError);
  });
});

describe('logError', () => {
  it('logs a connection error once, counts the repeats, and says when Redis is back', () => {
    const log = captureLogger();
    for (let i = 0; i < 50; i++) logError(log.logger, refused(6399), i % 2 === 0 ? 'broker connection' : 'bullmq connection');
    expect(log.messages()).toEqual(['Redis unreachable (ECONNREFUSED 127.0.0.1:6399)']);
    logRecovered(log.logger, 'broker connection');
    expect(log.lines.map((l) => [l.level, l.msg])).toEqual([
      [50, 'Redis unreachable (ECONNREFUSED 127.0.0.1:6399)'],
      [50, 'Redis unreachable (ECONNREFUSED 127.0.0.1:6399), 49 more in the last 10 s'],
      [30, 'Redis reachable again'],
    ]);
    // After a recovery, the next failure is news again.
    logError(log.logger, refused(6399), 'broker connection');
    expect(log.lines).toHaveLength(4);
  });

  it('logs every other error as it comes, with its place', () => {
    const log = captureLogger();
    logError(log.logger, new Error('boom'), 'hub: replay of run r1');
    logError(log.logger, new Error('boom'), 'hub: replay of run r1');
    expect(log.lines).toHaveLength(2);
    expect(log.lines[0]).toMatchObject({ level: 50, where: 'hub: replay of run r1', msg: 'hub: replay of run r1: Error: boom' });
  });
});

describe('the server with a logger', () => {
  it("takes a pino instance; Fastify's request lines go to it at debug, so a server at info logs no traffic", async () => {
    const quiet = captureLogger('info');
    const verbose = captureLogger('debug');
    for (const { logger } of [quiet, verbose]) {
      const server = getWebSocketServer({ port: 0, logger, staticDir: false });
      try {
        await server.startServer();
        expect(server.logger).toBe(logger);
        expect((await fetch(`${server.httpUrl}/health`)).status).toBe(200);
        expect((await fetch(`${server.httpUrl}/ready`)).status).toBe(200);
      } finally {
        await server.close();
      }
    }
    expect(quiet.lines).toEqual([]);
    const completed = verbose.lines.filter((l) => l.msg === 'request completed');
    expect(completed.length).toBeGreaterThanOrEqual(2);
    expect(completed[0]).toMatchObject({ level: 20 });
  });

  it('refuses a logger option that is not a logger', () => {
    expect(() => getWebSocketServer({ port: 0, logger: console as unknown as ReturnType<typeof pino> })).toThrow(/logger must be a pino-compatible logger/);
  });
});
