/**
 * The Fastify app under a flowcast server, and the rules every HTTP request passes first:
 * the origin and host rules (403), CORS for the allowed origins, and JSON bodies no deeper
 * than `MAX_JSON_DEPTH`; timeouts and TLS from the resolved limits.
 */
import cors from '@fastify/cors';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Logger } from '../core/logger.js';
import { trustFunction, type HttpGuard } from './http-guard.js';
import { jsonDepth, MAX_JSON_DEPTH, tooDeepMessage } from './json-limits.js';
import type { ResolvedLimits, ServerOptions } from './options.js';
import { httpLogger } from './readiness.js';
import { HttpError, RestErrors, sendError } from './rest/common.js';
import { frameworkErrors } from './routes.js';
import { resolveTls } from './tls.js';

/** The server's Fastify app, its logger `logger`, its limits `limits` (no route yet). */
export function createHttpApp(opts: Readonly<ServerOptions>, limits: Readonly<ResolvedLimits>, logger: Logger): FastifyInstance {
  const app = (Fastify as unknown as (o: object) => FastifyInstance)({
    loggerInstance: httpLogger(logger),
    bodyLimit: 1024 * 1024,
    frameworkErrors,
    // Unknown fields are refused (where a schema says so), never silently dropped.
    ajv: { customOptions: { removeAdditional: false } },
    ...(limits.trustProxy === false ? {} : { trustProxy: trustFunction(limits.trustProxy) }),
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    ...(opts.tls === undefined ? {} : { https: { ...resolveTls(opts.tls), handshakeTimeout: limits.handshakeTimeoutMs || 120_000 } }),
  });
  // Slow headers are a pre-request connection too (slowloris).
  if (limits.handshakeTimeoutMs > 0) app.server.headersTimeout = Math.min(limits.handshakeTimeoutMs, limits.requestTimeoutMs || limits.handshakeTimeoutMs);
  return app;
}

/**
 * What every HTTP request passes first: the origin and host rules (403), CORS for the
 * allowed origins, and JSON bodies no deeper than {@link MAX_JSON_DEPTH}.
 */
export function installHttpRules(app: FastifyInstance, guard: HttpGuard, limits: Readonly<ResolvedLimits>): void {
    app.addHook('onRequest', (request, reply, done) => {
      const refusal = guard.check(request.raw);
      if (refusal === null) return done();
      void sendError(reply, refusal.status, refusal.code, refusal.message);
    });
    if (limits.allowedOrigins.length > 0) {
      void app.register(cors, {
        origin: (origin, callback) => callback(null, origin !== undefined && guard.isAllowedOrigin(origin)),
        methods: ['GET', 'HEAD', 'POST', 'DELETE'],
        allowedHeaders: ['Authorization', 'Content-Type', 'Last-Event-ID'],
        exposedHeaders: ['Retry-After', 'Location'],
        credentials: false,
        maxAge: 600,
        strictPreflight: true,
      });
    }
    const parseJson = app.getDefaultJsonParser('error', 'error');
    app.removeContentTypeParser('application/json');
    app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
      if (jsonDepth(body as string) > MAX_JSON_DEPTH) return done(new HttpError(400, RestErrors.BAD_REQUEST, tooDeepMessage()), undefined);
      void parseJson(request, body as string, done);
    });
  }
