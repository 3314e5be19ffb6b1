/**
 * Queued starts over REST on the in-memory broker: over the limit of a pipeline whose
 * policy queues, POST /api/pipelines/{id}/runs answers 202 QUEUED with its place and the
 * run in the way; GET /api/runs/{id} shows it QUEUED until it starts, then as a run; a
 * cancelled queued run ends CANCELLED without running; GET /api/pipelines says a start
 * would queue; the SDK's startRun answers the queued run.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { InMemoryBroker } from '../src/pipeline/memory-broker.js';
import { getEngine } from '../src/pipeline/engine.js';
import { getWebSocketServer } from '../src/server/index.js';
import { InMemoryPipelineStorage, PipelineTrackingManager } from '../src/tracking/index.js';
import { startRun } from '../src/client/index.js';
import { runControlPipelines } from './fixtures/run-control/pipelines.js';

type Json = Record<string, unknown>;
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function post(base: string, path: string, body: unknown): Promise<{ status: number; body: Json; location: string | null }> {
  const res = await fetch(base + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as Json, location: res.headers.get('location') };
}

async function get(base: string, path: string): Promise<{ status: number; body: Json }> {
  const res = await fetch(base + path);
  return { status: res.status, body: (await res.json()) as Json };
}

async function setup() {
  const broker = new InMemoryBroker({ onError: () => undefined });
  const tracking = new PipelineTrackingManager().withStorage(new InMemoryPipelineStorage());
  const p = runControlPipelines(broker);
  p.queued.withTracking(tracking);
  const server = getWebSocketServer({ port: 0, broker, tracking, restRateLimit: false, pipelines: [p.queued] });
  cleanups.push(() => broker.close(), () => tracking.close(), () => server.close());
  await server.startServer();
  return { broker, server, url: server.httpUrl };
}

/** Polls `GET /api/runs/{id}` (bounded) until its status is `status`. */
async function statusOf(url: string, runId: string, status: string): Promise<Json> {
  let run: Json = {};
  for (let i = 0; i < 500; i++) {
    run = (await get(url, `/api/runs/${runId}`)).body;
    if (run.status === status) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  return run;
}

describe('POST /api/pipelines/:pipeline_id/runs on a pipeline that queues', () => {
  it('answers 202 QUEUED with the place and the run in the way, shows it QUEUED, then runs it', async () => {
    const { broker, url } = await setup();
    const first = await post(url, '/api/pipelines/queued/runs', { input: { hold_ms: 60_000 } });
    expect(first.status).toBe(201);
    const holder = first.body.run_id as string;
    expect((await get(url, '/api/pipelines/queued')).body).toMatchObject({ concurrency: { limit: 1, on_limit: 'queue' }, start_queues_behind: holder });

    const q1 = await post(url, '/api/pipelines/queued/runs', { input: {} });
    const q2 = await post(url, '/api/pipelines/queued/runs', { input: { hold_ms: 60_000 } });
    const q3 = await post(url, '/api/pipelines/queued/runs', { input: {} });
    expect([q1.status, q2.status, q3.status]).toEqual([202, 202, 202]);
    expect(q1.body).toMatchObject({ pipeline_id: 'queued', status: 'QUEUED', deduplicated: false, queue_position: 1, waiting_for: [holder] });
    expect(q3.body).toMatchObject({ status: 'QUEUED', queue_position: 3 });
    const [id1, id2, id3] = [q1.body.run_id, q2.body.run_id, q3.body.run_id] as string[];
    expect(q1.location).toBe(`/api/runs/${String(id1)}`);

    const list = await get(url, '/api/runs');
    expect((list.body.queued as Json[]).map((r) => [r.run_id, r.status, r.queue_position])).toEqual([[id1, 'QUEUED', 1], [id2, 'QUEUED', 2], [id3, 'QUEUED', 3]]);
    expect((await get(url, '/api/runs?status=RUNNING')).body.queued).toBeUndefined();
    const shown = await get(url, `/api/runs/${String(id2)}`);
    expect(shown.status).toBe(200);
    expect(shown.body).toMatchObject({ run_id: id2, pipeline_id: 'queued', status: 'QUEUED', queue_position: 2, waiting_for: [holder], input: { hold_ms: 60_000 }, last_seq: 0 });

    // Cancel of a queued run: it leaves the queue and ends CANCELLED without running.
    const cancelled = await post(url, `/api/runs/${String(id2)}/cancel`, { reason: 'changed my mind' });
    expect(cancelled.status).toBe(200);
    expect(cancelled.body).toMatchObject({ run_id: id2, status: 'CANCELLED' });
    expect(await statusOf(url, id2 as string, 'CANCELLED')).toMatchObject({ status: 'CANCELLED', error: 'changed my mind' });
    const log = await get(url, `/api/runs/${String(id2)}/events`);
    const types = (log.body.events as Json[]).map((e) => e.type);
    expect([types[0], types.at(-1)]).toEqual(['PipelineStartEvent', 'PipelineCancelledEvent']);
    expect(types).not.toContain('StepStartEvent');
    expect((await get(url, `/api/runs/${String(id3)}`)).body).toMatchObject({ status: 'QUEUED', queue_position: 2 });
    expect((await post(url, `/api/runs/${String(id2)}/cancel`, {})).status).toBe(409);

    // The run in the way ends: the queued ones run, one at a time, in order.
    expect((await post(url, `/api/runs/${holder}/cancel`, {})).status).toBe(200);
    await getEngine(broker).waitForRun(id3 as string, 30_000);
    const r1 = await statusOf(url, id1 as string, 'COMPLETED');
    const r3 = await statusOf(url, id3 as string, 'COMPLETED');
    expect([r1.status, r3.status]).toEqual(['COMPLETED', 'COMPLETED']);
    const events = (await get(url, `/api/runs/${String(id1)}/events`)).body.events as Json[];
    expect(events[0]).toMatchObject({ type: 'PipelineStartEvent', seq: 1 });
    expect(Date.parse(r3.started_at as string)).toBeGreaterThanOrEqual(Date.parse(r1.completed_at as string));
  });

  it('through the SDK: startRun answers the queued run with its place', async () => {
    const { url } = await setup();
    const held = await startRun('queued', { hold_ms: 60_000 }, { url });
    expect(held.status).toBe('RUNNING');
    const queued = await startRun('queued', {}, { url, idempotencyKey: 'click-1' });
    expect(queued).toMatchObject({ status: 'QUEUED', queuePosition: 1, waitingFor: [held.run_id], deduplicated: false });
    const again = await startRun('queued', {}, { url, idempotencyKey: 'click-1' });
    expect(again).toMatchObject({ run_id: queued.run_id, status: 'QUEUED', queuePosition: 1, deduplicated: true });
    await post(url, `/api/runs/${held.run_id}/cancel`, {});
    expect(await statusOf(url, queued.run_id, 'COMPLETED')).toMatchObject({ status: 'COMPLETED' });
  });
});
