import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { isEventType, type EventType } from '../events/types.js';
import { show } from '../core/validate.js';
import { SseConnection } from './sse-connection.js';
import type { SubscribeMessage } from './protocol.js';
import { HttpError, RestErrors, requireAction, route, type RestContext } from './rest/common.js';
import { ErrorBody } from './rest/schemas.js';

const Id = Type.String({ minLength: 1, maxLength: 200, pattern: '^[A-Za-z0-9_.:\\-/@]+$' });
const PipelineOrAll = Type.String({ minLength: 1, maxLength: 200, pattern: '^([A-Za-z0-9_.:\\-/@]+|\\*)$' });

/** The query of `GET /api/events`: every parameter checked, unknown ones refused. */
export const SseQuery = Type.Object(
  {
    pipeline_id: Type.Optional(PipelineOrAll),
    run_id: Type.Optional(Id),
    since: Type.Optional(Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER })),
    event_types: Type.Optional(Type.String({ minLength: 1, maxLength: 400, description: 'Comma-separated event types' })),
    token: Type.Optional(Type.String({ minLength: 1, maxLength: 8192 })),
  },
  { additionalProperties: false },
);

/** `Last-Event-ID: <run_id>:<seq>` as the server writes it. */
const LAST_EVENT_ID = /^([A-Za-z0-9_.:\-/@]{1,200}):(\d{1,15})$/;

/**
 * `GET /api/events?pipeline_id=x | run_id=y [&since=N] [&event_types=A,B]`: the same
 * stream as the WebSocket, as Server-Sent Events, under the same rules: the token, the
 * rate limit, the connection caps (total and per address) and the outgoing budget. A
 * reconnecting EventSource sends `Last-Event-ID: <run_id>:<seq>`, and that run resumes
 * after that seq.
 */
export function registerSse(app: FastifyInstance, ctx: RestContext): void {
  const server = ctx.server;
  route(
    app,
    ctx,
    {
      method: 'GET',
      url: '/api/events',
      tag: 'live',
      summary: 'Server-Sent Events: the WebSocket stream over plain HTTP',
      description:
        '?pipeline_id=x (or "*") | run_id=y [&since=N] [&event_types=A,B]. Event ids are <run_id>:<seq>; a reconnecting EventSource resumes with Last-Event-ID.',
      querystring: SseQuery,
      contentType: 'text/event-stream',
      responses: {
        200: { description: 'The event stream' },
        400: { description: 'Bad parameter', schema: ErrorBody },
        401: { description: 'Missing or invalid token', schema: ErrorBody },
        403: { description: 'Not allowed to read this pipeline', schema: ErrorBody },
        429: { description: 'Rate limited, or too many streams from this address (see Retry-After)', schema: ErrorBody },
      },
    },
    async (request, reply, principal) => {
      const q = request.query;
      if ((q.pipeline_id === undefined) === (q.run_id === undefined)) throw new HttpError(400, RestErrors.BAD_REQUEST, 'Give exactly one of pipeline_id and run_id');
      let eventTypes: EventType[] | undefined;
      if (q.event_types !== undefined) {
        const list = q.event_types.split(',').filter((t) => t !== '');
        const bad = list.find((t) => !isEventType(t));
        if (bad !== undefined || list.length === 0) throw new HttpError(400, RestErrors.BAD_REQUEST, `event_types: unknown event type ${show(bad ?? '')}`);
        eventTypes = [...new Set(list)] as EventType[];
      }
      if (q.since !== undefined && q.run_id === undefined) throw new HttpError(400, RestErrors.BAD_REQUEST, 'since needs run_id: a seq belongs to one run');
      const lastEventId = request.headers['last-event-id'];
      let resume: { runId: string; seq: number } | null = null;
      if (lastEventId !== undefined) {
        const m = typeof lastEventId === 'string' ? LAST_EVENT_ID.exec(lastEventId) : null;
        if (m === null) throw new HttpError(400, RestErrors.BAD_REQUEST, `Last-Event-ID must be <run_id>:<seq> as the server sent it, received ${show(lastEventId)}`);
        resume = { runId: m[1] as string, seq: Number(m[2]) };
      }
      if (q.pipeline_id !== undefined && q.pipeline_id !== '*') requireAction(ctx, principal, q.pipeline_id, 'read');
      const release = server.streams.acquire(request.ip);
      if (release === null) {
        throw new HttpError(429, RestErrors.RATE_LIMITED, `Too many streams from ${request.ip}: at most ${server.streams.max} (maxConnectionsPerAddress)`);
      }
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache, no-transform',
        connection: 'keep-alive',
        'x-accel-buffering': 'no',
        ...corsHeaders(reply.getHeaders()),
      });
      res.write('retry: 2000\n\n');
      const conn = new SseConnection(res, principal, server.outgoingLimits);
      server.hub.add(conn);
      const every = server.options.heartbeatMs ?? 30_000;
      const timer = every > 0 ? setInterval(() => conn.heartbeat(), every) : null;
      timer?.unref();
      res.once('close', () => {
        if (timer !== null) clearInterval(timer);
        release();
        server.hub.remove(conn);
      });
      const base: Omit<SubscribeMessage, 'pipeline_id' | 'run_id'> = { type: 'subscribe' };
      if (eventTypes !== undefined) base.event_types = eventTypes;
      if (q.run_id !== undefined) {
        const sinceRun = resume !== null && resume.runId === q.run_id ? resume.seq : q.since;
        await server.hub.subscribe(conn, { ...base, run_id: q.run_id, ...(sinceRun === undefined ? {} : { since: sinceRun }) });
      } else {
        if (resume !== null) await server.hub.subscribe(conn, { ...base, run_id: resume.runId, since: resume.seq });
        await server.hub.subscribe(conn, { ...base, pipeline_id: q.pipeline_id as string });
      }
      return reply;
    },
  );
}

/** The CORS headers @fastify/cors set on the reply, carried over to the hijacked stream. */
function corsHeaders(headers: Record<string, unknown>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if ((name.startsWith('access-control-') || name === 'vary') && typeof value === 'string') out[name] = value;
  }
  return out;
}
