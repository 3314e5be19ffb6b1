/**
 * GET /api/pipelines and GET /api/pipelines/{id}: the pipelines a server can start, with
 * their input schema and concurrency policy, whether the caller may start one, and — while
 * the policy refuses a start — the run in the way. Reads are authorised like the other
 * reads: a pipeline the caller may not read is absent from the list and 404 on its own.
 * The slot holders behind `start_blocked_by` are read from the in-memory slots and from
 * Redis (the same hash the starts take), on a real redis-server.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { InMemoryBroker } from '../src/pipeline/memory-broker.js';
import { InMemoryRunSlots, type RunSlots } from '../src/core/run-slots.js';
import { RedisRunSlots } from '../src/redis/run-slots.js';
import { BullMQBroker } from '../src/redis/bullmq-broker.js';
import { InMemoryPipelineStorage, PipelineTrackingManager } from '../src/tracking/index.js';
import { getWebSocketServer, type FlowcastServer } from '../src/server/index.js';
import type { ServerOptions } from '../src/server/options.js';
import { useRedisServer } from './helpers/redis.js';
import { runControlPipelines } from './fixtures/run-control/pipelines.js';

const redis = useRedisServer();
type Json = Record<string, unknown>;
interface PipelineInfo {
  pipeline_id: string;
  description: string | null;
  input_schema: Json | null;
  concurrency: { limit: number; key: string } | null;
  can_start: boolean;
  start_blocked_by?: string;
  start_blocked_reason?: string;
  latest_run: { run_id: string; status: string } | null;
}

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function get(base: string, path: string, token?: string): Promise<{ status: number; body: Json }> {
  const res = await fetch(base + path, token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } });
  return { status: res.status, body: (await res.json()) as Json };
}

async function list(base: string, token?: string): Promise<PipelineInfo[]> {
  const answer = await get(base, '/api/pipelines', token);
  expect(answer.status).toBe(200);
  return answer.body.pipelines as PipelineInfo[];
}

async function setup(server: Partial<ServerOptions> = {}): Promise<{ broker: InMemoryBroker; server: FlowcastServer }> {
  const broker = new InMemoryBroker({ onError: () => undefined });
  const tracking = new PipelineTrackingManager().withStorage(new InMemoryPipelineStorage());
  const p = runControlPipelines(broker);
  for (const pipeline of [p.guarded, p.perUser, p.free]) pipeline.withTracking(tracking);
  const s = getWebSocketServer({ port: 0, broker, tracking, restRateLimit: false, pipelines: [p.guarded, p.perUser], ...server });
  cleanups.push(() => broker.close(), () => tracking.close(), () => s.close());
  await s.startServer();
  return { broker, server: s };
}

/** Polls GET /api/pipelines/{id} until `check` accepts it (bounded). */
async function until(base: string, id: string, check: (p: PipelineInfo) => boolean): Promise<PipelineInfo> {
  let last: PipelineInfo | null = null;
  for (let i = 0; i < 400; i++) {
    last = (await get(base, `/api/pipelines/${id}`)).body as unknown as PipelineInfo;
    if (check(last)) return last;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`pipeline ${id} never matched; last: ${JSON.stringify(last)}`);
}

describe('GET /api/pipelines', () => {
  it('lists the startable pipelines with their input schema and policy, and the run in the way while one holds the slot', async () => {
    const { server } = await setup();
    const [guarded, perUser, ...rest] = await list(server.httpUrl);
    expect(rest).toEqual([]);
    expect(guarded).toMatchObject({ pipeline_id: 'guarded', concurrency: { limit: 1, key: 'pipeline' }, can_start: true, latest_run: null });
    expect(guarded?.input_schema).toMatchObject({ type: 'object', properties: { hold_ms: { type: 'integer', minimum: 0 }, fail: { type: 'boolean' } } });
    expect(guarded).not.toHaveProperty('start_blocked_by');
    expect(perUser).toMatchObject({ pipeline_id: 'per_user', input_schema: null, concurrency: { limit: 1, key: 'input' }, can_start: true });

    const started = await fetch(`${server.httpUrl}/api/pipelines/guarded/runs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ input: { hold_ms: 60_000 } }),
    });
    const runId = ((await started.json()) as Json).run_id as string;
    const blocked = await until(server.httpUrl, 'guarded', (p) => p.latest_run !== null);
    expect(blocked.start_blocked_by).toBe(runId);
    expect(blocked.start_blocked_reason).toContain(runId);
    expect(blocked.start_blocked_reason).toMatch(/one run at a time/);
    expect(blocked.latest_run).toMatchObject({ run_id: runId, status: 'RUNNING' });
    // A policy keyed on the input is never shown blocked: it depends on the input.
    const ann = await fetch(`${server.httpUrl}/api/pipelines/per_user/runs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ input: { user: 'ann', hold_ms: 60_000 } }),
    });
    expect(ann.status).toBe(201);
    expect((await list(server.httpUrl))[1]).not.toHaveProperty('start_blocked_by');

    await fetch(`${server.httpUrl}/api/runs/${runId}/cancel`, { method: 'POST' });
    await fetch(`${server.httpUrl}/api/runs/${String(((await ann.json()) as Json).run_id)}/cancel`, { method: 'POST' });
    const free = await until(server.httpUrl, 'guarded', (p) => p.start_blocked_by === undefined);
    expect(free).not.toHaveProperty('start_blocked_reason');
  });

  it('shows a token only the pipelines it may read, with can_start from its start right; others are 404', async () => {
    const auth = {
      apiKeys: {
        reader: { id: 'reader', pipelines: ['guarded'] },
        starter: { id: 'starter', pipelines: '*' as const, actions: ['start' as const] },
      },
    };
    const { server } = await setup({ auth });
    expect((await get(server.httpUrl, '/api/pipelines')).status).toBe(401);
    expect((await get(server.httpUrl, '/api/pipelines', 'nope')).status).toBe(401);

    const seen = await list(server.httpUrl, 'reader');
    expect(seen.map((p) => p.pipeline_id)).toEqual(['guarded']);
    expect(seen[0]?.can_start).toBe(false);
    const hidden = await get(server.httpUrl, '/api/pipelines/per_user', 'reader');
    expect(hidden.status).toBe(404);
    expect(hidden.body.error).toMatchObject({ code: 'pipeline_not_found' });

    expect((await list(server.httpUrl, 'starter')).map((p) => [p.pipeline_id, p.can_start])).toEqual([
      ['guarded', true],
      ['per_user', true],
    ]);
    // A pipeline the server cannot start (tracked or not) is not one of them.
    expect((await get(server.httpUrl, '/api/pipelines/free', 'starter')).status).toBe(404);
    expect((await get(server.httpUrl, '/api/pipelines/guarded', 'starter')).body).toMatchObject({ pipeline_id: 'guarded', can_start: true });
    expect((await get(server.httpUrl, '/api/pipelines/bad%20id', 'starter')).status).toBe(400);
  });

  it('is in the OpenAPI document', async () => {
    const { server } = await setup();
    const doc = (await (await fetch(`${server.httpUrl}/api/openapi.json`)).json()) as { paths: Record<string, Record<string, { responses: Record<string, unknown> }>>; components: { schemas: Record<string, Json> } };
    expect(doc.paths['/api/pipelines']?.get?.responses).toHaveProperty('200');
    expect(doc.paths['/api/pipelines/{pipeline_id}']?.get?.responses).toHaveProperty('404');
    expect(doc.components.schemas.Pipeline?.properties).toHaveProperty('start_blocked_by');
  });
});

describe('GET /api/pipelines on the BullMQ broker', () => {
  it('names the run in the way, read from the Redis slot hash', async () => {
    const prefix = redis.prefix();
    const broker = new BullMQBroker({ connection: redis.url, keyPrefix: prefix });
    const p = runControlPipelines(broker);
    const server = getWebSocketServer({ port: 0, broker, restRateLimit: false, pipelines: [p.guarded] });
    cleanups.push(() => broker.close(), () => server.close());
    await server.startServer();
    const run = await p.guarded.kiq({ hold_ms: 60_000 });
    const blocked = await until(server.httpUrl, 'guarded', (i) => i.start_blocked_by !== undefined);
    expect(blocked.start_blocked_by).toBe(run.runId);
    await run.cancel();
    await until(server.httpUrl, 'guarded', (i) => i.start_blocked_by === undefined);
  });
});

function holdersSuite(name: string, make: () => RunSlots): void {
  describe(`${name}#holders`, () => {
    it('lists the live holders of a group, oldest first, and changes nothing', async () => {
      const slots = make();
      expect(await slots.holders('g')).toEqual([]);
      expect(await slots.acquire('g', 3, 'first', 60_000)).toEqual({ ok: true });
      await new Promise((r) => setTimeout(r, 5));
      expect(await slots.acquire('g', 3, 'second', 60_000)).toEqual({ ok: true });
      expect(await slots.acquire('g', 3, 'short', 1)).toEqual({ ok: true });
      await new Promise((r) => setTimeout(r, 20));
      const holders = await slots.holders('g');
      expect(holders.map((h) => h.run_id)).toEqual(['first', 'second']);
      expect(holders[0]?.since_ms).toBeLessThanOrEqual(holders[1]?.since_ms ?? 0);
      expect(await slots.holders('other')).toEqual([]);
      await slots.release('g', 'first');
      expect((await slots.holders('g')).map((h) => h.run_id)).toEqual(['second']);
    });
  });
}

holdersSuite('InMemoryRunSlots', () => new InMemoryRunSlots());
holdersSuite('RedisRunSlots', () => new RedisRunSlots(redis.connect(), redis.prefix()));
