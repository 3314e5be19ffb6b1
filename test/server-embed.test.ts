/**
 * flowcast mounted into apps of its users (docs/server.md, "Embedding"): the Fastify
 * plugin in a real Fastify app and `attachFlowcast` in a real Express 5 app, each on
 * port 0. The host's own routes keep working; REST, SSE, WebSocket, /metrics and the
 * dashboard (in Chromium) answer under the prefix and nothing outside it; auth and the
 * origin rules still apply there.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import Fastify from 'fastify';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { InMemoryBroker, InMemoryPipelineStorage, Pipeline, PipelineTrackingManager, type RunHandle } from '../src/index.js';
import { attachFlowcast, flowcastPlugin, type EmbeddedOptions } from '../src/server/index.js';
import { launchChromium } from './helpers/browser.js';
import { deferred, type Deferred } from './helpers/collect.js';
import { expectNoErrors, open, requireBuiltDashboard, screenshot } from './helpers/dashboard.js';
import { onCleanup } from './helpers/server-fixture.js';
import { connect, UpgradeRejected } from './helpers/ws-client.js';

type Host = 'fastify' | 'express';

interface Mounted {
  /** `http://127.0.0.1:port` of the host app. */
  origin: string;
  /** Starts a run whose step logs one line and waits for `release()`, then ends. */
  startHeld(): Promise<RunHandle<string>>;
  release(): void;
  tracking: PipelineTrackingManager;
  /** Closes flowcast (not the host). */
  closeFlowcast(): Promise<void>;
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** The host app (its own `/hello`, JSON `POST /echo` and a WebSocket at `/chat`) with flowcast at `/flowcast`. */
async function mount(host: Host, options: EmbeddedOptions = {}): Promise<Mounted> {
  const broker = new InMemoryBroker({ onError: () => undefined });
  const tracking = new PipelineTrackingManager().withStorage(new InMemoryPipelineStorage());
  let gate: Deferred = deferred();
  const hold = broker.task('hold', async (input: string, ctx) => {
    ctx.log(`holding ${input}`);
    await gate.promise;
    return input;
  });
  const held = new Pipeline<string>(broker, { id: 'held' }).callNext(hold).withTracking(tracking);
  const runs: RunHandle<string>[] = [];
  onCleanup(() => broker.close());
  onCleanup(() => tracking.close());
  onCleanup(async () => {
    gate.resolve();
    for (const run of runs) await run.waitResult({ timeoutMs: 10_000 }).catch(() => undefined);
  });
  const chat = new WebSocketServer({ noServer: true });
  onCleanup(() => new Promise<void>((resolve) => chat.close(() => resolve())));
  chat.on('connection', (ws) => ws.send('hello from chat'));
  const takeChat = (server: Server): void => {
    server.on('upgrade', (req, socket, head) => {
      if (req.url === '/chat') chat.handleUpgrade(req, socket, head, (ws) => chat.emit('connection', ws, req));
    });
  };
  const flowcastOptions = { broker, tracking, restRateLimit: false as const, ...options };
  let origin: string;
  let closeFlowcast: () => Promise<void>;
  if (host === 'fastify') {
    const app = Fastify();
    app.get('/hello', () => ({ hello: 'fastify' }));
    app.post('/echo', (request) => ({ echo: request.body }));
    await app.register(flowcastPlugin, { prefix: '/flowcast', ...flowcastOptions });
    takeChat(app.server);
    onCleanup(() => app.close());
    await app.listen({ port: 0, host: '127.0.0.1' });
    origin = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    closeFlowcast = () => app.flowcast.close();
  } else {
    const app = express();
    const server = createServer(app);
    const flowcast = attachFlowcast(server, { basePath: '/flowcast', ...flowcastOptions });
    app.use(flowcast.handler);
    app.use(express.json());
    app.get('/hello', (_req, res) => void res.json({ hello: 'express' }));
    app.post('/echo', (req, res) => void res.json({ echo: req.body as unknown }));
    takeChat(server);
    onCleanup(() => new Promise<void>((resolve) => server.close(() => resolve())));
    onCleanup(() => flowcast.close());
    origin = await listen(server);
    closeFlowcast = () => flowcast.close();
  }
  return {
    origin,
    tracking,
    async startHeld() {
      const run = await held.kiq('x');
      runs.push(run);
      return run;
    },
    release() {
      gate.resolve();
      gate = deferred();
    },
    closeFlowcast,
  };
}

async function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; text: string; type: string }> {
  const res = await fetch(url, { headers });
  return { status: res.status, text: await res.text(), type: res.headers.get('content-type') ?? '' };
}

/** Reads an SSE stream until `done(text)` holds. */
async function readSse(url: string, done: (text: string) => boolean): Promise<string> {
  const abort = new AbortController();
  const res = await fetch(url, { headers: { accept: 'text/event-stream' }, signal: abort.signal });
  expect(res.status).toBe(200);
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  let text = '';
  try {
    while (!done(text)) {
      const chunk = await reader.read();
      if (chunk.done) break;
      text += decoder.decode(chunk.value, { stream: true });
    }
  } finally {
    abort.abort();
  }
  return text;
}

function chatGreeting(origin: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${origin.replace('http', 'ws')}/chat`);
    ws.once('message', (data: Buffer) => {
      resolve(data.toString('utf8'));
      ws.close();
    });
    ws.once('error', reject);
  });
}

const auth = { apiKeys: { reader: { id: 'reader', pipelines: '*' as const } } };

for (const host of ['fastify', 'express'] as const) {
  describe(`flowcast in ${host}`, () => {
    it('keeps the host\'s routes, body parser and WebSocket, and answers nothing outside /flowcast', async () => {
      const m = await mount(host);
      expect(JSON.parse((await get(`${m.origin}/hello`)).text)).toEqual({ hello: host });
      const echo = await fetch(`${m.origin}/echo`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"a":1}' });
      expect(await echo.json()).toEqual({ echo: { a: 1 } });
      expect(await chatGreeting(m.origin)).toBe('hello from chat');
      for (const path of ['/health', '/metrics', '/api/runs', '/dashboard/runs', '/flowcastx/health']) {
        const answer = await get(`${m.origin}${path}`);
        expect(answer.status, path).toBe(404);
        expect(answer.text, path).not.toContain('not_found');
      }
    });

    it('serves REST, SSE, WebSocket events and /metrics under /flowcast', async () => {
      const m = await mount(host);
      expect(JSON.parse((await get(`${m.origin}/flowcast/health`)).text)).toMatchObject({ status: 'healthy' });
      const client = await connect(m.origin.replace('http', 'ws'), { path: '/flowcast/ws' });
      onCleanup(() => client.close());
      await client.subscribe({ pipeline_id: 'held' });
      const run = await m.startHeld();
      await client.waitFor((msg) => msg.type === 'StepLogEvent' && msg.run_id === run.runId, 'the step\'s log line over WebSocket');
      const sse = await readSse(`${m.origin}/flowcast/api/events?run_id=${run.runId}&since=0`, (t) => t.includes('StepLogEvent'));
      expect(sse).toContain('PipelineStartEvent');
      expect(sse).toContain('holding x');
      const runs = await get(`${m.origin}/flowcast/api/runs`);
      expect(runs.status).toBe(200);
      expect(runs.text).toContain(run.runId);
      m.release();
      await client.waitForEnd(run.runId);
      const metrics = await get(`${m.origin}/flowcast/metrics`);
      expect(metrics.status).toBe(200);
      expect(metrics.text).toMatch(/flowcast_pipeline_runs_total\{[^}]*pipeline_id="held"[^}]*\} 1/);
      // The root path of the mount is flowcast's WebSocket endpoint too, as `/` is on its own server.
      const atRoot = await connect(m.origin.replace('http', 'ws'), { path: '/flowcast/' });
      onCleanup(() => atRoot.close());
      expect((await atRoot.request({ type: 'ping' })).type).toBe('pong');
      // A POST with a JSON body reaches flowcast unread (mounted before the host's body parser).
      const cancel = await fetch(`${m.origin}/flowcast/api/runs/${run.runId}/cancel`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"reason":"x"}' });
      expect(cancel.status).toBe(409);
      expect(await cancel.text()).toContain('"error"');
    });

    it('enforces auth and the origin rules under the prefix', async () => {
      const m = await mount(host, { auth });
      expect((await get(`${m.origin}/flowcast/api/runs`)).status).toBe(401);
      expect((await get(`${m.origin}/flowcast/metrics`)).status).toBe(401);
      expect((await get(`${m.origin}/flowcast/api/runs`, { authorization: 'Bearer reader' })).status).toBe(200);
      expect((await get(`${m.origin}/flowcast/health`)).status).toBe(200);
      const refused = await connect(m.origin.replace('http', 'ws'), { path: '/flowcast/ws' });
      onCleanup(() => refused.close());
      expect((await refused.waitForClose()).code).toBe(4001);
      const ok = await connect(m.origin.replace('http', 'ws'), { path: '/flowcast/ws', queryToken: 'reader' });
      onCleanup(() => ok.close());
      expect((await ok.request({ type: 'ping' })).type).toBe('pong');
      const foreign = await get(`${m.origin}/flowcast/health`, { origin: 'http://evil.example' });
      expect(foreign.status).toBe(403);
      expect(foreign.text).toContain('forbidden_origin');
      await expect(connect(m.origin.replace('http', 'ws'), { path: '/flowcast/ws', queryToken: 'reader', origin: 'http://evil.example' })).rejects.toEqual(new UpgradeRejected(403));
      // The host's routes are the host's business: flowcast's auth does not reach them.
      expect((await get(`${m.origin}/hello`)).status).toBe(200);
    });

    it('close() ends flowcast\'s connections and leaves the host serving', async () => {
      const m = await mount(host);
      const client = await connect(m.origin.replace('http', 'ws'), { path: '/flowcast/ws' });
      onCleanup(() => client.close());
      await m.closeFlowcast();
      expect((await client.waitForClose()).code).toBe(1001);
      expect((await get(`${m.origin}/hello`)).status).toBe(200);
      expect(await chatGreeting(m.origin)).toBe('hello from chat');
    });
  });
}

describe('upgrades outside the prefix', () => {
  it('are answered 404 when flowcast is the server\'s only upgrade listener', async () => {
    const app = Fastify();
    await app.register(flowcastPlugin, { prefix: '/flowcast', restRateLimit: false });
    onCleanup(() => app.close());
    await app.listen({ port: 0, host: '127.0.0.1' });
    const ws = `ws://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    await expect(connect(ws, { path: '/ws' })).rejects.toEqual(new UpgradeRejected(404));
    const inside = await connect(ws, { path: '/flowcast/ws' });
    onCleanup(() => inside.close());
    expect((await inside.request({ type: 'ping' })).type).toBe('pong');
  });
});

describe('options', () => {
  it('refuses a missing base path and the host server\'s options', async () => {
    const server = createServer();
    expect(() => attachFlowcast(server, { basePath: '/' })).toThrow(/needs a base path such as "\/flowcast"/);
    expect(() => attachFlowcast(server, { basePath: '../x' })).toThrow(/basePath must be a path such as "\/flowcast"/);
    expect(() => attachFlowcast(server, { basePath: '/f', port: 1 } as never)).toThrow(/port is the host server's/);
    const app = Fastify();
    await expect(app.register(flowcastPlugin, {})).rejects.toThrow(/needs a base path/);
    await app.close();
  });
});

describe('the dashboard under /flowcast', () => {
  let browser: Browser;
  beforeAll(async () => {
    requireBuiltDashboard();
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
  });

  for (const host of ['fastify', 'express'] as const) {
    it(`loads in ${host} and shows a run live`, async () => {
      const m = await mount(host);
      const run = await m.startHeld();
      const w = await open(browser, `${m.origin}/flowcast/`);
      await w.page.waitForSelector(`[data-run-id="${run.runId}"]`, { timeout: 15_000 });
      await w.page.click(`[data-run-id="${run.runId}"] a`);
      await w.page.waitForURL((url) => url.pathname === `/flowcast/dashboard/runs/${run.runId}`);
      await w.page.waitForSelector('[data-testid="log-count"]:has-text("1 line")', { timeout: 15_000 });
      expect(await w.page.getAttribute('[data-testid="run-detail"]', 'data-status')).toBe('RUNNING');
      m.release();
      await w.page.waitForSelector('[data-testid="run-detail"][data-status="COMPLETED"]', { timeout: 15_000 });
      await w.page.reload();
      await w.page.waitForSelector('[data-testid="run-detail"][data-status="COMPLETED"]', { timeout: 15_000 });
      await screenshot(w, `embedded-${host}-run`);
      expectNoErrors(w);
    });
  }
});
