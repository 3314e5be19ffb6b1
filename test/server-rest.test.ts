/**
 * The REST API, its OpenAPI document and the dashboard's page (issue 3, item 4): every
 * route in-process with `server.app.inject()` over real runs (InMemoryBroker + Pipeline +
 * tracking); a real server on port 0 where a socket matters (GET / next to the WebSocket
 * endpoint, the placeholder page in headless Chromium).
 */
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import {
  InMemoryBroker,
  InMemoryPipelineStorage,
  Pipeline,
  PipelineTrackingManager,
  type PipelineStatus,
  type RunHandle,
} from '../src/index.js';
import { getWebSocketServer, type FlowcastServer, type ServerOptions } from '../src/server/index.js';
import { launchChromium, openPage } from './helpers/browser.js';
import { waitUntil } from './helpers/collect.js';

const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Setup {
  broker: InMemoryBroker;
  tracking: PipelineTrackingManager;
  alpha: Pipeline<number, number>;
  beta: Pipeline<number, number>;
  /** One step that runs until the run is cancelled. */
  held: Pipeline<number, number>;
  server: FlowcastServer;
  /** Runs started with `hold()`, cancelled at cleanup if still running. */
  holding: RunHandle<number>[];
  hold(): Promise<RunHandle<number>>;
}

/** Pipelines `alpha` and `beta` (two quick steps) and `held` (one step that waits for its cancel), tracked, and a server over them. */
function setup(options: Partial<ServerOptions> = {}): Setup {
  const broker = new InMemoryBroker({ onError: () => undefined });
  const tracking = new PipelineTrackingManager().withStorage(new InMemoryPipelineStorage());
  const inc = broker.task('inc', (n: number) => n + 1);
  const wait = broker.task('wait', (n: number, ctx) => {
    return new Promise<number>((resolve) => {
      if (ctx.signal.aborted) resolve(n);
      ctx.signal.addEventListener('abort', () => resolve(n), { once: true });
    });
  });
  const alpha = new Pipeline(broker, { id: 'alpha' }).callNext(inc).callNext(inc).withTracking(tracking);
  const beta = new Pipeline(broker, { id: 'beta' }).callNext(inc).callNext(inc).withTracking(tracking);
  const held = new Pipeline(broker, { id: 'alpha-held' }).callNext(wait).withTracking(tracking);
  const server = getWebSocketServer({ port: 0, broker, tracking, restRateLimit: false, ...options });
  const holding: RunHandle<number>[] = [];
  cleanups.push(() => broker.close());
  cleanups.push(() => tracking.close());
  cleanups.push(async () => {
    for (const run of holding) await run.cancel('test over');
  });
  cleanups.push(() => server.close());
  return {
    broker,
    tracking,
    alpha,
    beta,
    held,
    server,
    holding,
    async hold() {
      const run = await held.kiq(1);
      holding.push(run);
      return run;
    },
  };
}

async function finished<T extends number>(pipeline: Pipeline<number, T>, n = 1): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const run = await pipeline.kiq(i);
    await run.waitResult({ timeoutMs: 5_000 });
    ids.push(run.runId);
  }
  return ids;
}

interface Answer {
  status: number;
  body: Record<string, unknown>;
  headers: Record<string, string | string[] | number | undefined>;
  text: string;
}

async function call(server: FlowcastServer, method: 'GET' | 'POST' | 'DELETE', url: string, options: { token?: string; payload?: object | string; ip?: string } = {}): Promise<Answer> {
  const headers: Record<string, string> = {};
  if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
  const res = await server.app.inject({
    method,
    url,
    headers,
    ...(options.payload === undefined ? {} : { payload: options.payload }),
    ...(options.ip === undefined ? {} : { remoteAddress: options.ip }),
  });
  let body: Record<string, unknown> = {};
  if (String(res.headers['content-type'] ?? '').startsWith('application/json')) body = res.json();
  return { status: res.statusCode, body, headers: res.headers, text: res.body };
}

const get = (server: FlowcastServer, url: string, token?: string): Promise<Answer> => call(server, 'GET', url, token === undefined ? {} : { token });

function errorOf(a: Answer): { code: string; message: string } {
  expect(a.body).toHaveProperty('error');
  return a.body.error as { code: string; message: string };
}

const runsOf = (a: Answer): PipelineStatus[] => a.body.runs as PipelineStatus[];

describe('GET /api/runs', () => {
  it('lists runs newest first, paged by limit and offset, with next_offset', async () => {
    const s = setup();
    const ids = [...(await finished(s.alpha, 3)), ...(await finished(s.beta, 2))];
    const all = await get(s.server, '/api/runs');
    expect(all.status).toBe(200);
    expect(all.body).toMatchObject({ limit: 50, offset: 0, next_offset: null });
    expect(runsOf(all).map((r) => r.run_id).sort()).toEqual([...ids].sort());
    const starts = runsOf(all).map((r) => Date.parse(r.started_at as string));
    expect(starts).toEqual([...starts].sort((a, b) => b - a));

    const first = await get(s.server, '/api/runs?limit=2');
    const second = await get(s.server, '/api/runs?limit=2&offset=2');
    const last = await get(s.server, '/api/runs?limit=2&offset=4');
    expect(first.body.next_offset).toBe(2);
    expect(second.body.next_offset).toBe(4);
    expect(last.body.next_offset).toBeNull();
    const paged = [...runsOf(first), ...runsOf(second), ...runsOf(last)].map((r) => r.run_id);
    expect(paged).toEqual(runsOf(all).map((r) => r.run_id));
  });

  it('filters by status and pipeline_id', async () => {
    const s = setup();
    await finished(s.alpha, 2);
    const [betaRun] = await finished(s.beta, 1);
    const running = await s.hold();
    const byStatus = await get(s.server, '/api/runs?status=RUNNING');
    expect(runsOf(byStatus).map((r) => r.run_id)).toEqual([running.runId]);
    const byPipeline = await get(s.server, '/api/runs?pipeline_id=beta');
    expect(runsOf(byPipeline).map((r) => r.run_id)).toEqual([betaRun]);
    const both = await get(s.server, '/api/runs?pipeline_id=alpha&status=COMPLETED');
    expect(runsOf(both)).toHaveLength(2);
    expect(runsOf(both).every((r) => r.pipeline_id === 'alpha' && r.status === 'COMPLETED')).toBe(true);
  });

  it.each([
    ['limit=0', 'limit'],
    ['limit=1001', 'limit'],
    ['limit=abc', 'limit'],
    ['limit=1.5', 'limit'],
    ['offset=-1', 'offset'],
    ['status=DONE', 'status'],
    ['status=running', 'status'],
    ['pipeline_id=a%20b', 'pipeline_id'],
  ])('answers 400 bad_request naming the parameter for %s', async (query, name) => {
    const s = setup();
    const a = await get(s.server, `/api/runs?${query}`);
    expect(a.status).toBe(400);
    const error = errorOf(a);
    expect(error.code).toBe('bad_request');
    expect(error.message).toContain(name);
    expect(error.message).toContain('received');
  });
});

describe('GET /api/runs/:run_id', () => {
  it('answers the run with its steps', async () => {
    const s = setup();
    const [id] = await finished(s.alpha);
    const a = await get(s.server, `/api/runs/${id}`);
    expect(a.status).toBe(200);
    expect(a.body).toMatchObject({ run_id: id, pipeline_id: 'alpha', status: 'COMPLETED', result: 2 });
    const steps = a.body.steps as { step_name: string; status: string }[];
    expect(steps.map((st) => st.status)).toEqual(['COMPLETED', 'COMPLETED']);
  });

  it('answers 404 for an unknown run, and for a pipeline id (never its latest run)', async () => {
    const s = setup();
    await finished(s.alpha);
    for (const id of ['no-such-run', 'alpha']) {
      const a = await get(s.server, `/api/runs/${id}`);
      expect(a.status).toBe(404);
      expect(errorOf(a).code).toBe('run_not_found');
    }
  });

  it('answers 400 for a run id with characters no id has', async () => {
    const s = setup();
    const a = await get(s.server, '/api/runs/a%20b');
    expect(a.status).toBe(400);
    expect(errorOf(a).message).toContain('run_id');
  });
});

describe('GET /api/runs/:run_id/events', () => {
  it('reads the run log after since, paged by limit', async () => {
    const s = setup();
    const [id] = await finished(s.alpha);
    const all = await get(s.server, `/api/runs/${id}/events`);
    expect(all.status).toBe(200);
    const events = all.body.events as { seq: number; type: string; run_id: string }[];
    expect(events.map((e) => e.seq)).toEqual(events.map((_e, i) => i + 1));
    expect(events[0]?.type).toBe('PipelineStartEvent');
    expect(events.at(-1)?.type).toBe('PipelineCompleteEvent');
    expect(all.body).toMatchObject({ run_id: id, pipeline_id: 'alpha', first_seq: 1, last_seq: events.length, complete: true, ended: true, next_since: events.length });

    const page = await get(s.server, `/api/runs/${id}/events?since=2&limit=2`);
    expect((page.body.events as { seq: number }[]).map((e) => e.seq)).toEqual([3, 4]);
    expect(page.body.next_since).toBe(4);
    const after = await get(s.server, `/api/runs/${id}/events?since=${events.length}`);
    expect(after.body.events).toEqual([]);
  });

  it('works on a server without tracking (the log is the transport\'s)', async () => {
    const s = setup();
    const [id] = await finished(s.alpha);
    const bare = getWebSocketServer({ port: 0, broker: s.broker, restRateLimit: false });
    cleanups.push(() => bare.close());
    const a = await get(bare, `/api/runs/${id}/events?since=1`);
    expect(a.status).toBe(200);
    expect((a.body.events as { seq: number }[])[0]?.seq).toBe(2);
  });

  it.each(['since=-1', 'since=abc', 'limit=0', 'limit=10001'])('answers 400 for %s', async (query) => {
    const s = setup();
    const [id] = await finished(s.alpha);
    const a = await get(s.server, `/api/runs/${id}/events?${query}`);
    expect(a.status).toBe(400);
    expect(errorOf(a).code).toBe('bad_request');
  });

  it('answers 404 for an unknown run', async () => {
    const s = setup();
    const a = await get(s.server, '/api/runs/nope/events');
    expect(a.status).toBe(404);
    expect(errorOf(a).code).toBe('run_not_found');
  });
});

describe('POST /api/runs/:run_id/cancel', () => {
  it('cancels a running run: it ends CANCELLED with the reason given', async () => {
    const s = setup();
    const run = await s.hold();
    const a = await call(s.server, 'POST', `/api/runs/${run.runId}/cancel`, { payload: { reason: 'operator said so' } });
    expect(a.status).toBe(200);
    expect(a.body).toEqual({ run_id: run.runId, pipeline_id: 'alpha-held', status: 'CANCELLED', reason: 'operator said so' });
    await expect(run.waitResult({ timeoutMs: 5_000 })).rejects.toMatchObject({ code: 'FLOWCAST_ERR_CANCELLED' });
    const status = await s.tracking.getStatus(run.runId);
    expect(status).toMatchObject({ status: 'CANCELLED', error: 'operator said so' });
  });

  it('answers 409 for a run that already ended, and leaves it as it was', async () => {
    const s = setup();
    const [id] = await finished(s.alpha);
    const a = await call(s.server, 'POST', `/api/runs/${id}/cancel`);
    expect(a.status).toBe(409);
    expect(errorOf(a).code).toBe('run_ended');
    expect((await s.tracking.getStatus(id as string))?.status).toBe('COMPLETED');
  });

  it('answers 404 for an unknown run and 400 for a bad body', async () => {
    const s = setup();
    expect((await call(s.server, 'POST', '/api/runs/nope/cancel')).status).toBe(404);
    const run = await s.hold();
    const bodies: [string, string][] = [
      [JSON.stringify({ reason: '' }), 'application/json'],
      ['plain text', 'text/plain'],
    ];
    for (const [payload, type] of bodies) {
      const res = await s.server.app.inject({ method: 'POST', url: `/api/runs/${run.runId}/cancel`, payload, headers: { 'content-type': type } });
      expect(res.statusCode, type).toBe(400);
      expect(res.json()).toHaveProperty('error.code', 'bad_request');
    }
    expect((await s.tracking.getStatus(run.runId))?.status).toBe('RUNNING');
  });

  it('answers 501 cancel_unavailable on a server without a broker', async () => {
    const s = setup();
    const run = await s.hold();
    const bare = getWebSocketServer({ port: 0, transport: s.broker.transport, tracking: s.tracking, restRateLimit: false });
    cleanups.push(() => bare.close());
    const a = await call(bare, 'POST', `/api/runs/${run.runId}/cancel`);
    expect(a.status).toBe(501);
    expect(errorOf(a).code).toBe('cancel_unavailable');
  });
});

describe('DELETE /api/runs/:run_id', () => {
  it('deletes an ended run from tracking', async () => {
    const s = setup();
    const [id, other] = await finished(s.alpha, 2);
    const a = await call(s.server, 'DELETE', `/api/runs/${id}`);
    expect(a.status).toBe(200);
    expect(a.body).toEqual({ run_id: id, pipeline_id: 'alpha', deleted: 1 });
    expect((await get(s.server, `/api/runs/${id}`)).status).toBe(404);
    expect((await get(s.server, `/api/runs/${other}`)).status).toBe(200);
    expect((await call(s.server, 'DELETE', `/api/runs/${id}`)).status).toBe(404);
  });

  it('answers 409 run_running for a run still running', async () => {
    const s = setup();
    const run = await s.hold();
    const a = await call(s.server, 'DELETE', `/api/runs/${run.runId}`);
    expect(a.status).toBe(409);
    expect(errorOf(a).code).toBe('run_running');
    expect(await s.tracking.getStatus(run.runId)).not.toBeNull();
  });
});

describe('GET /api/pipelines/:pipeline_id/status', () => {
  it('answers the latest run of the pipeline (seed 001 §9.3)', async () => {
    const s = setup();
    const ids = await finished(s.alpha, 3);
    await finished(s.beta, 1);
    const a = await get(s.server, '/api/pipelines/alpha/status');
    expect(a.status).toBe(200);
    expect(a.body).toMatchObject({ pipeline_id: 'alpha', run_id: ids[2], status: 'COMPLETED' });
    expect(a.body.steps).toHaveLength(2);
  });

  it('answers 404 pipeline_not_found for a pipeline without runs', async () => {
    const s = setup();
    const a = await get(s.server, '/api/pipelines/gamma/status');
    expect(a.status).toBe(404);
    expect(errorOf(a).code).toBe('pipeline_not_found');
  });
});

describe('GET /api/history', () => {
  it('answers past runs, newest first, narrowed by limit, since, pipeline_id and ended_only', async () => {
    const s = setup();
    await finished(s.alpha, 3);
    await finished(s.beta, 1);
    const running = await s.hold();
    const all = await get(s.server, '/api/history');
    expect(all.status).toBe(200);
    expect(runsOf(all)).toHaveLength(5);
    expect(all.body.limit).toBe(100);
    expect(runsOf(await get(s.server, '/api/history?limit=2'))).toHaveLength(2);
    expect(runsOf(await get(s.server, '/api/history?pipeline_id=alpha'))).toHaveLength(3);
    const ended = runsOf(await get(s.server, '/api/history?ended_only=true'));
    expect(ended.map((r) => r.run_id)).not.toContain(running.runId);
    expect(ended).toHaveLength(4);
    const future = new Date(Date.now() + 3_600_000);
    expect(runsOf(await get(s.server, `/api/history?since=${future.toISOString()}`))).toEqual([]);
    expect(runsOf(await get(s.server, `/api/history?since=${future.getTime()}`))).toEqual([]);
    expect(runsOf(await get(s.server, '/api/history?since=2020-01-01T00:00:00Z'))).toHaveLength(5);
  });

  it.each(['since=yesterday', 'since=2024-13-45', 'limit=0', 'ended_only=maybe'])('answers 400 for %s', async (query) => {
    const s = setup();
    const a = await get(s.server, `/api/history?${query}`);
    expect(a.status).toBe(400);
    expect(errorOf(a).code).toBe('bad_request');
  });
});

describe('GET /api/metrics', () => {
  it('answers the statistics of tracking, for every pipeline or one', async () => {
    const s = setup();
    await finished(s.alpha, 3);
    await finished(s.beta, 1);
    const all = await get(s.server, '/api/metrics');
    expect(all.status).toBe(200);
    expect(all.body).toMatchObject({ period_days: 7, total_pipelines: 4, completed: 4, success_rate: 1 });
    const one = await get(s.server, '/api/metrics?days=0.5&pipeline_id=beta');
    expect(one.body).toMatchObject({ period_days: 0.5, total_pipelines: 1 });
  });

  it.each(['days=0', 'days=-1', 'days=abc', 'days=4000'])('answers 400 for %s', async (query) => {
    const s = setup();
    const a = await get(s.server, `/api/metrics?${query}`);
    expect(a.status).toBe(400);
    expect(errorOf(a).message).toContain('days');
  });
});

describe('without tracking', () => {
  it('tracking routes answer 503 tracking_unavailable', async () => {
    const broker = new InMemoryBroker();
    cleanups.push(() => broker.close());
    const server = getWebSocketServer({ port: 0, broker, restRateLimit: false });
    cleanups.push(() => server.close());
    for (const url of ['/api/runs', '/api/runs/x', '/api/pipelines/x/status', '/api/history', '/api/metrics']) {
      const a = await get(server, url);
      expect(a.status, url).toBe(503);
      expect(errorOf(a).code).toBe('tracking_unavailable');
      expect(errorOf(a).message).toContain('tracking');
    }
  });

  it('refuses a tracking object that is not a tracking manager', () => {
    expect(() => getWebSocketServer({ port: 0, tracking: { getStatus: () => Promise.resolve(null) } as never })).toThrow(/tracking must be a PipelineTrackingManager: it has no listPipelines/);
  });
});

describe('errors', () => {
  it('answers unknown routes with a JSON 404', async () => {
    const s = setup();
    const a = await get(s.server, '/api/nothing-here');
    expect(a.status).toBe(404);
    expect(errorOf(a).code).toBe('not_found');
  });

  it('never answers 500 to malformed input', async () => {
    const s = setup();
    const [id] = await finished(s.alpha);
    const urls = [
      '/api/runs?limit=',
      '/api/runs?limit=1&limit=2',
      '/api/runs?offset=1e3000',
      '/api/runs?status=',
      '/api/runs/%E0%A4%A',
      `/api/runs/${id}/events?since=99999999999999999999999`,
      '/api/history?since=',
      '/api/history?limit=-5',
      '/api/metrics?days=NaN',
      '/api/metrics?days=Infinity',
      `/api/runs/${'x'.repeat(300)}`,
    ];
    for (const url of urls) {
      const a = await get(s.server, url);
      expect(a.status, url).toBeGreaterThanOrEqual(400);
      expect(a.status, url).toBeLessThan(500);
      expect(errorOf(a).code, url).toMatch(/^[a-z_]+$/);
    }
    const posts = [
      { payload: '{"reason":', headers: { 'content-type': 'application/json' } },
      { payload: '{}', headers: { 'content-type': 'application/xml' } },
      { payload: JSON.stringify({ reason: 'x'.repeat(600) }), headers: { 'content-type': 'application/json' } },
    ];
    for (const p of posts) {
      const res = await s.server.app.inject({ method: 'POST', url: `/api/runs/${id}/cancel`, ...p });
      expect(res.statusCode, p.payload).toBeGreaterThanOrEqual(400);
      expect(res.statusCode, p.payload).toBeLessThan(500);
      expect(res.json()).toHaveProperty('error.code');
    }
  });
});

describe('auth', () => {
  const apiKeys = {
    'admin-key': { id: 'admin', pipelines: '*' as const, actions: ['cancel' as const, 'delete' as const] },
    'alpha-key': { id: 'alpha-reader', pipelines: ['alpha', 'alpha-held'] },
    'alpha-op-key': { id: 'alpha-operator', pipelines: ['alpha', 'alpha-held'], actions: ['cancel' as const, 'delete' as const] },
  };
  const secured = () => setup({ auth: { apiKeys } });

  it('answers 401 without a token or with a bad one, on every REST route', async () => {
    const s = secured();
    const routes: ['GET' | 'POST' | 'DELETE', string][] = [
      ['GET', '/api/runs'],
      ['GET', '/api/runs/x'],
      ['GET', '/api/runs/x/events'],
      ['POST', '/api/runs/x/cancel'],
      ['DELETE', '/api/runs/x'],
      ['GET', '/api/pipelines/alpha/status'],
      ['GET', '/api/history'],
      ['GET', '/api/metrics'],
      ['GET', '/metrics'],
    ];
    for (const [method, url] of routes) {
      for (const token of [undefined, 'wrong-key']) {
        const a = await call(s.server, method, url, token === undefined ? {} : { token });
        expect(a.status, `${method} ${url} ${token}`).toBe(401);
        expect(errorOf(a).code).toBe('unauthorized');
        expect(a.headers['www-authenticate']).toBe('Bearer');
      }
    }
    // Bad parameters and no token: the token is checked first.
    expect((await get(s.server, '/api/runs?limit=0')).status).toBe(401);
  });

  it('keeps /health, the OpenAPI document and the page open', async () => {
    const s = secured();
    expect((await get(s.server, '/health')).status).toBe(200);
    expect((await get(s.server, '/api/openapi.json')).status).toBe(200);
    expect((await get(s.server, '/')).status).toBe(200);
  });

  it('accepts the token as Authorization: Bearer or ?token=', async () => {
    const s = secured();
    expect((await get(s.server, '/api/runs', 'admin-key')).status).toBe(200);
    expect((await get(s.server, '/api/runs?token=admin-key')).status).toBe(200);
  });

  it('answers 403 for a pipeline or a filter the principal may not read', async () => {
    const s = secured();
    const [betaRun] = await finished(s.beta);
    for (const url of ['/api/pipelines/beta/status', '/api/runs?pipeline_id=beta', '/api/history?pipeline_id=beta', '/api/metrics?pipeline_id=beta']) {
      const a = await get(s.server, url, 'alpha-key');
      expect(a.status, url).toBe(403);
      expect(errorOf(a).code).toBe('forbidden');
      expect(a.text).not.toContain(betaRun);
    }
  });

  it('answers a run the principal may not read exactly like a run that does not exist (no oracle of run ids)', async () => {
    const s = secured();
    const [betaRun] = await finished(s.beta);
    const unknown = 'f0000000-0000-4000-8000-000000000000';
    for (const path of ['', '/events', '/actions']) {
      const forbidden = await get(s.server, `/api/runs/${betaRun}${path}`, 'alpha-key');
      const missing = await get(s.server, `/api/runs/${unknown}${path}`, 'alpha-key');
      expect(forbidden.status, path).toBe(404);
      expect(forbidden.text.replace(betaRun as string, 'ID')).toBe(missing.text.replace(unknown, 'ID'));
      expect(forbidden.text).not.toContain('beta');
    }
    expect((await get(s.server, `/api/runs/${betaRun}`, 'admin-key')).status).toBe(200);
  });

  it('filters lists, history and statistics to readable pipelines, paging over what is readable', async () => {
    const s = secured();
    const alphaRuns: string[] = [];
    const betaRuns: string[] = [];
    for (let i = 0; i < 3; i++) {
      alphaRuns.push(...(await finished(s.alpha)));
      betaRuns.push(...(await finished(s.beta)));
    }
    const listed = runsOf(await get(s.server, '/api/runs', 'alpha-key'));
    expect(listed.map((r) => r.run_id).sort()).toEqual([...alphaRuns].sort());
    const first = await get(s.server, '/api/runs?limit=2', 'alpha-key');
    const rest = await get(s.server, '/api/runs?limit=2&offset=2', 'alpha-key');
    expect(first.body.next_offset).toBe(2);
    expect(rest.body.next_offset).toBeNull();
    expect([...runsOf(first), ...runsOf(rest)].map((r) => r.run_id)).toEqual(listed.map((r) => r.run_id));

    const history = await get(s.server, '/api/history?limit=2', 'alpha-key');
    expect(runsOf(history)).toHaveLength(2);
    expect(runsOf(history).every((r) => r.pipeline_id === 'alpha')).toBe(true);
    const stats = await get(s.server, '/api/metrics', 'alpha-key');
    expect(stats.body).toMatchObject({ total_pipelines: 3 });
    expect(Object.keys(stats.body.by_pipeline as object)).toEqual(['alpha']);
    for (const a of [await get(s.server, '/api/runs', 'alpha-key'), history, stats]) {
      for (const id of betaRuns) expect(a.text).not.toContain(id);
      expect(a.text).not.toContain('"beta"');
    }
    expect(runsOf(await get(s.server, '/api/runs', 'admin-key'))).toHaveLength(6);
  });

  it('cancel needs the cancel action: 403 leaves the run running, the operator ends it CANCELLED', async () => {
    const s = secured();
    const run = await s.hold();
    const refused = await call(s.server, 'POST', `/api/runs/${run.runId}/cancel`, { token: 'alpha-key' });
    expect(refused.status).toBe(403);
    expect(errorOf(refused).code).toBe('forbidden');
    expect((await s.tracking.getStatus(run.runId))?.status).toBe('RUNNING');

    const done = await call(s.server, 'POST', `/api/runs/${run.runId}/cancel`, { token: 'alpha-op-key' });
    expect(done.status).toBe(200);
    await expect(run.waitResult({ timeoutMs: 5_000 })).rejects.toMatchObject({ code: 'FLOWCAST_ERR_CANCELLED' });
    const status = await get(s.server, `/api/runs/${run.runId}`, 'alpha-key');
    expect(status.body).toMatchObject({ status: 'CANCELLED', error: 'cancelled through the REST API by alpha-operator' });
  });

  it('delete needs the delete action', async () => {
    const s = secured();
    const [id] = await finished(s.alpha);
    const refused = await call(s.server, 'DELETE', `/api/runs/${id}`, { token: 'alpha-key' });
    expect(refused.status).toBe(403);
    expect((await get(s.server, `/api/runs/${id}`, 'alpha-key')).status).toBe(200);
    expect((await call(s.server, 'DELETE', `/api/runs/${id}`, { token: 'alpha-op-key' })).status).toBe(200);
    expect((await get(s.server, `/api/runs/${id}`, 'alpha-key')).status).toBe(404);
  });

  it('a custom authorize rule decides too', async () => {
    const s = setup({ auth: { apiKeys, authorize: (principal, pipelineId, action) => principal?.id === 'admin' || (pipelineId === 'beta' && action === 'read') } });
    await finished(s.alpha, 2);
    const [betaRun] = await finished(s.beta);
    const listed = runsOf(await get(s.server, '/api/runs', 'alpha-key'));
    expect(listed.map((r) => r.run_id)).toEqual([betaRun]);
  });
});

describe('rate limit', () => {
  it('answers 429 with Retry-After past the burst, per client address', async () => {
    const s = setup({ restRateLimit: { requestsPerSecond: 0.01, burst: 3 } });
    for (let i = 0; i < 3; i++) expect((await call(s.server, 'GET', '/api/runs', { ip: '10.0.0.1' })).status).toBe(200);
    const limited = await call(s.server, 'GET', '/api/runs', { ip: '10.0.0.1' });
    expect(limited.status).toBe(429);
    expect(errorOf(limited).code).toBe('rate_limited');
    expect(Number(limited.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect((await call(s.server, 'GET', '/api/runs', { ip: '10.0.0.2' })).status).toBe(200);
    expect((await call(s.server, 'GET', '/health', { ip: '10.0.0.1' })).status).toBe(200);
  });

  it('validates its options', () => {
    expect(() => getWebSocketServer({ port: 0, restRateLimit: { requestsPerSecond: 0 } })).toThrow(/restRateLimit.requestsPerSecond must be a finite number > 0, received 0/);
    expect(() => getWebSocketServer({ port: 0, restRateLimit: { burts: 5 } as never })).toThrow(/restRateLimit has an unknown option "burts"/);
  });
});

describe('GET /api/openapi.json', () => {
  it('is an OpenAPI 3.1 document with every route, its parameters and resolvable references', async () => {
    const s = setup();
    const a = await get(s.server, '/api/openapi.json');
    expect(a.status).toBe(200);
    const doc = JSON.parse(a.text) as {
      openapi: string;
      info: { title: string; version: string };
      paths: Record<string, Record<string, { parameters?: { name: string; in: string; schema: Record<string, unknown> }[]; responses: Record<string, unknown> }>>;
      components: { schemas: Record<string, unknown> };
    };
    expect(doc.openapi).toBe('3.1.0');
    expect(doc.info.version).toMatch(/^\d+\.\d+\.\d+/);
    const expected = [
      'get /api/runs',
      'get /api/runs/{run_id}',
      'delete /api/runs/{run_id}',
      'get /api/runs/{run_id}/events',
      'post /api/runs/{run_id}/cancel',
      'get /api/pipelines/{pipeline_id}/status',
      'get /api/history',
      'get /api/metrics',
      'get /api/openapi.json',
      'get /api/events',
      'get /health',
      'get /metrics',
      'get /',
    ];
    const documented = Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m} ${path}`));
    for (const op of expected) expect(documented).toContain(op);
    // Every documented path is a real route.
    for (const op of documented) {
      const [method, path] = op.split(' ') as [string, string];
      const url = path.replace(/\{path\}$/, '*').replace(/\{([a-z_]+)\}/g, ':$1');
      expect(s.server.app.hasRoute({ method: method.toUpperCase(), url }), op).toBe(true);
    }
    const limit = doc.paths['/api/runs']?.get?.parameters?.find((p) => p.name === 'limit');
    expect(limit).toMatchObject({ in: 'query', schema: { type: 'integer', minimum: 1, maximum: 1000, default: 50 } });
    const status = doc.paths['/api/runs']?.get?.parameters?.find((p) => p.name === 'status');
    expect(status?.schema.enum).toEqual(['PENDING', 'RUNNING', 'COMPLETED', 'FAILED', 'CANCELLED']);
    expect(doc.paths['/api/runs/{run_id}']?.get?.parameters?.[0]).toMatchObject({ name: 'run_id', in: 'path' });
    for (const refs of a.text.matchAll(/"\$ref":"#\/components\/schemas\/([A-Za-z]+)"/g)) expect(doc.components.schemas).toHaveProperty(refs[1] as string);
    expect(Object.keys(doc.components.schemas)).toEqual(expect.arrayContaining(['RunStatus', 'StepStatus', 'Error', 'Event', 'Metrics']));
    expect(a.text).not.toContain('$id');
  });
});

describe('GET / (the dashboard placeholder)', () => {
  it('serves the built-in page at / and /dashboard/*, linking to the API, with no script from elsewhere', async () => {
    const s = setup({ staticDir: false });
    for (const url of ['/', '/dashboard', '/dashboard/runs/123']) {
      const a = await get(s.server, url);
      expect(a.status, url).toBe(200);
      expect(String(a.headers['content-type'])).toMatch(/^text\/html/);
      expect(a.text).toContain('minimal built-in page');
      for (const link of ['href="/api/openapi.json"', 'href="/health"', 'href="/metrics"']) expect(a.text).toContain(link);
      expect(a.text).not.toMatch(/<script[^>]+src=/);
      expect(a.text).not.toMatch(/<link[^>]+href="https?:/);
    }
  });

  it('serves staticDir when given: index.html at / and files under /dashboard/', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'flowcast-static-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, 'index.html'), '<!doctype html><title>my dashboard</title><script src="/dashboard/assets/app.js"></script>');
    mkdirSync(join(dir, 'assets'));
    writeFileSync(join(dir, 'assets', 'app.js'), 'console.log("app")');
    const s = setup({ staticDir: dir });
    const root = await get(s.server, '/');
    expect(root.status).toBe(200);
    expect(root.text).toContain('my dashboard');
    const asset = await get(s.server, '/dashboard/assets/app.js');
    expect(asset.status).toBe(200);
    expect(asset.text).toBe('console.log("app")');
    expect(String(asset.headers['content-type'])).toMatch(/javascript/);
    expect((await get(s.server, '/dashboard/runs/abc')).text).toContain('my dashboard');
    const missing = await get(s.server, '/dashboard/assets/missing.js');
    expect(missing.status).toBe(404);
    expect((await get(s.server, '/dashboard/../package.json')).text).not.toContain('"name": "flowcast"');
    expect((await get(s.server, '/api/nothing')).body).toHaveProperty('error.code', 'not_found');
  });

  it('refuses a staticDir that is not a directory', () => {
    expect(() => getWebSocketServer({ port: 0, staticDir: '/no/such/dir' })).toThrow(/staticDir must be an existing directory, received "\/no\/such\/dir"/);
  });

  it('on a real socket, GET / answers the page while a WebSocket upgrade at / gets the live endpoint', async () => {
    const s = setup({ staticDir: false });
    await s.server.startServer();
    const res = await fetch(`${s.server.httpUrl}/`);
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('<title>flowcast</title>');
    const ws = new WebSocket(`${s.server.url}/`);
    cleanups.push(() => ws.close());
    const pong = await new Promise<Record<string, unknown>>((resolve, reject) => {
      ws.once('error', reject);
      ws.once('open', () => ws.send(JSON.stringify({ type: 'ping', id: 7 })));
      ws.once('message', (data: Buffer) => resolve(JSON.parse(data.toString()) as Record<string, unknown>));
    });
    expect(pong).toMatchObject({ type: 'pong', id: 7 });
  });

  describe('in headless Chromium', () => {
    let browser: Browser;
    beforeAll(async () => {
      browser = await launchChromium();
    });
    afterAll(async () => {
      await browser?.close();
    });

    it('shows the live events of a run started after the page opened', async () => {
      const s = setup({ staticDir: false });
      await s.server.startServer();
      const watched = await openPage(browser, `${s.server.httpUrl}/`);
      cleanups.push(() => watched.page.close());
      await watched.page.waitForFunction("document.getElementById('state').textContent === 'open'", undefined, { timeout: 10_000 });
      // The page subscribes right after `open`: wait until the server holds its subscription.
      await waitUntil(() => s.server.hub.subscriptionCount === 1, 'the page subscribed', 10_000);
      const [id] = await finished(s.alpha);
      await watched.page.waitForFunction("document.getElementById('events').textContent.includes('PipelineComplete')", undefined, { timeout: 10_000 });
      const text = (await watched.page.textContent('#events')) ?? '';
      expect(text).toContain('alpha');
      expect(text).toContain((id as string).slice(0, 8));
      expect(text).toContain('StepStart');
      expect(watched.errors).toEqual([]);
      expect(watched.consoleErrors()).toEqual([]);
    });
  });
});
