/**
 * What the server gives the dashboard, over real sockets: GET /api/engine and the
 * WebSocket `engine` channel (also through the client SDK), GET /api/session, retry and
 * the per-run actions, and the built dashboard served at `/` by default.
 */
import { WebSocket } from 'ws';
import { describe, expect, it } from 'vitest';
import { PipelineMonitor, type EngineStatusMessage } from '../src/client/index.js';
import { getWebSocketServer } from '../src/server/index.js';
import { requireBuiltDashboard } from './helpers/dashboard.js';
import { logHolds, onCleanup, startFixture } from './helpers/server-fixture.js';

type Json = Record<string, unknown>;

async function http(base: string, path: string, init: { method?: string; token?: string; body?: unknown } = {}): Promise<{ status: number; body: Json; text: string; type: string }> {
  const headers: Record<string, string> = {};
  if (init.token !== undefined) headers.authorization = `Bearer ${init.token}`;
  if (init.body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(base + path, { method: init.method ?? 'GET', headers, ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }) });
  const text = await res.text();
  let body: Json = {};
  try {
    body = JSON.parse(text) as Json;
  } catch {
    body = {};
  }
  return { status: res.status, body, text, type: res.headers.get('content-type') ?? '' };
}

const auth = {
  apiKeys: {
    reader: { id: 'reader', pipelines: ['alpha'] },
    operator: { id: 'operator', pipelines: '*' as const, actions: ['cancel' as const, 'retry' as const] },
  },
};

describe('GET /api/engine', () => {
  it('reports the broker\'s workers and queues, this server and its clients, and the instances', async () => {
    const f = await startFixture();
    await f.runToEnd(f.alpha);
    const client = await f.client();
    await client.subscribe({ pipeline_id: '*' });
    const { status, body } = await http(f.server.httpUrl, '/api/engine');
    expect(status).toBe(200);
    expect(body.broker).toBe('memory');
    expect((body.workers as Json[]).length).toBeGreaterThanOrEqual(1);
    expect(body.queues).toEqual(expect.any(Array));
    const server = body.server as { id: string; clients: number; events_per_second: number };
    expect(server.clients).toBe(1);
    expect(server.events_per_second).toBeGreaterThanOrEqual(0);
    expect((body.instances as { id: string }[]).map((i) => i.id)).toContain(server.id);
    expect(Number.isNaN(Date.parse(body.at as string))).toBe(false);
  });

  it('needs a valid token when auth is on', async () => {
    const f = await startFixture({ server: { auth } });
    expect((await http(f.server.httpUrl, '/api/engine')).status).toBe(401);
    expect((await http(f.server.httpUrl, '/api/engine', { token: 'nope' })).status).toBe(401);
    expect((await http(f.server.httpUrl, '/api/engine', { token: 'reader' })).status).toBe(200);
  });
});

describe('the engine channel', () => {
  it('pushes engine_status at once and on every interval until unsubscribed', async () => {
    const f = await startFixture({ server: { engineIntervalMs: 50 } });
    const c = await f.client();
    expect(await c.subscribe({ channel: 'engine' })).toMatchObject({ type: 'subscribed', channel: 'engine' });
    await c.waitUntil(() => c.controls('engine_status').length >= 3, 'three engine_status messages');
    const first = c.controls('engine_status')[0] as unknown as EngineStatusMessage;
    expect(first.broker).toBe('memory');
    expect(first.server.clients).toBe(1);
    expect(f.server.engine.subscriberCount).toBe(1);
    expect(await c.request({ type: 'unsubscribe', channel: 'engine' })).toMatchObject({ type: 'unsubscribed', channel: 'engine' });
    expect(f.server.engine.subscriberCount).toBe(0);
    expect(await c.request({ type: 'unsubscribe', channel: 'engine' })).toMatchObject({ type: 'error', code: 'not_subscribed' });
  });

  it('refuses malformed channel subscriptions', async () => {
    const f = await startFixture();
    const c = await f.client();
    for (const bad of [
      { type: 'subscribe', channel: 'runs' },
      { type: 'subscribe', channel: 'engine', pipeline_id: 'alpha' },
      { type: 'subscribe', channel: 'engine', event_types: ['StepLogEvent'] },
    ]) {
      expect(await c.request(bad), JSON.stringify(bad)).toMatchObject({ type: 'error', code: 'bad_message' });
    }
    expect(f.server.engine.subscriberCount).toBe(0);
  });

  it('a closed connection leaves the channel', async () => {
    const f = await startFixture({ server: { engineIntervalMs: 50 } });
    const c = await f.client();
    await c.subscribe({ channel: 'engine' });
    await c.close();
    const deadline = Date.now() + 5000;
    while (f.server.engine.subscriberCount > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(f.server.engine.subscriberCount).toBe(0);
  });

  it('works through the client SDK, also with an eventTypes filter on the monitor', async () => {
    const f = await startFixture({ server: { engineIntervalMs: 50 } });
    const monitor = new PipelineMonitor(f.server.url, { WebSocket, eventTypes: ['PipelineCompleteEvent'] });
    onCleanup(() => monitor.close());
    const got: EngineStatusMessage[] = [];
    monitor.on('engine_status', (m) => got.push(m));
    const subscribed = monitor.subscribe({ channel: 'engine' });
    await monitor.connect();
    await subscribed;
    const deadline = Date.now() + 5000;
    while (got.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(got.length).toBeGreaterThanOrEqual(2);
    expect(got[0]?.type).toBe('engine_status');
    expect(() => monitor.subscribe({ channel: 'nope' } as unknown as { channel: 'engine' })).toThrow(/channel must be "engine", received "nope"/);
  });
});

describe('GET /api/session', () => {
  it('says whether a token is needed and whose the sent one is, always with 200', async () => {
    const open = await startFixture();
    expect((await http(open.server.httpUrl, '/api/session')).body).toEqual({ auth_required: false, authenticated: true, principal: null });
    const f = await startFixture({ server: { auth } });
    expect((await http(f.server.httpUrl, '/api/session')).body).toEqual({ auth_required: true, authenticated: false, principal: null });
    const bad = await http(f.server.httpUrl, '/api/session', { token: 'nope' });
    expect(bad.status).toBe(200);
    expect(bad.body).toMatchObject({ authenticated: false });
    expect((await http(f.server.httpUrl, '/api/session', { token: 'reader' })).body).toEqual({
      auth_required: true,
      authenticated: true,
      principal: { id: 'reader', pipelines: ['alpha'] },
    });
  });
});

describe('retry and actions', () => {
  it('starts the same pipeline again with the same input', async () => {
    const f = await startFixture({ server: { pipelines: [] } });
    const server = getWebSocketServer({ port: 0, broker: f.broker, tracking: f.tracking, restRateLimit: false, pipelines: [f.alpha, f.gated] });
    onCleanup(() => server.close());
    await server.startServer();
    const id = await f.runToEnd(f.alpha, 10);
    const actions = await http(server.httpUrl, `/api/runs/${id}/actions`);
    expect(actions.body).toEqual({ run_id: id, pipeline_id: 'alpha', cancel: true, retry: true, resume: false, delete: true });
    const retried = await http(server.httpUrl, `/api/runs/${id}/retry`, { method: 'POST' });
    expect(retried.status).toBe(200);
    expect(retried.body).toMatchObject({ pipeline_id: 'alpha', retry_of: id });
    const newId = retried.body.run_id as string;
    expect(newId).not.toBe(id);
    const deadline = Date.now() + 5000;
    while ((await f.tracking.getStatus(newId))?.status !== 'COMPLETED' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(await f.tracking.getStatus(newId)).toMatchObject({ input: 10, result: 12, status: 'COMPLETED' });

    // A running run: 409. A server that does not know the pipeline: 501, and no Retry offered.
    const running = await f.startGated({ key: 'r', phases: [1, 1] });
    await logHolds(f, running.runId, 3);
    expect((await http(server.httpUrl, `/api/runs/${running.runId}/retry`, { method: 'POST' })).body).toHaveProperty('error.code', 'run_running');
    const unknown = await http(f.server.httpUrl, `/api/runs/${id}/retry`, { method: 'POST' });
    expect(unknown.status).toBe(501);
    expect(unknown.body).toHaveProperty('error.code', 'retry_unavailable');
    expect((await http(f.server.httpUrl, `/api/runs/${id}/actions`)).body).toMatchObject({ retry: false, cancel: true });
    expect((await http(server.httpUrl, '/api/runs/no-such-run/retry', { method: 'POST' })).status).toBe(404);
  });

  it('needs the retry action, and actions say what each principal may do', async () => {
    const f = await startFixture({ server: { auth } });
    const server = getWebSocketServer({ port: 0, broker: f.broker, tracking: f.tracking, restRateLimit: false, auth, pipelines: [f.alpha] });
    onCleanup(() => server.close());
    await server.startServer();
    const id = await f.runToEnd(f.alpha);
    const beta = await f.runToEnd(f.beta);
    expect((await http(server.httpUrl, `/api/runs/${id}/actions`, { token: 'reader' })).body).toMatchObject({ cancel: false, retry: false, delete: false });
    expect((await http(server.httpUrl, `/api/runs/${id}/actions`, { token: 'operator' })).body).toMatchObject({ cancel: true, retry: true, delete: false });
    // A run of a pipeline the caller may not read answers like a run that does not exist.
    expect((await http(server.httpUrl, `/api/runs/${beta}/actions`, { token: 'reader' })).status).toBe(404);
    expect((await http(server.httpUrl, `/api/runs/${id}/retry`, { method: 'POST', token: 'reader' })).status).toBe(403);
    expect((await http(server.httpUrl, `/api/runs/${id}/retry`, { method: 'POST' })).status).toBe(401);
    expect((await http(server.httpUrl, `/api/runs/${id}/retry`, { method: 'POST', token: 'operator' })).status).toBe(200);
  });

  it('checks the pipelines and engineIntervalMs options', () => {
    expect(() => getWebSocketServer({ port: 0, pipelines: 'alpha' as never })).toThrow(/pipelines must be an array of pipelines, received "alpha"/);
    expect(() => getWebSocketServer({ port: 0, pipelines: [{ pipelineId: 'a' }] as never })).toThrow(/pipelines must hold pipelines \(with pipelineId and kiq\(\)\)/);
    const p = { pipelineId: 'a', kiq: () => Promise.resolve({ runId: 'x' }) };
    expect(() => getWebSocketServer({ port: 0, pipelines: [p, p] })).toThrow(/two pipelines with the id "a"/);
    expect(() => getWebSocketServer({ port: 0, engineIntervalMs: 0 })).toThrow(/engineIntervalMs/);
  });
});

describe('the dashboard\'s files', () => {
  it('are served at / and /dashboard/* by default; staticDir: false gives the minimal page', async () => {
    requireBuiltDashboard();
    const f = await startFixture();
    const root = await http(f.server.httpUrl, '/');
    expect(root.status).toBe(200);
    expect(root.type).toMatch(/^text\/html/);
    const script = /<script[^>]+src="(\/dashboard\/assets\/[^"]+\.js)"/.exec(root.text)?.[1];
    expect(script).toBeDefined();
    expect(root.text).not.toMatch(/src="https?:/);
    const js = await http(f.server.httpUrl, script as string);
    expect(js.status).toBe(200);
    expect(js.type).toMatch(/javascript/);
    for (const route of ['/dashboard', '/dashboard/runs/abc', '/dashboard/engine', '/dashboard/metrics']) expect((await http(f.server.httpUrl, route)).text, route).toBe(root.text);
    expect((await http(f.server.httpUrl, '/dashboard/assets/nothing.js')).status).toBe(404);
    const minimal = await startFixture({ server: { staticDir: false } });
    expect((await http(minimal.server.httpUrl, '/')).text).toContain('minimal built-in page');
  });
});
