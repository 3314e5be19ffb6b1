/**
 * `flowcast/client` in a browser: bundled by esbuild for the browser platform (a Node
 * module anywhere in it fails the build), loaded as an ES module in headless Chromium,
 * using the browser's own WebSocket against a real server, with a token (sent as a
 * subprotocol: a browser cannot set headers) and across a server restart.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import type { Browser, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { InMemoryBroker, InMemoryPipelineStorage, Pipeline, PipelineTrackingManager, type FlowcastEvent } from '../src/index.js';
import { getWebSocketServer, type FlowcastServer } from '../src/server/server.js';
import { launchChromium, openPage } from './helpers/browser.js';
import { deferred, waitUntil } from './helpers/collect.js';

const entry = fileURLToPath(new URL('../src/client/index.ts', import.meta.url));

const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** What the page's module puts on `window` (and the tests keep there). */
interface PageMonitor {
  on(type: string, listener: (payload: unknown) => void): () => void;
  subscribe(target: string): Promise<void>;
  connect(): Promise<void>;
  close(): Promise<void>;
  readonly state: string;
}
interface PageGlobals {
  PipelineMonitor: new (url: string, options: object) => PageMonitor;
  __events: unknown[];
  __states: string[];
  __monitor: PageMonitor;
}

async function bundle(): Promise<string> {
  const result = await build({ entryPoints: [entry], bundle: true, format: 'esm', platform: 'browser', target: 'es2022', write: false, logLevel: 'silent' });
  return result.outputFiles[0]?.text ?? '';
}

describe('flowcast/client in a browser', () => {
  let browser: Browser;
  let pages: Server;
  let base: string;
  let code: string;

  beforeAll(async () => {
    code = await bundle();
    browser = await launchChromium();
    const html = `<!doctype html><meta charset="utf-8"><title>client</title>
<script type="module">
  import { PipelineMonitor } from './client.js';
  window.PipelineMonitor = PipelineMonitor;
  window.__ready = true;
</script>`;
    pages = createServer((req, res) => {
      const path = new URL(req.url ?? '/', 'http://localhost').pathname;
      if (path === '/') res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(html);
      else if (path === '/client.js') res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' }).end(code);
      else res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => pages.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(pages.address() as AddressInfo).port}/`;
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await new Promise((resolve) => pages?.close(resolve));
  });

  it('bundles for the browser with no Node module or global', () => {
    expect(code.length).toBeGreaterThan(1000);
    expect(code).not.toMatch(/\bfrom\s*["']node:|require\(|\bprocess\.|\bBuffer\b|\bNodeJS\b/);
    expect(code).toMatch(/PipelineMonitor = class|class PipelineMonitor/);
    expect(code).not.toMatch(/fastify|@sinclair|typebox/);
  });

  it("follows a run with the browser's WebSocket and a token, across a server restart, with no event lost or repeated", { timeout: 60_000 }, async () => {
    const broker = new InMemoryBroker({ onError: () => undefined });
    const tracking = new PipelineTrackingManager().withStorage(new InMemoryPipelineStorage());
    const gate = deferred();
    cleanups.push(() => broker.close());
    cleanups.push(() => tracking.close());
    cleanups.push(() => gate.resolve());
    const before = broker.task('before', (n: number, ctx) => {
      ctx.log(`before ${n}`);
      return n + 1;
    });
    const wait = broker.task('wait', async (n: number, ctx) => {
      ctx.log('waiting');
      await gate.promise;
      ctx.log('released');
      return n * 2;
    });
    const pipeline = new Pipeline(broker, { id: 'demo' }).callNext(before).callNext(wait).callNext(before).withTracking(tracking);
    const auth = { apiKeys: { 'browser.key-1': { id: 'browser', pipelines: ['demo'] } } };
    const start = async (port: number): Promise<FlowcastServer> => {
      const server = getWebSocketServer({ host: '127.0.0.1', port, broker, tracking, auth, heartbeatMs: 0, allowedOrigins: [new URL(base).origin] });
      cleanups.push(() => server.close());
      await server.startServer();
      return server;
    };
    const first = await start(0);

    const { page, errors } = await openPage(browser, base);
    cleanups.push(() => page.close());
    await page.waitForFunction('window.__ready === true', undefined, { timeout: 20_000 });
    await page.evaluate(
      ({ url }) => {
        const w = globalThis as unknown as PageGlobals;
        const m = new w.PipelineMonitor(url, { token: 'browser.key-1', reconnect: { initialDelayMs: 20, maxDelayMs: 200 } });
        w.__events = [];
        w.__states = [];
        m.on('*', (e) => w.__events.push(e));
        m.on('state', (s) => w.__states.push((s as { to: string }).to));
        w.__monitor = m;
        const subscribed = m.subscribe('demo');
        return Promise.all([m.connect(), subscribed]).then(() => undefined);
      },
      { url: first.url },
    );
    const events = (): Promise<FlowcastEvent[]> => page.evaluate<FlowcastEvent[]>('window.__events');
    const states = (): Promise<string[]> => page.evaluate<string[]>('window.__states');
    const waitForPage = (condition: string, what: string): Promise<unknown> =>
      page.waitForFunction(condition, undefined, { timeout: 20_000 }).catch((error: unknown) => {
        throw new Error(`page: ${what} did not happen within 20s (${String(error)})`);
      });

    const run = await pipeline.kiq(1);
    await waitForPage(`window.__events.some((e) => e.type === 'StepLogEvent' && e.lines.includes('waiting'))`, 'the "waiting" log line');
    await first.close();
    await waitForPage(`window.__states.includes('reconnecting')`, 'the reconnecting state');
    // Events happen while the browser is away.
    gate.resolve();
    await run.waitResult({ timeoutMs: 20_000 });
    const second = await start(first.port);
    expect(second.port).toBe(first.port);
    await waitForPage(`window.__events.some((e) => e.type === 'PipelineCompleteEvent')`, 'the run end after the reconnect');

    const got = (await events()).filter((e) => e.run_id === run.runId);
    const log = await broker.transport.read(run.runId);
    expect(got.map((e) => `${e.seq} ${e.type}`)).toEqual(log.events.map((e) => `${e.seq} ${e.type}`));
    expect(got.map((e) => e.event_id)).toEqual(log.events.map((e) => e.event_id));
    const s = await states();
    expect(s.slice(0, 3)).toEqual(['connecting', 'open', 'reconnecting']);
    expect(s[s.length - 1]).toBe('open');
    await waitUntil(() => second.connections === 1, 'the browser on the new server');
    expect(errors).toEqual([]);
    await page.evaluate('window.__monitor.close()');
  });

  it('with a rejected token ends in state "closed" with an Unauthorized error, in the browser too', { timeout: 60_000 }, async () => {
    const broker = new InMemoryBroker();
    cleanups.push(() => broker.close());
    const server = getWebSocketServer({ host: '127.0.0.1', port: 0, broker, auth: { apiKeys: { good: { id: 'x' } } }, heartbeatMs: 0, allowedOrigins: [new URL(base).origin] });
    cleanups.push(() => server.close());
    await server.startServer();
    const page: Page = (await openPage(browser, base)).page;
    cleanups.push(() => page.close());
    await page.waitForFunction('window.__ready === true', undefined, { timeout: 20_000 });
    const outcome = await page.evaluate(async (url) => {
      const w = globalThis as unknown as PageGlobals;
      const m = new w.PipelineMonitor(url, { token: 'wrong' });
      try {
        await m.connect();
        return { ok: true, state: m.state };
      } catch (error) {
        const e = error as { name: string; code: string; message: string };
        return { ok: false, state: m.state, name: e.name, code: e.code, message: e.message };
      }
    }, server.url);
    expect(outcome).toMatchObject({ ok: false, state: 'closed', name: 'MonitorError', code: 'FLOWCAST_ERR_UNAUTHORIZED' });
    expect(outcome.message).toMatch(/^Unauthorized/);
  });
});
