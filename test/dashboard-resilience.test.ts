/**
 * The dashboard when things are not simple: a server that wants tokens (the page asks
 * for one and shows only what it may read), a server restart (offline banner, then the
 * page catches up by itself), and the README's screenshot with the demo running.
 */
import { fileURLToPath } from 'node:url';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HookManager, InMemoryBroker, InMemoryPipelineStorage, PipelineTrackingManager } from '../src/index.js';
import { createDemo } from '../src/demo/pipelines.js';
import { runDemo } from '../src/demo/runner.js';
import { getWebSocketServer } from '../src/server/index.js';
import { launchChromium } from './helpers/browser.js';
import { expectNoErrors, open, requireBuiltDashboard, screenshot } from './helpers/dashboard.js';
import { logHolds, onCleanup, startFixture } from './helpers/server-fixture.js';

let browser: Browser;
beforeAll(async () => {
  requireBuiltDashboard();
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
});

const row = (runId: string): string => `[data-run-id="${runId}"]`;

describe('with auth on', () => {
  const auth = {
    apiKeys: {
      'key-alpha': { id: 'alpha-reader', pipelines: ['alpha'] },
      'key-admin': { id: 'admin', pipelines: '*' as const, actions: ['cancel' as const] },
    },
  };

  it('asks for a token, then shows only the pipelines that token may read, live too', async () => {
    const f = await startFixture({ server: { auth } });
    const alpha1 = await f.runToEnd(f.alpha);
    const beta1 = await f.runToEnd(f.beta);
    const w = await open(browser, `${f.server.httpUrl}/`);
    await w.page.waitForSelector('[data-testid="token-form"]');
    await screenshot(w, 'token-form', { fullPage: false });

    await w.page.fill('#token', 'not-a-key');
    await Promise.all([w.page.waitForEvent('load'), w.page.press('#token', 'Enter')]);
    await w.page.waitForSelector('[data-testid="token-form"] [role="alert"]');

    await w.page.fill('#token', 'key-alpha');
    await Promise.all([w.page.waitForEvent('load'), w.page.click('button[type="submit"]')]);
    await w.page.waitForSelector(row(alpha1));
    await w.page.waitForSelector('[data-testid="live-state"]:has-text("Live")');
    expect(await w.page.textContent('header')).toContain('alpha-reader');

    // Live: a beta run starts before an alpha run; once the alpha run shows, the beta one must not.
    const beta2 = await f.beta.kiq(1);
    const alpha2 = await f.alpha.kiq(1);
    await Promise.all([beta2.waitResult({ timeoutMs: 10_000 }), alpha2.waitResult({ timeoutMs: 10_000 })]);
    await w.page.waitForSelector(`${row(alpha2.runId)}[data-status="COMPLETED"]`);
    for (const hidden of [beta1, beta2.runId]) expect(await w.page.$(row(hidden))).toBeNull();
    expect(await w.page.textContent('body')).not.toContain('beta');
    const options = await w.page.locator('[data-testid="pipeline-filter"] option').allTextContents();
    expect(options).toEqual(['All pipelines', 'alpha']);
    await screenshot(w, 'overview-alpha-only', { fullPage: false });
    expectNoErrors(w);
  });
});

describe('server restart', () => {
  it('shows an offline banner while the server is down, then catches up on its own', async () => {
    const f = await startFixture();
    const run = await f.startGated({ key: 'r', phases: [1, 1] });
    await logHolds(f, run.runId, 3);
    const w = await open(browser, `${f.server.httpUrl}/`);
    await w.page.waitForSelector(`${row(run.runId)}[data-status="RUNNING"]`);
    await w.page.waitForSelector('[data-testid="live-state"]:has-text("Live")');
    const port = f.server.port;

    await f.server.close();
    await w.page.waitForSelector('[data-testid="offline"]');
    await screenshot(w, 'overview-offline', { fullPage: false });
    // The run ends while nobody serves the page: it must still show as ended afterwards.
    f.open('r', 0);
    await run.waitResult({ timeoutMs: 10_000 });

    const again = getWebSocketServer({ port, broker: f.broker, tracking: f.tracking, restRateLimit: false });
    onCleanup(() => again.close());
    await again.startServer();
    await w.page.waitForSelector('[data-testid="offline"]', { state: 'detached', timeout: 15_000 });
    await w.page.waitForSelector(`${row(run.runId)}[data-status="COMPLETED"]`);
    const later = await f.alpha.kiq(1);
    await w.page.waitForSelector(`${row(later.runId)}[data-status="COMPLETED"]`);
    // The browser itself logs the refused connection attempts; the page logs nothing else.
    expectNoErrors(w, { allowNetwork: true });
  });
});

describe('README screenshot', () => {
  it('writes docs/img/dashboard.png: the overview with the demo running', async () => {
    const broker = new InMemoryBroker({ onError: () => undefined });
    const tracking = new PipelineTrackingManager().withStorage(new InMemoryPipelineStorage());
    const hooks = new HookManager();
    const server = getWebSocketServer({ port: 0, broker, tracking, restRateLimit: false });
    await server.startServer();
    const stop = new AbortController();
    const demo = runDemo(createDemo(broker, hooks, tracking), { concurrency: 4, signal: stop.signal, pauseMs: { min: 50, max: 250 } });
    onCleanup(async () => {
      stop.abort(new Error('test over'));
      await demo.catch(() => undefined);
      await server.close();
      await tracking.close();
      await broker.close();
    });
    const w = await open(browser, `${server.httpUrl}/`);
    await w.page.waitForSelector('[data-testid="live-state"]:has-text("Live")');
    await w.page.waitForFunction("document.querySelectorAll('[data-run-id]').length >= 14", undefined, { timeout: 20_000 });
    await w.page.waitForSelector('[data-run-id][data-status="RUNNING"]');
    await w.page.waitForSelector('[data-run-id][data-status="FAILED"]');
    await w.page.setViewportSize({ width: 1280, height: 760 });
    await screenshot(w, 'dashboard', { fullPage: false, path: fileURLToPath(new URL('../docs/img/dashboard.png', import.meta.url)) });
    await screenshot(w, 'overview-demo', { fullPage: false });
    expectNoErrors(w);
  });
});
