/**
 * Resume from the run page in headless Chromium against a real server: a run that failed
 * at its second step is resumed with the page's Resume button; the same run goes on
 * live, its first step is not called again (its result is kept) and the run completes.
 * A resume the server refuses (the pipeline's one slot is taken by another run) shows
 * the server's message on the page. Needs POST /api/runs/{run_id}/resume (wip/h14r):
 * skipped on a tree without it.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { InMemoryBroker, InMemoryPipelineStorage, Pipeline, PipelineTrackingManager } from '../src/index.js';
import { getEngine } from '../src/pipeline/engine.js';
import { getWebSocketServer } from '../src/server/index.js';
import { launchChromium } from './helpers/browser.js';
import { deferred } from './helpers/collect.js';
import { open, requireBuiltDashboard, screenshot } from './helpers/dashboard.js';
import { onCleanup } from './helpers/server-fixture.js';

const HAS_RESUME = existsSync(fileURLToPath(new URL('../src/server/rest/resume.ts', import.meta.url)));
vi.setConfig({ testTimeout: 60_000 });

let browser: Browser;
beforeAll(async () => {
  if (!HAS_RESUME) return;
  requireBuiltDashboard();
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
});

async function setup(): Promise<{
  url: string;
  tracking: PipelineTrackingManager;
  calls: { prepare: number; publish: number };
  failing: { on: boolean };
  start: (input: { hold?: boolean }) => Promise<string>;
  releaseHold: () => void;
}> {
  const broker = new InMemoryBroker({ onError: () => undefined });
  const tracking = new PipelineTrackingManager().withStorage(new InMemoryPipelineStorage());
  const calls = { prepare: 0, publish: 0 };
  const failing = { on: true };
  const hold = deferred();
  const prepare = broker.task('rs_prepare', async (input: { hold?: boolean }, ctx) => {
    calls.prepare++;
    ctx.log(`prepared (call ${calls.prepare})`);
    if (input.hold === true) await hold.promise;
    return { rows: 3 };
  });
  const publish = broker.task('rs_publish', (input: { rows: number }, ctx) => {
    calls.publish++;
    ctx.log(`publish attempt ${calls.publish}`);
    if (failing.on) throw new Error('the shelf is full');
    return `published ${input.rows}`;
  });
  const pipeline = new Pipeline<{ hold?: boolean }>(broker, { id: 'shelf', concurrency: { limit: 1 } })
    .callNext(prepare, { name: 'prepare' })
    .callNext(publish, { name: 'publish' })
    .withTracking(tracking);
  const server = getWebSocketServer({ port: 0, broker, tracking, restRateLimit: false, pipelines: [pipeline] });
  onCleanup(() => broker.close());
  onCleanup(() => tracking.close());
  onCleanup(() => hold.resolve());
  onCleanup(() => server.close());
  await server.startServer();
  return {
    url: server.httpUrl,
    tracking,
    calls,
    failing,
    async start(input) {
      const run = await pipeline.kiq(input);
      if (input.hold !== true) await getEngine(broker).waitForRun(run.runId).catch(() => undefined);
      return run.runId;
    },
    releaseHold: () => hold.resolve(),
  };
}

describe.skipIf(!HAS_RESUME)('Resume on the run page', () => {
  it('continues a failed run from the step that did not finish: the first step is not run again, the run completes live', async () => {
    const f = await setup();
    const runId = await f.start({});
    expect((await f.tracking.getStatus(runId))?.status).toBe('FAILED');
    expect(f.calls).toEqual({ prepare: 1, publish: 1 });

    const w = await open(browser, `${f.url}/dashboard/runs/${runId}`);
    await w.page.waitForSelector('[data-testid="run-detail"][data-status="FAILED"]');
    await w.page.waitForSelector('[data-testid="resume"]');
    expect(await w.page.$('[data-testid="retry"]')).not.toBeNull();
    await screenshot(w, 'run-detail-resume', { fullPage: false });

    f.failing.on = false;
    await w.page.click('[data-testid="resume"]');
    await w.page.waitForSelector('[data-testid="run-detail"][data-status="COMPLETED"]');
    // The same run, on the same page: no new run opened.
    expect(new URL(w.page.url()).pathname).toBe(`/dashboard/runs/${runId}`);
    expect(await w.page.textContent('[data-testid="action-message"]')).toContain('Kept: prepare');
    expect(f.calls).toEqual({ prepare: 1, publish: 2 });
    const status = await f.tracking.getStatus(runId);
    expect(status?.status).toBe('COMPLETED');
    expect(status?.result).toBe('published 3');
    // The log goes on: the first attempt's lines, then the resumed attempt's, prepare's once.
    await w.page.waitForSelector('[data-testid="log-count"]:has-text("3 lines")');
    const log = (await w.page.textContent('.log')) ?? '';
    expect(log.match(/prepared/g)).toHaveLength(1);
    expect(log).toContain('publish attempt 2');
    expect(await w.page.$('[data-testid="resume"]')).toBeNull();
    expect(await f.tracking.listPipelines({ pipelineId: 'shelf' })).toHaveLength(1);
    expect(w.errors).toEqual([]);
    expect(w.consoleErrors()).toEqual([]);
  });

  it('shows the server\'s refusal when the run cannot be resumed now', async () => {
    const f = await setup();
    const failed = await f.start({});
    // Another run holds the pipeline's one slot: a resume of the failed run is refused.
    const holder = await f.start({ hold: true });
    const w = await open(browser, `${f.url}/dashboard/runs/${failed}`);
    await w.page.waitForSelector('[data-testid="resume"]');
    await w.page.click('[data-testid="resume"]');
    const message = await w.page.waitForSelector('[data-testid="action-message"].error');
    expect(await message.textContent()).toMatch(/^Resume failed: .*Already running/);
    expect(await message.textContent()).toContain(holder);
    expect(await w.page.getAttribute('[data-testid="run-detail"]', 'data-status')).toBe('FAILED');
    expect(f.calls.publish).toBe(1);
    f.releaseHold();
    expect(w.errors).toEqual([]);
    expect(w.consoleErrors().filter((m) => !/status of 409/.test(m.text))).toEqual([]);
  });
});
