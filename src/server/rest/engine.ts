import type { FastifyInstance } from 'fastify';
import { route, type RestContext } from './common.js';
import { ErrorBody } from './schemas.js';

/**
 * `GET /api/engine`: workers, queue depths, this server's clients and event rate, and the
 * server instances (seed 002's engine status). The same body is pushed as
 * `engine_status` to WebSocket clients subscribed to the `engine` channel.
 */
export function registerEngineRoutes(app: FastifyInstance, ctx: RestContext): void {
  route(
    app,
    ctx,
    {
      method: 'GET',
      url: '/api/engine',
      tag: 'server',
      summary: 'Engine status: workers, queues, clients, events per second, server instances',
      description:
        'Any valid token may read it (it names no run). Live: subscribe to {"type":"subscribe","channel":"engine"} on the WebSocket for an engine_status message every ~2 s.',
      responses: {
        200: { description: '{ broker, workers[], queues[], at, server: { id, clients, events_per_second }, instances[] }' },
        401: { description: 'Missing or invalid token', schema: ErrorBody },
        429: { description: 'Rate limited (see Retry-After)', schema: ErrorBody },
      },
    },
    () => ctx.server.engine.status(),
  );

  route(
    app,
    ctx,
    {
      method: 'GET',
      url: '/api/session',
      tag: 'server',
      summary: 'Does this server need a token, and is the one sent (if any) valid?',
      description:
        'Always 200, so that a page can ask for a token before it calls anything that would answer 401. { auth_required, authenticated, principal: { id, pipelines } | null }.',
      auth: false,
      responses: { 200: { description: '{ auth_required, authenticated, principal }' }, 429: { description: 'Rate limited (see Retry-After)', schema: ErrorBody } },
    },
    async (request) => {
      const required = ctx.server.auth.enabled;
      const principal = required ? await ctx.server.auth.authenticate(request.raw).catch(() => false as const) : null;
      return {
        auth_required: required,
        authenticated: !required || (principal !== false && principal !== null),
        principal: principal === false || principal === null ? null : { id: principal.id, pipelines: principal.pipelines ?? '*' },
      };
    },
  );
}
