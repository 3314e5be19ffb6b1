/**
 * What every REST route shares: the context, the error answers, the route helper that
 * checks the rate limit and the token before Fastify validates the parameters, and the
 * list of routes the OpenAPI document is built from.
 */
import type { Static, TSchema } from '@sinclair/typebox';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ErrorCodes, FlowcastError } from '../../core/errors.js';
import type { Broker } from '../../pipeline/broker.js';
import type { PipelineMetrics } from '../../tracking/metrics.js';
import type { PipelineStatus } from '../../tracking/models.js';
import type { GetHistoryOptions, ListPipelinesOptions } from '../../tracking/manager.js';
import type { Action, Principal } from '../auth.js';
import type { SnapshotSource } from '../hub.js';
import type { RouteHost } from '../route-host.js';
import { show } from '../../core/validate.js';
import type { RouteRateLimit } from './rate-limit.js';

/** What the REST API needs of tracking (a PipelineTrackingManager fits). */
export interface TrackingLike extends SnapshotSource {
  getStatus(id: string): Promise<PipelineStatus | null>;
  listPipelines(options: ListPipelinesOptions): Promise<PipelineStatus[]>;
  getHistory(options: GetHistoryOptions): Promise<PipelineStatus[]>;
  getMetrics(options: { days?: number; pipelineId?: string }): Promise<PipelineMetrics>;
  deletePipeline(id: string): Promise<number>;
}

/** Error codes of REST answers (`{ "error": { "code", "message" } }`). */
export const RestErrors = {
  BAD_REQUEST: 'bad_request',
  UNAUTHORIZED: 'unauthorized',
  FORBIDDEN: 'forbidden',
  NOT_FOUND: 'not_found',
  RUN_NOT_FOUND: 'run_not_found',
  PIPELINE_NOT_FOUND: 'pipeline_not_found',
  RUN_ENDED: 'run_ended',
  RUN_RUNNING: 'run_running',
  RATE_LIMITED: 'rate_limited',
  URI_TOO_LONG: 'uri_too_long',
  PAYLOAD_TOO_LARGE: 'payload_too_large',
  UNSUPPORTED_MEDIA_TYPE: 'unsupported_media_type',
  TRACKING_UNAVAILABLE: 'tracking_unavailable',
  CANCEL_UNAVAILABLE: 'cancel_unavailable',
  RETRY_UNAVAILABLE: 'retry_unavailable',
  START_UNAVAILABLE: 'start_unavailable',
  RESUME_UNAVAILABLE: 'resume_unavailable',
  RUN_NOT_RESUMABLE: 'run_not_resumable',
  ALREADY_RUNNING: 'already_running',
  REDIS_UNAVAILABLE: 'redis_unavailable',
  INTERNAL: 'internal_error',
} as const;
/** The `error.code` of a REST answer: one of {@link RestErrors}. */
export type RestErrorCode = (typeof RestErrors)[keyof typeof RestErrors];

/** An error a handler throws to answer with `status` and `code`. */
export class HttpError extends Error {
  override readonly name = 'HttpError';
  constructor(
    readonly status: number,
    readonly code: RestErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** One answer of a route as the OpenAPI document shows it. */
export interface ResponseDoc {
  description: string;
  schema?: TSchema;
}

/** One REST route as the OpenAPI document shows it. */
export interface RouteDoc {
  method: 'GET' | 'POST' | 'DELETE';
  url: string;
  summary: string;
  description?: string;
  tag: string;
  querystring?: TSchema;
  params?: TSchema;
  body?: TSchema;
  responses: Record<number, ResponseDoc>;
  /** The route takes a token when the server has auth. */
  auth: boolean;
  /** Content type of the 200 answer. @default "application/json" */
  contentType?: string;
}

/** What every REST route is registered with. */
export interface RestContext {
  server: RouteHost;
  tracking: TrackingLike | null;
  broker: Broker | null;
  /** The per-client rate limit of the API routes (@fastify/rate-limit), `null` when off. */
  rateLimit: RouteRateLimit | null;
  /** Every documented route, in registration order. */
  docs: RouteDoc[];
}

const principals = new WeakMap<FastifyRequest, Principal | null>();

/** The principal the route's auth hook found (`null`: anonymous, auth disabled). */
export function principalOf(request: FastifyRequest): Principal | null {
  return principals.get(request) ?? null;
}

/** Answers with the JSON error body. */
export function sendError(reply: FastifyReply, status: number, code: string, message: string): FastifyReply {
  return reply.code(status).type('application/json; charset=utf-8').send({ error: { code, message } });
}

/** `true` when this principal reads every pipeline, so lists need no filtering. */
export function readsEverything(ctx: RestContext, principal: Principal | null): boolean {
  if (ctx.server.options.auth?.authorize !== undefined) return false;
  if (!ctx.server.auth.enabled) return true;
  return principal !== null && (principal.pipelines ?? '*') === '*';
}

/** The 404 of a run that does not exist, or that the caller may not read: the same answer for both. */
export function runNotFound(runId: string): HttpError {
  return new HttpError(404, RestErrors.RUN_NOT_FOUND, `No run ${show(runId)}`);
}

/**
 * Throws unless `principal` may do `action` on this run: a run the caller may not even
 * read answers 404 exactly like a run that does not exist (no oracle of run ids); a run
 * it may read but not act on answers 403.
 */
export function requireRunAction(ctx: RestContext, principal: Principal | null, runId: string, pipelineId: string, action: Action): void {
  if (!ctx.server.auth.authorize(principal, pipelineId, 'read')) throw runNotFound(runId);
  requireAction(ctx, principal, pipelineId, action);
}

/** Throws 403 unless `principal` may do `action` on `pipelineId`. */
export function requireAction(ctx: RestContext, principal: Principal | null, pipelineId: string, action: Action): void {
  if (!ctx.server.auth.authorize(principal, pipelineId, action)) {
    const what = action === 'read' ? 'read' : `${action} runs of`;
    throw new HttpError(403, RestErrors.FORBIDDEN, `Not allowed to ${what} pipeline ${show(pipelineId)}`);
  }
}

/** The server's tracking, or a 503 naming the missing option. */
export function requireTracking(ctx: RestContext): TrackingLike {
  if (ctx.tracking === null) {
    throw new HttpError(503, RestErrors.TRACKING_UNAVAILABLE, 'This server has no tracking: start it with getWebSocketServer({ tracking }) to use the runs API');
  }
  return ctx.tracking;
}

/** A run's status by run id (never a pipeline's latest run), or 404. */
export async function requireRun(tracking: TrackingLike, runId: string): Promise<PipelineStatus> {
  const status = await tracking.getStatus(runId);
  if (status === null || status.run_id !== runId) throw runNotFound(runId);
  return status;
}

/**
 * Pages over `fetch` (offset, limit → items in order) keeping the items `keep` accepts:
 * skips `offset` kept items, returns up to `limit`, and says whether more exist.
 */
export async function pageFiltered<T>(
  fetch: (offset: number, limit: number) => Promise<T[]>,
  keep: (item: T) => boolean,
  offset: number,
  limit: number,
): Promise<{ items: T[]; more: boolean }> {
  const items: T[] = [];
  const page = Math.min(1000, Math.max(100, limit + 1));
  let skipped = 0;
  for (let at = 0; ; at += page) {
    const batch = await fetch(at, page);
    for (const item of batch) {
      if (!keep(item)) continue;
      if (skipped < offset) {
        skipped++;
        continue;
      }
      if (items.length === limit) return { items, more: true };
      items.push(item);
    }
    if (batch.length < page) return { items, more: false };
  }
}

type StaticOf<T> = T extends TSchema ? Static<T> : unknown;

/** A REST route: its documentation and its validated parameters. */
export interface RouteSpec<Q extends TSchema | undefined, P extends TSchema | undefined, B extends TSchema | undefined>
  extends Omit<RouteDoc, 'querystring' | 'params' | 'body' | 'auth'> {
  querystring?: Q;
  params?: P;
  body?: B;
  /** @default true */
  auth?: boolean;
  /** Largest body in bytes. @default 16384 */
  bodyLimit?: number;
}

/** A Fastify request typed by a route's query, params and body schemas. */
export type RestRequest<Q, P, B> = FastifyRequest<{ Querystring: StaticOf<Q>; Params: StaticOf<P>; Body: StaticOf<B> }>;

/**
 * Registers a route and its documentation. Before the parameters are validated, the
 * client's rate limit is taken (429) and, with `auth`, the token checked (401).
 */
export function route<Q extends TSchema | undefined = undefined, P extends TSchema | undefined = undefined, B extends TSchema | undefined = undefined>(
  app: FastifyInstance,
  ctx: RestContext,
  spec: RouteSpec<Q, P, B>,
  handler: (request: RestRequest<Q, P, B>, reply: FastifyReply, principal: Principal | null) => Promise<unknown>,
): void {
  const auth = spec.auth ?? true;
  const { bodyLimit, ...rest } = spec;
  const doc: RouteDoc = { ...rest, auth } as RouteDoc;
  ctx.docs.push(doc);
  const schema: Record<string, unknown> = {};
  if (spec.querystring !== undefined) schema.querystring = spec.querystring;
  if (spec.params !== undefined) schema.params = spec.params;
  // By content type: a JSON body is validated, a request without a body is not (bodies are optional).
  if (spec.body !== undefined) schema.body = { content: { 'application/json': { schema: spec.body } } };
  app.route({
    method: spec.method,
    url: spec.url,
    schema,
    bodyLimit: bodyLimit ?? 16 * 1024,
    ...(ctx.rateLimit === null ? {} : { config: { rateLimit: ctx.rateLimit } }),
    onRequest: (request, reply, done) => {
      guard(ctx, request, reply, auth).then(
        (ok) => (ok ? done() : undefined),
        (error: unknown) => done(error instanceof Error ? error : new Error(String(error))),
      );
    },
    preHandler: (request, _reply, done) => done(nonFinite(request.query)),
    handler: (request, reply) => handler(request as RestRequest<Q, P, B>, reply, principalOf(request)),
  });
}

/** Ajv coerces "1e999" to Infinity and lets it through `integer`: refuse it here. */
function nonFinite(query: unknown): HttpError | undefined {
  if (typeof query !== 'object' || query === null) return undefined;
  for (const [name, value] of Object.entries(query)) {
    if (typeof value === 'number' && !Number.isFinite(value)) return new HttpError(400, RestErrors.BAD_REQUEST, `${name} must be a finite number, received ${String(value)}`);
  }
  return undefined;
}

/** The token (the rate limit ran before, in @fastify/rate-limit's hook); `false` when it answered. */
async function guard(ctx: RestContext, request: FastifyRequest, reply: FastifyReply, auth: boolean): Promise<boolean> {
  if (!auth || !ctx.server.auth.enabled) return true;
  const principal = await authenticateHttp(ctx.server, request, reply);
  if (principal === false) return false;
  principals.set(request, principal);
  return true;
}

/** What {@link authenticateHttp} needs of the server. */
interface HttpAuthSource {
  readonly auth: RouteHost['auth'];
  readonly authFailures: RouteHost['authFailures'];
}

/**
 * The principal of an HTTP request (REST or SSE), or `false` after answering 401 (the
 * reason in one line) or 429 (the address sent too many refused tokens).
 */
export async function authenticateHttp(server: HttpAuthSource, request: FastifyRequest, reply: FastifyReply): Promise<Principal | null | false> {
  const blocked = await server.authFailures.blockedFor(request.ip);
  if (blocked > 0) {
    void sendError(reply.header('retry-after', String(blocked)), 429, RestErrors.RATE_LIMITED, server.authFailures.message(blocked));
    return false;
  }
  const result = await server.auth.check(request.raw);
  if (result.ok) return result.principal;
  await server.authFailures.failed(request.ip);
  void sendError(reply.header('www-authenticate', 'Bearer'), 401, RestErrors.UNAUTHORIZED, `Unauthorized: ${result.reason}`);
  return false;
}

/**
 * Fastify's `frameworkErrors`: a URL Fastify cannot route (bad percent-encoding, a
 * parameter over the length limit) gets the same JSON error body as everything else.
 */
export function frameworkErrors(error: FastifyError, _request: FastifyRequest, reply: FastifyReply): void {
  const status = typeof error.statusCode === 'number' && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 400;
  void sendError(reply, status, status === 414 ? RestErrors.URI_TOO_LONG : RestErrors.BAD_REQUEST, clip(error.message));
}

/** The error answer of a thrown error: HttpError as given, bad input as 400, the rest as 500. */
export function errorAnswer(error: unknown, request: FastifyRequest): { status: number; code: string; message: string } {
  if (error instanceof HttpError) return { status: error.status, code: error.code, message: error.message };
  if (error instanceof FlowcastError) {
    if (error.code === ErrorCodes.INVALID_ARGUMENT) return { status: 400, code: RestErrors.BAD_REQUEST, message: error.message };
    if (error.code === ErrorCodes.NOT_FOUND) return { status: 404, code: RestErrors.NOT_FOUND, message: error.message };
    // A retry (or any start) over the pipeline's concurrency limit.
    if (error.code === ErrorCodes.ALREADY_RUNNING) return { status: 409, code: RestErrors.ALREADY_RUNNING, message: error.message };
    if (error.code === ErrorCodes.RUN_NOT_RESUMABLE) return { status: 409, code: RestErrors.RUN_NOT_RESUMABLE, message: error.message };
  }
  const e = error as { validation?: ValidationIssue[]; validationContext?: string; statusCode?: number; message?: string };
  if (Array.isArray(e.validation) && e.validation.length > 0) {
    return { status: 400, code: RestErrors.BAD_REQUEST, message: validationMessage(e.validation[0] as ValidationIssue, e.validationContext ?? 'request', request) };
  }
  const status = typeof e.statusCode === 'number' ? e.statusCode : 500;
  if (status >= 400 && status < 500) {
    const code = status === 413 ? RestErrors.PAYLOAD_TOO_LARGE : status === 415 ? RestErrors.UNSUPPORTED_MEDIA_TYPE : status === 404 ? RestErrors.NOT_FOUND : RestErrors.BAD_REQUEST;
    return { status, code, message: clip(e.message ?? 'Bad request') };
  }
  return { status: 500, code: RestErrors.INTERNAL, message: 'Internal error: see the server log' };
}

interface ValidationIssue {
  keyword: string;
  instancePath: string;
  params: Record<string, unknown>;
  message?: string;
}

/** `limit must be <= 1000, received "5000"`, from Ajv's first issue. */
function validationMessage(issue: ValidationIssue, context: string, request: FastifyRequest): string {
  const source = (context === 'querystring' ? request.query : context === 'params' ? request.params : context === 'body' ? request.body : undefined) as
    | Record<string, unknown>
    | undefined;
  if (issue.keyword === 'required') return `${String(issue.params.missingProperty)} is required (${context})`;
  if (issue.keyword === 'additionalProperties') return `unknown ${context} field "${String(issue.params.additionalProperty)}"`;
  const path = issue.instancePath.replace(/^\//, '').replace(/\//g, '.');
  const name = path === '' ? context : path;
  let value: unknown = source;
  for (const part of path === '' ? [] : path.split('.')) value = (value as Record<string, unknown> | undefined)?.[part];
  const what =
    issue.keyword === 'enum' && Array.isArray(issue.params.allowedValues)
      ? `must be one of ${(issue.params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`
      : (issue.message ?? 'is invalid');
  return `${name} ${what}, received ${value === undefined ? 'nothing' : show(value)}`;
}

/** A message that may quote what the client sent, cut to a length a log line and a reply can carry. */
export function clip(message: string, max = 300): string {
  return message.length <= max ? message : `${message.slice(0, max)}… (${message.length} characters)`;
}
