import { existsSync, readFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { resolve } from 'node:path';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Broker } from '../pipeline/broker.js';
import { InvalidArgumentError } from '../core/errors.js';
import { show } from '../core/validate.js';
import { ServerMetrics } from './metrics.js';
import { buildOpenApi } from './openapi.js';
import { errorAnswer, readsEverything, route, sendError, RestErrors, type RestContext, type TrackingLike } from './rest/common.js';
import { registerHistoryRoutes } from './rest/history.js';
import { registerMetricsRoutes } from './rest/metrics.js';
import { registerPipelineRoutes } from './rest/pipelines.js';
import { registerRateLimit, routeRateLimit } from './rest/rate-limit.js';
import { registerSse } from './sse.js';
import { registerReadiness } from './readiness.js';
import { registerRunRoutes } from './rest/runs.js';
import { registerEngineRoutes } from './rest/engine.js';
import { registerRetryRoutes } from './rest/retry.js';
import { registerStartRoutes } from './rest/start.js';
import { registerResumeRoutes } from './rest/resume.js';
import { ErrorBody } from './rest/schemas.js';
import { dashboardPage } from './base-path.js';
import type { RouteHost } from './route-host.js';

export type { TrackingLike } from './rest/common.js';
export { frameworkErrors } from './rest/common.js';
import type { RestRateLimitOptions } from './rest/rate-limit.js';
export type { RestRateLimitOptions } from './rest/rate-limit.js';

/** What the HTTP routes are registered with. */
export interface RoutesContext {
  server: RouteHost;
  tracking: TrackingLike | null;
  broker: Broker | null;
  /** A folder; `false` for the built-in page; `undefined` for the built dashboard when there is one. */
  staticDir: string | false | undefined;
  /** The prefix the routes are registered under (`''` at the root): the dashboard's page is told it. */
  basePath: string;
}

const TRACKING_METHODS = ['getStatus', 'listPipelines', 'getHistory', 'getMetrics', 'deletePipeline'] as const;
const BUILT_IN_PAGE = new URL('./static/index.html', import.meta.url);

/**
 * Where `npm run build` puts the dashboard: `dist/dashboard/`, next to `dist/server/`
 * when running the package, or from `src/server/` when running the sources (tests).
 */
const BUILT_DASHBOARD = [new URL('../dashboard/', import.meta.url), new URL('../../dist/dashboard/', import.meta.url)];

/** The built dashboard's folder, or `null` when it has not been built. */
export function builtDashboardDir(): string | null {
  for (const url of BUILT_DASHBOARD) {
    if (url.protocol === 'file:' && existsSync(new URL('index.html', url))) return fileURLToPath(url);
  }
  return null;
}

let builtInPage: string | null = null;
function placeholderPage(): string {
  builtInPage ??= readFileSync(BUILT_IN_PAGE, 'utf8');
  return builtInPage;
}

/**
 * Everything on the HTTP side but the WebSocket upgrade and SSE: `/health` (open, no
 * auth), the REST API under `/api` with its OpenAPI document, `/metrics`
 * (Prometheus), and the dashboard's static files at `/` and `/dashboard/`.
 */
export function registerRoutes(app: FastifyInstance, options: RoutesContext): void {
  const { server, tracking, broker } = options;
  const staticDir = options.staticDir === false ? null : (options.staticDir ?? builtDashboardDir());
  const rateLimit = server.options.restRateLimit === false ? null : routeRateLimit(server.options.restRateLimit ?? {});
  if (rateLimit !== null) registerRateLimit(app, rateLimit);
  const ctx: RestContext = { server, tracking, broker, rateLimit: rateLimit === null ? null : { max: rateLimit.max, timeWindow: rateLimit.timeWindow }, docs: [] };
  // Counting starts now, not when the server boots: runs before startServer() are counted too.
  const metrics = new ServerMetrics({
    hub: server.hub,
    transport: server.transport,
    wsConnections: () => server.connections,
    ...(server.embedded ? {} : { sockets: () => server.sockets }),
    broker,
    processMetrics: server.options.processMetrics ?? true,
  });
  app.addHook('onClose', (_instance, done) => {
    metrics.close();
    done();
  });
  // Routes are declared once the rate limiter is loaded: it finds them through its onRoute hook.
  app.after(() => declareRoutes(app, ctx, staticDir, metrics, options.basePath));
}

/**
 * Checks what {@link registerRoutes} will use, at once (the routes themselves are
 * declared when the server boots): tracking's methods, the static folder, the rate limit.
 */
export function checkRoutes(options: { tracking?: TrackingLike | undefined; staticDir?: string | false | undefined; restRateLimit?: RestRateLimitOptions | false | undefined }): void {
  const tracking = options.tracking;
  if (tracking !== undefined && tracking !== null) {
    const missing = TRACKING_METHODS.filter((m) => typeof (tracking as unknown as Record<string, unknown>)[m] !== 'function');
    if (missing.length > 0) throw new InvalidArgumentError(`tracking must be a PipelineTrackingManager: it has no ${missing.join(', ')} method`);
  }
  const staticDir = options.staticDir === false ? null : (options.staticDir ?? builtDashboardDir());
  if (staticDir !== null) {
    let isDir = false;
    try {
      isDir = typeof staticDir === 'string' && statSync(staticDir).isDirectory();
    } catch {
      isDir = false;
    }
    if (!isDir) throw new InvalidArgumentError(`staticDir must be an existing directory, received ${show(staticDir)}`);
  }
  if (options.restRateLimit !== undefined && options.restRateLimit !== false) routeRateLimit(options.restRateLimit);
}

function declareRoutes(app: FastifyInstance, ctx: RestContext, staticDir: string | null, metrics: ServerMetrics, base: string): void {
  const page = staticDir === null ? null : indexPage(resolve(staticDir), base);
  const { server } = ctx;

  app.setErrorHandler((error, request, reply) => {
    const answer = errorAnswer(error, request);
    if (answer.code === RestErrors.INTERNAL) server.logger.error({ err: error, method: request.method, url: request.url }, `${request.method} ${request.url} failed: ${error instanceof Error ? error.message : String(error)}`);
    return sendError(reply, answer.status, answer.code, answer.message);
  });
  app.setNotFoundHandler((request, reply) => {
    if (page !== null && request.method === 'GET' && isDashboardRoute(request.url.slice(base.length))) return page(request, reply);
    return sendError(reply, 404, RestErrors.NOT_FOUND, `No route ${request.method} ${request.url.split('?')[0] ?? ''}`);
  });

  const started = Date.now();
  app.get('/health', () => ({
    status: 'healthy',
    uptime_s: Math.round((Date.now() - started) / 1000),
    connections: server.hub.connectionCount,
  }));
  ctx.docs.push({
    method: 'GET',
    url: '/health',
    tag: 'server',
    summary: 'Liveness: always open, never needs a token',
    auth: false,
    responses: { 200: { description: '{ "status": "healthy", "uptime_s", "connections" }' } },
  });

  registerReadiness(app, ctx);
  registerRunRoutes(app, ctx);
  registerPipelineRoutes(app, ctx);
  registerHistoryRoutes(app, ctx);
  registerMetricsRoutes(app, ctx);
  registerRetryRoutes(app, ctx);
  registerStartRoutes(app, ctx);
  registerResumeRoutes(app, ctx);
  registerEngineRoutes(app, ctx);
  registerSse(app, ctx);

  route(
    app,
    ctx,
    {
      method: 'GET',
      url: '/metrics',
      tag: 'server',
      summary: 'Prometheus metrics (text exposition format)',
      description:
        'Labels are bounded (pipeline_id, pipeline_type, status; never a run id). With auth, a token is needed and samples of pipelines the caller may not read are left out. Metric names: docs/rest.md.',
      contentType: 'text/plain; version=0.0.4',
      responses: {
        200: { description: 'The metrics' },
        401: { description: 'Missing or invalid token', schema: ErrorBody },
        429: { description: 'Rate limited (see Retry-After)', schema: ErrorBody },
      },
    },
    async (_request, reply, principal) => {
      const canRead = readsEverything(ctx, principal) ? undefined : (pipelineId: string) => server.auth.authorize(principal, pipelineId, 'read');
      const text = await metrics.render(canRead);
      return reply.type(metrics.contentType).send(text);
    },
  );

  let openapi: unknown = null;
  route(
    app,
    ctx,
    {
      method: 'GET',
      url: '/api/openapi.json',
      tag: 'server',
      summary: 'This document',
      auth: false,
      responses: { 200: { description: 'The OpenAPI 3.1 document' }, 429: { description: 'Rate limited (see Retry-After)', schema: ErrorBody } },
    },
    () => {
      openapi ??= buildOpenApi(ctx.docs, { auth: server.auth.enabled });
      return Promise.resolve(openapi);
    },
  );

  registerDashboard(app, ctx, staticDir, page);
}

type PageHandler = (request: FastifyRequest, reply: FastifyReply) => FastifyReply;

/**
 * The dashboard's index.html told the base path (read once, on first use; a folder of
 * your own without one is served as a file).
 */
function indexPage(root: string, base: string): PageHandler {
  let html: string | null = null;
  return (_request, reply) => {
    if (html === null) {
      try {
        html = dashboardPage(readFileSync(resolve(root, 'index.html'), 'utf8'), base);
      } catch {
        return reply.sendFile('index.html', root);
      }
    }
    return reply.type('text/html; charset=utf-8').header('cache-control', 'no-cache').send(html);
  };
}

/** `/dashboard/...` without a file extension: a client-side route of the dashboard. */
function isDashboardRoute(url: string): boolean {
  const path = url.split('?')[0] ?? '';
  if (path !== '/dashboard' && !path.startsWith('/dashboard/')) return false;
  const last = path.slice(path.lastIndexOf('/') + 1);
  return !last.includes('.');
}

function registerDashboard(app: FastifyInstance, ctx: RestContext, staticDir: string | null, indexPage: PageHandler | null): void {
  ctx.docs.push({
    method: 'GET',
    url: '/',
    tag: 'dashboard',
    summary: 'The dashboard (a placeholder page when it was not built); WebSocket upgrades at / go to the live endpoint',
    auth: false,
    contentType: 'text/html',
    responses: { 200: { description: 'The page' } },
  });
  ctx.docs.push({
    method: 'GET',
    url: '/dashboard/*',
    tag: 'dashboard',
    summary: 'The dashboard\'s files (client-side routes get index.html)',
    auth: false,
    contentType: 'text/html',
    responses: { 200: { description: 'A file of the dashboard' }, 404: { description: 'No such file', schema: ErrorBody } },
  });
  if (staticDir === null || indexPage === null) {
    const page = (_request: FastifyRequest, reply: FastifyReply): FastifyReply =>
      reply.type('text/html; charset=utf-8').header('cache-control', 'no-cache').send(placeholderPage());
    app.get('/', page);
    app.get('/dashboard', page);
    app.get('/dashboard/*', page);
    return;
  }
  const root = resolve(staticDir);
  void app.register(fastifyStatic, { root, prefix: '/dashboard/', index: false, wildcard: true });
  app.get('/', indexPage);
  app.get('/dashboard', indexPage);
  app.get('/dashboard/', indexPage);
  app.get('/dashboard/index.html', indexPage);
}
