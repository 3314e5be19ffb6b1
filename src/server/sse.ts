import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { isEventType, type EventType } from '../events/types.js';
import type { Authenticator } from './auth.js';
import type { OutgoingLimits } from './connection.js';
import type { Hub } from './hub.js';
import { SseConnection } from './sse-connection.js';
import type { SubscribeMessage } from './protocol.js';

interface SseContext {
  hub: Hub;
  auth: Authenticator;
  limits: Required<OutgoingLimits>;
  heartbeatMs: number;
}

interface SseQuery {
  pipeline_id?: string;
  run_id?: string;
  since?: string;
  event_types?: string;
  token?: string;
}

function httpError(reply: FastifyReply, status: number, code: string, message: string): FastifyReply {
  return reply.code(status).send({ error: { code, message } });
}

/**
 * `GET /api/events?pipeline_id=x | run_id=y [&since=N] [&event_types=A,B]`: the same
 * stream as the WebSocket, as Server-Sent Events. A reconnecting EventSource sends
 * `Last-Event-ID: <run_id>:<seq>`, and that run resumes after that seq.
 */
export function registerSse(app: FastifyInstance, ctx: SseContext): void {
  app.get('/api/events', async (request: FastifyRequest<{ Querystring: SseQuery }>, reply) => {
    const q = request.query;
    const principal = await ctx.auth.authenticate(request.raw);
    if (principal === false) return httpError(reply, 401, 'unauthorized', 'Missing or invalid token');
    if ((q.pipeline_id === undefined) === (q.run_id === undefined)) {
      return httpError(reply, 400, 'bad_request', 'Give exactly one of pipeline_id and run_id');
    }
    let eventTypes: EventType[] | undefined;
    if (q.event_types !== undefined) {
      const list = q.event_types.split(',').filter((t) => t !== '');
      const bad = list.find((t) => !isEventType(t));
      if (bad !== undefined || list.length === 0) return httpError(reply, 400, 'bad_request', `Unknown event type ${JSON.stringify(bad ?? '')}`);
      eventTypes = list as EventType[];
    }
    let since: number | undefined;
    if (q.since !== undefined) {
      if (!/^\d+$/.test(q.since)) return httpError(reply, 400, 'bad_request', `since must be a non-negative integer, received ${JSON.stringify(q.since)}`);
      since = Number(q.since);
    }
    if (since !== undefined && q.run_id === undefined) return httpError(reply, 400, 'bad_request', 'since needs run_id: a seq belongs to one run');
    const lastEventId = request.headers['last-event-id'];
    let resume: { runId: string; seq: number } | null = null;
    if (typeof lastEventId === 'string') {
      const m = /^(.+):(\d+)$/.exec(lastEventId);
      if (m !== null) resume = { runId: m[1] as string, seq: Number(m[2]) };
    }
    if (q.pipeline_id !== undefined && q.pipeline_id !== '*' && !ctx.auth.authorize(principal, q.pipeline_id, 'read')) {
      return httpError(reply, 403, 'forbidden', `Not allowed to read pipeline "${q.pipeline_id}"`);
    }
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    res.write('retry: 2000\n\n');
    const conn = new SseConnection(res, principal, ctx.limits);
    ctx.hub.add(conn);
    const timer = ctx.heartbeatMs > 0 ? setInterval(() => conn.heartbeat(), ctx.heartbeatMs) : null;
    timer?.unref();
    res.once('close', () => {
      if (timer !== null) clearInterval(timer);
      ctx.hub.remove(conn);
    });
    const base: Omit<SubscribeMessage, 'pipeline_id' | 'run_id'> = { type: 'subscribe' };
    if (eventTypes !== undefined) base.event_types = eventTypes;
    if (q.run_id !== undefined) {
      const sinceRun = resume !== null && resume.runId === q.run_id ? resume.seq : since;
      await ctx.hub.subscribe(conn, { ...base, run_id: q.run_id, ...(sinceRun === undefined ? {} : { since: sinceRun }) });
    } else {
      if (resume !== null) await ctx.hub.subscribe(conn, { ...base, run_id: resume.runId, since: resume.seq });
      await ctx.hub.subscribe(conn, { ...base, pipeline_id: q.pipeline_id as string });
    }
    return reply;
  });
}
