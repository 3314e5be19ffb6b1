/**
 * Liveness and readiness, and what the REST API answers while a dependency is away.
 * `/health` says the process serves HTTP (a supervisor restarts it when not); `/ready`
 * says it can do its work right now (a load balancer sends it no traffic when not).
 * While the broker cannot reach Redis, `/api/*` answers 503 at once instead of waiting
 * on commands that would only be sent after Redis is back.
 */
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import type { BrokerHealth } from '../pipeline/broker.js';
import type { Logger } from '../core/logger.js';
import { RestErrors, sendError, type RestContext } from './rest/common.js';

/** Seconds a client is told to wait (`Retry-After`) while Redis is away: about one reconnect. */
export const UNAVAILABLE_RETRY_AFTER_S = 2;

/** Paths under `/api` that need no dependency: they answer while Redis is away. */
const ALWAYS_ANSWERED = new Set(['/api/openapi.json']);

/** The broker's health (always ready without a broker, or with one that has no `health`). */
export function readiness(ctx: RestContext): BrokerHealth {
  return ctx.broker?.health?.() ?? { ok: true };
}

/** `GET /ready`, and the 503 of `/api/*` while not ready. */
export function registerReadiness(app: FastifyInstance, ctx: RestContext): void {
  app.addHook('onRequest', (request, reply, done) => {
    const path = request.url.split('?')[0] ?? '';
    if (!path.startsWith('/api/') || ALWAYS_ANSWERED.has(path)) return done();
    const health = readiness(ctx);
    if (health.ok) return done();
    void sendError(reply.header('retry-after', String(UNAVAILABLE_RETRY_AFTER_S)), 503, RestErrors.REDIS_UNAVAILABLE, `${health.reason}: try again shortly`);
  });
  app.get('/ready', (_request, reply) => {
    const health = readiness(ctx);
    if (health.ok) return reply.send({ status: 'ready' });
    return reply.code(503).header('retry-after', String(UNAVAILABLE_RETRY_AFTER_S)).send({ status: 'unavailable', reason: health.reason });
  });
  ctx.docs.push({
    method: 'GET',
    url: '/ready',
    tag: 'server',
    summary: 'Readiness: 200 when the server can reach what it depends on (Redis), else 503 with the reason; always open, never needs a token',
    auth: false,
    responses: {
      200: { description: '{ "status": "ready" }' },
      503: { description: '{ "status": "unavailable", "reason": "Redis unreachable (ECONNREFUSED 127.0.0.1:6379)" }' },
    },
  });
}

/**
 * The logger Fastify gets (`loggerInstance`): the server's own, with Fastify's request
 * lines ("incoming request", "request completed", at `info`) moved down to `debug`, so a
 * server at the default level logs problems, not traffic.
 */
export function httpLogger(logger: Logger): FastifyBaseLogger {
  return {
    get level() {
      return logger.level;
    },
    set level(value: string) {
      logger.level = value;
    },
    fatal: logger.fatal.bind(logger),
    error: logger.error.bind(logger),
    warn: logger.warn.bind(logger),
    info: logger.debug.bind(logger),
    debug: logger.debug.bind(logger),
    trace: logger.trace.bind(logger),
    silent: () => undefined,
    child: (bindings: Record<string, unknown>) => httpLogger(logger.child(bindings)),
  } as FastifyBaseLogger;
}
