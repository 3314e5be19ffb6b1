/**
 * The per-client rate limit of the REST API, SSE and `/metrics`, through
 * `@fastify/rate-limit`. Clients are keyed by `request.ip`, which is the forwarded
 * address when the server's `trustProxy` is set (else every client behind a proxy would
 * share the proxy's bucket).
 */
import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance } from 'fastify';
import { InvalidArgumentError } from '../../core/errors.js';
import { checkKnownKeys, checkObject, checkPositiveNumber, show } from '../../core/validate.js';
import { HttpError, RestErrors } from './common.js';

/** The REST API's per-client rate limit. */
export interface RestRateLimitOptions {
  /** Requests per second a client may make on average. @default 50 */
  requestsPerSecond?: number;
  /** How many requests a client may make at once: the window is `burst / requestsPerSecond` seconds. @default 100 */
  burst?: number;
  /** Clients remembered at once; the least recently seen go first. @default 10000 */
  maxClients?: number;
}

/** A route's `config.rateLimit` for @fastify/rate-limit. */
export interface RouteRateLimit {
  max: number;
  timeWindow: number;
}

/** Checks the option; the route config it means. */
export function routeRateLimit(options: RestRateLimitOptions = {}): RouteRateLimit & { maxClients: number } {
  const o = checkObject(options, 'restRateLimit');
  checkKnownKeys(o, ['requestsPerSecond', 'burst', 'maxClients'], 'restRateLimit');
  const rate = options.requestsPerSecond === undefined ? 50 : checkPositiveNumber(options.requestsPerSecond, 'restRateLimit.requestsPerSecond');
  const burst = options.burst === undefined ? 100 : checkPositiveNumber(options.burst, 'restRateLimit.burst');
  if (!Number.isInteger(burst) || burst < 1) throw new InvalidArgumentError(`restRateLimit.burst must be an integer >= 1, received ${show(options.burst)}`);
  const max = options.maxClients ?? 10_000;
  if (!Number.isInteger(max) || max < 1) throw new InvalidArgumentError(`restRateLimit.maxClients must be an integer >= 1, received ${show(options.maxClients)}`);
  return { max: burst, timeWindow: Math.max(1, Math.round((burst / rate) * 1000)), maxClients: max };
}

/**
 * Registers @fastify/rate-limit for the routes that ask for it (`config.rateLimit`):
 * past the limit a client gets 429 with `Retry-After` and the usual error body.
 */
export function registerRateLimit(app: FastifyInstance, options: RouteRateLimit & { maxClients: number }): void {
  void app.register(rateLimit, {
    global: false,
    cache: options.maxClients,
    keyGenerator: (request) => request.ip,
    errorResponseBuilder: (request, context) =>
      new HttpError(429, RestErrors.RATE_LIMITED, `Too many requests from ${request.ip}: at most ${context.max} per ${Math.round(options.timeWindow / 100) / 10}s; retry in ${Math.ceil(context.ttl / 1000)}s`),
  });
}
