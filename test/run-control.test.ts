/**
 * Starting runs over REST on the in-memory broker: POST /api/pipelines/{id}/runs starts a
 * run (201 + Location), checks the input schema and the "start" right, refuses a second
 * start while the concurrency policy is full (409 naming the run in the way), answers a
 * repeated idempotency key with the first run, and frees the slot on success, failure
 * and cancel.
 */
import { SignJWT } from 'jose';
import { afterEach, describe, expect, it } from 'vitest';
import { InMemoryBroker } from '../src/pipeline/memory-broker.js';
import { getEngine } from '../src/pipeline/engine.js';
import { AlreadyRunningError } from '../src/core/errors.js';
import { getWebSocketServer, type FlowcastServer } from '../src/server/index.js';
import type { ServerOptions } from '../src/server/options.js';
import { runControlPipelines } from './fixtures/run-control/pipelines.js';

type Json = Record<string, unknown>;
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function post(base: string, path: string, body: unknown, token?: string): Promise<{ status: number; body: Json; location: string | null }> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  const res = await fetch(base + path, { method: 'POST', headers, body: JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as Json, location: res.headers.get('location') };
}

async function setup(server: Partial<ServerOptions> = {}): Promise<{ broker: InMemoryBroker; server: FlowcastServer; p: ReturnType<typeof runControlPipelines> }> {
  const broker = new InMemoryBroker({ onError: () => undefined });
  const p = runControlPipelines(broker);
  const s = getWebSocketServer({ port: 0, broker, restRateLimit: false, pipelines: [p.guarded, p.perUser], ...server });
  cleanups.push(() => broker.close(), () => s.close());
  await s.startServer();
  return { broker, server: s, p };
}

async function ended(broker: InMemoryBroker, runId: string): Promise<string> {
  await getEngineWait(broker, runId);
  return (await broker.runState.getSummary(runId))?.status ?? 'unknown';
}

/** `true` when the group's slot is free now (the run's end freed it, not the next start). */
async function slotFree(broker: InMemoryBroker, group: string): Promise<boolean> {
  const claim = await broker.slots.acquire(group, 1, 'probe', 60_000);
  await broker.slots.release(group, 'probe');
  return claim.ok;
}

async function getEngineWait(broker: InMemoryBroker, runId: string): Promise<void> {
  await getEngine(broker).waitForRun(runId).catch(() => undefined);
}

describe('POST /api/pipelines/:pipeline_id/runs', () => {
  it('starts a run, refuses a second one naming the run in the way, and frees the slot at its end', async () => {
    const { broker, server } = await setup();
    const first = await post(server.httpUrl, '/api/pipelines/guarded/runs', { input: { hold_ms: 60_000 } });
    expect(first.status).toBe(201);
    expect(first.body).toMatchObject({ pipeline_id: 'guarded', status: 'RUNNING', deduplicated: false });
    const runId = first.body.run_id as string;
    expect(first.location).toBe(`/api/runs/${runId}`);
    expect((await broker.runState.getSummary(runId))?.status).toBe('RUNNING');

    const second = await post(server.httpUrl, '/api/pipelines/guarded/runs', { input: {} });
    expect(second.status).toBe(409);
    expect(second.body.error).toMatchObject({ code: 'already_running', run_id: runId, concurrency_key: '' });

    // Cancel frees the slot.
    const cancel = await fetch(`${server.httpUrl}/api/runs/${runId}/cancel`, { method: 'POST' });
    expect(cancel.status).toBe(200);
    expect(await slotFree(broker, 'run:guarded:')).toBe(true);
    const third = await post(server.httpUrl, '/api/pipelines/guarded/runs', { input: { fail: true } });
    expect(third.status).toBe(201);
    // Failure frees it.
    expect(await ended(broker, third.body.run_id as string)).toBe('FAILED');
    expect(await slotFree(broker, 'run:guarded:')).toBe(true);
    const fourth = await post(server.httpUrl, '/api/pipelines/guarded/runs', { input: {} });
    expect(fourth.status).toBe(201);
    // Success frees it.
    expect(await ended(broker, fourth.body.run_id as string)).toBe('COMPLETED');
    expect(await slotFree(broker, 'run:guarded:')).toBe(true);
    expect((await post(server.httpUrl, '/api/pipelines/guarded/runs', { input: {} })).status).toBe(201);
  });

  it('answers a retry over the concurrency limit with 409 already_running', async () => {
    const { PipelineTrackingManager, InMemoryPipelineStorage } = await import('../src/tracking/index.js');
    const tracking = new PipelineTrackingManager().withStorage(new InMemoryPipelineStorage());
    cleanups.push(() => tracking.close());
    const { broker, server, p } = await setup({ tracking });
    p.guarded.withTracking(tracking);
    const failed = await post(server.httpUrl, '/api/pipelines/guarded/runs', { input: { fail: true } });
    expect(await ended(broker, failed.body.run_id as string)).toBe('FAILED');
    await getEngine(broker).flushed(failed.body.run_id as string);
    const holding = await post(server.httpUrl, '/api/pipelines/guarded/runs', { input: { hold_ms: 60_000 } });
    const retry = await post(server.httpUrl, `/api/runs/${String(failed.body.run_id)}/retry`, {});
    expect(retry.status).toBe(409);
    expect(retry.body.error).toMatchObject({ code: 'already_running' });
    await fetch(`${server.httpUrl}/api/runs/${String(holding.body.run_id)}/cancel`, { method: 'POST' });
  });

  it('answers a repeated idempotency key with the first run, 200, and starts nothing', async () => {
    const { broker, server } = await setup();
    const first = await post(server.httpUrl, '/api/pipelines/per_user/runs', { input: { user: 'ann' }, idempotency_key: 'click-1' });
    expect(first.status).toBe(201);
    const again = await post(server.httpUrl, '/api/pipelines/per_user/runs', { input: { user: 'ann' }, idempotency_key: 'click-1' });
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ run_id: first.body.run_id, deduplicated: true });
    expect(again.location).toBe(`/api/runs/${String(first.body.run_id)}`);
    await ended(broker, first.body.run_id as string);
    // Still the same run once it ended (within the window).
    const late = await post(server.httpUrl, '/api/pipelines/per_user/runs', { input: { user: 'ann' }, idempotency_key: 'click-1' });
    expect(late.body).toMatchObject({ run_id: first.body.run_id, status: 'COMPLETED', deduplicated: true });
  });

  it('limits per concurrency key, from the input or from the body', async () => {
    const { server } = await setup();
    const ann = await post(server.httpUrl, '/api/pipelines/per_user/runs', { input: { user: 'ann', hold_ms: 60_000 } });
    expect(ann.status).toBe(201);
    const bob = await post(server.httpUrl, '/api/pipelines/per_user/runs', { input: { user: 'bob', hold_ms: 60_000 } });
    expect(bob.status).toBe(201);
    const again = await post(server.httpUrl, '/api/pipelines/per_user/runs', { input: { user: 'ann' } });
    expect(again.status).toBe(409);
    expect(again.body.error).toMatchObject({ run_id: ann.body.run_id, concurrency_key: 'ann' });
    expect((await post(server.httpUrl, '/api/pipelines/per_user/runs', { input: { user: 'ann' }, concurrency_key: 'carl' })).status).toBe(201);
    for (const id of [ann.body.run_id, bob.body.run_id]) await fetch(`${server.httpUrl}/api/runs/${String(id)}/cancel`, { method: 'POST' });
  });

  it('checks the input schema, the body, the start right and the server\'s pipelines', async () => {
    const auth = {
      apiKeys: {
        reader: { id: 'reader', pipelines: '*' as const },
        starter: { id: 'starter', pipelines: '*' as const, actions: ['start' as const] },
      },
    };
    const { server, p } = await setup({ auth });
    const bad = await post(server.httpUrl, '/api/pipelines/guarded/runs', { input: { hold_ms: 'soon' } }, 'starter');
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatchObject({ code: 'bad_request' });
    expect((bad.body.error as Json).message).toMatch(/hold_ms/);
    expect((await post(server.httpUrl, '/api/pipelines/guarded/runs', { input: {}, extra: 1 }, 'starter')).status).toBe(400);
    expect((await post(server.httpUrl, '/api/pipelines/guarded/runs', { input: {} })).status).toBe(401);
    expect((await post(server.httpUrl, '/api/pipelines/guarded/runs', { input: {} }, 'reader')).body.error).toMatchObject({ code: 'forbidden' });
    const unknown = await post(server.httpUrl, '/api/pipelines/free/runs', { input: {} }, 'starter');
    expect(unknown.status).toBe(501);
    expect(unknown.body.error).toMatchObject({ code: 'start_unavailable' });
    // kiq() checks the same schema and policy.
    await expect(p.guarded.kiq({ hold_ms: -1 })).rejects.toThrow(/hold_ms/);
    const run = await p.guarded.kiq({ hold_ms: 60_000 });
    await expect(p.guarded.kiq({})).rejects.toBeInstanceOf(AlreadyRunningError);
    await run.cancel();
  });

  it('lets a JWT whose actions claim is "*" start, and one without "start" not', async () => {
    const secret = 'run-control-test-secret-0123456789';
    const { server } = await setup({ auth: { jwt: { secret } } });
    const sign = (claims: Record<string, unknown>): Promise<string> => new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setSubject('u').sign(Buffer.from(secret));
    const all = await post(server.httpUrl, '/api/pipelines/per_user/runs', { input: { user: 'a' } }, await sign({ pipelines: '*', actions: '*' }));
    expect(all.status).toBe(201);
    const cancelOnly = await post(server.httpUrl, '/api/pipelines/per_user/runs', { input: { user: 'b' } }, await sign({ pipelines: '*', actions: ['cancel'] }));
    expect(cancelOnly.status).toBe(403);
    const starter = await post(server.httpUrl, '/api/pipelines/per_user/runs', { input: { user: 'c' } }, await sign({ pipelines: ['per_user'], actions: ['start'] }));
    expect(starter.status).toBe(201);
  });

  it('refuses a start from a page of another site, and starts nothing', async () => {
    const { broker, server } = await setup();
    const res = await fetch(`${server.httpUrl}/api/pipelines/guarded/runs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', origin: 'https://evil.example' },
      body: JSON.stringify({ input: { hold_ms: 60_000 } }),
    });
    expect(res.status).toBe(403);
    expect(await res.json()).toHaveProperty('error.code', 'forbidden_origin');
    expect(await slotFree(broker, 'run:guarded:')).toBe(true);
  });

  it('is in the OpenAPI document with its input schemas', async () => {
    const { server } = await setup();
    const doc = (await (await fetch(`${server.httpUrl}/api/openapi.json`)).json()) as { paths: Record<string, Record<string, { responses: Record<string, unknown>; description?: string }>> };
    const op = doc.paths['/api/pipelines/{pipeline_id}/runs']?.post;
    expect(op?.responses).toHaveProperty('201');
    expect(op?.responses).toHaveProperty('409');
    expect(op?.description).toContain('hold_ms');
  });
});

describe('InMemoryRunSlots', () => {
  it('drops expired groups nobody asks for again (idempotency keys do not pile up)', async () => {
    const { InMemoryRunSlots } = await import('../src/core/run-slots.js');
    const slots = new InMemoryRunSlots();
    for (let i = 0; i < 100; i++) expect(await slots.acquire(`idem:p:${i}`, 1, `run-${i}`, 1)).toEqual({ ok: true });
    await new Promise((r) => setTimeout(r, 5));
    for (let i = 0; i < 300; i++) await slots.acquire('run:p:', 1000, `live-${i}`, 60_000);
    expect(slots.size).toBe(1);
  });
});
