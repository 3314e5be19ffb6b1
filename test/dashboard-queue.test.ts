/**
 * A pipeline that queues starts over its limit, in the dashboard (headless Chromium, a
 * real server on port 0, in-memory broker): the Pipelines page keeps Start enabled and
 * says the start will queue behind the run in flight; the start opens the new run's page
 * showing it Queued, and the page follows it live when its turn comes, to its end. The
 * Runs page lists a queued run and sees it start live.
 */
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { InMemoryBroker, InMemoryPipelineStorage, Pipeline, PipelineTrackingManager } from '../src/index.js';
import { getWebSocketServer } from '../src/server/index.js';
import { launchChromium } from './helpers/browser.js';
import { deferred, type Deferred } from './helpers/collect.js';
import { expectNoErrors, open, requireBuiltDashboard } from './helpers/dashboard.js';
import { onCleanup } from './helpers/server-fixture.js';

vi.setConfig({ testTimeout: 60_000 });

let browser: Browser;
beforeAll(async () => {
  requireBuiltDashboard();
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
});

describe('Pipelines page with a pipeline that queues', () => {
  it('says a start will queue behind the run in flight, and opens the queued run, which runs when its turn comes', async () => {
    const broker = new InMemoryBroker({ onError: () => undefined });
    const tracking = new PipelineTrackingManager().withStorage(new InMemoryPipelineStorage());
    const gates = new Map<string, Deferred>();
    const gate = (label: string): Deferred => {
      let g = gates.get(label);
      if (g === undefined) gates.set(label, (g = deferred()));
      return g;
    };
    const task = broker.task('wait_gate', async (input: { label: string }) => {
      await gate(input.label).promise;
      return `${input.label} done`;
    });
    const exports = new Pipeline<{ label: string }>(broker, { id: 'exports', concurrency: { limit: 1, onLimit: 'queue' } }).callNext(task).withTracking(tracking);
    const server = getWebSocketServer({ port: 0, broker, tracking, restRateLimit: false, pipelines: [exports] });
    onCleanup(() => broker.close());
    onCleanup(() => tracking.close());
    onCleanup(() => server.close());
    onCleanup(() => {
      for (const g of gates.values()) g.resolve();
      return Promise.resolve();
    });
    await server.startServer();
    const held = await exports.kiq({ label: 'first' });
    const early = await exports.kiq({ label: 'early' });
    expect(early.queued?.position).toBe(1);

    // The Runs page lists the queued run (GET /api/runs answers it in `queued`), then follows it live.
    const runs = await open(browser, `${server.httpUrl}/dashboard/runs`);
    await runs.page.waitForSelector('[data-testid="count-QUEUED"]:has-text("1")');
    expect(await runs.page.textContent('[data-testid="count-RUNNING"]')).toContain('1');

    const w = await open(browser, `${server.httpUrl}/dashboard/pipelines`);
    const card = '[data-testid="pipeline"][data-pipeline-id="exports"]';
    await w.page.waitForSelector(`${card} [data-testid="start-queues"]`);
    expect(await w.page.textContent(`${card} [data-testid="policy"]`)).toBe('One run at a time; more starts wait their turn');
    expect(await w.page.textContent(`${card} [data-testid="start-queues"]`)).toContain(`will queue behind run ${held.runId.slice(0, 8)}`);
    expect(await w.page.getAttribute(card, 'data-blocked')).toBe('false');
    expect(await w.page.isDisabled(`${card} [data-testid="start-toggle"]`)).toBe(false);

    await w.page.click(`${card} [data-testid="start-toggle"]`);
    await w.page.fill(`${card} [data-testid="json-input"]`, '{"label": "second"}');
    await w.page.click(`${card} [data-testid="start-submit"]`);
    await w.page.waitForURL((url) => /^\/dashboard\/runs\/[^/]+$/.test(url.pathname));
    const runId = decodeURIComponent(new URL(w.page.url()).pathname.split('/').pop() as string);
    await w.page.waitForSelector('[data-testid="run-detail"][data-status="QUEUED"]');

    gate('first').resolve();
    await runs.page.waitForSelector('[data-testid="count-QUEUED"]:has-text("0")');
    gate('early').resolve();
    expect(await early.waitResult()).toBe('early done');
    await w.page.waitForSelector('[data-testid="run-detail"][data-status="RUNNING"]');
    gate('second').resolve();
    await w.page.waitForSelector('[data-testid="run-detail"][data-status="COMPLETED"]');
    expect((await tracking.getStatus(runId))?.result).toBe('second done');
    expectNoErrors(w);
    expectNoErrors(runs);
  });
});
