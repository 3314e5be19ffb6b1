/**
 * The dashboard in headless Chromium against a real server (port 0, real broker,
 * tracking and WebSocket): the live overview, the run detail (log backlog across a
 * reload, cancel, retry, the DAG), engine status and metrics, keyboard navigation.
 * Screenshots of each page go to test-artifacts/.
 */
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataflowPipeline, Pipeline } from '../src/index.js';
import { launchChromium } from './helpers/browser.js';
import { expectNoErrors, open, requireBuiltDashboard, screenshot } from './helpers/dashboard.js';
import { logHolds, startFixture, type Fixture } from './helpers/server-fixture.js';

let browser: Browser;
beforeAll(async () => {
  requireBuiltDashboard();
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
});

const row = (runId: string): string => `[data-run-id="${runId}"]`;

async function statusOf(page: Page, runId: string): Promise<string | null> {
  return page.getAttribute(row(runId), 'data-status');
}

/** Every log line the page's virtualised tail holds, read by scrolling it from top to bottom. */
async function allLogLines(page: Page): Promise<string[]> {
  // A string: the page's code runs in the browser, where this file's Node types do not apply.
  return page.evaluate<string[]>(`(async () => {
    const box = document.querySelector('.log');
    if (box === null) return [];
    const lines = new Map();
    box.scrollTop = 0;
    for (;;) {
      await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
      for (const el of box.querySelectorAll('[data-line]')) lines.set(Number(el.dataset.line), el.querySelector('.log-text')?.textContent ?? '');
      if (box.scrollTop + box.clientHeight >= box.scrollHeight - 1) break;
      box.scrollTop += box.clientHeight;
    }
    return [...lines.entries()].sort((a, b) => a[0] - b[0]).map(([, t]) => t);
  })()`);
}

describe('runs overview', () => {
  it('shows new runs and their status changes live, with counts per status, without a reload', async () => {
    const f = await startFixture();
    const first = await f.runToEnd(f.alpha);
    const w = await open(browser, `${f.server.httpUrl}/`);
    await w.page.waitForSelector(row(first));
    expect(await statusOf(w.page, first)).toBe('COMPLETED');
    await w.page.waitForSelector('[data-testid="live-state"]:has-text("Live")');

    const run = await f.startGated({ key: 'ov', phases: [1, 1] });
    await w.page.waitForSelector(`${row(run.runId)}[data-status="RUNNING"]`);
    expect(await w.page.textContent(row(run.runId))).toContain('Running');
    expect(await w.page.textContent('[data-testid="count-RUNNING"]')).toContain('1');
    await screenshot(w, 'overview-running', { fullPage: false });

    f.open('ov', 0);
    await w.page.waitForSelector(`${row(run.runId)}[data-status="COMPLETED"]`);
    expect(await w.page.textContent(row(run.runId))).toContain('Completed');
    expect(await w.page.textContent('[data-testid="count-COMPLETED"]')).toContain('2');
    expect(await w.page.textContent('[data-testid="count-RUNNING"]')).toContain('0');

    // Filters: by status and by pipeline.
    await w.page.click('[data-testid="count-RUNNING"]');
    await w.page.waitForSelector('[data-testid="shown"]:has-text("0 of 2")');
    await w.page.click('button:has-text("All")');
    await w.page.selectOption('[data-testid="pipeline-filter"]', 'alpha');
    await w.page.waitForSelector('[data-testid="shown"]:has-text("1 of 2")');
    expect(await w.page.$(row(run.runId))).toBeNull();
    await w.page.selectOption('[data-testid="pipeline-filter"]', 'ALL');
    await w.page.fill('[data-testid="search"]', run.runId.slice(0, 8));
    await w.page.waitForSelector('[data-testid="shown"]:has-text("1 of 2")');
    expect(await w.page.$(row(run.runId))).not.toBeNull();
    expectNoErrors(w);
  });

  it('renders 1,000 runs through the virtualised table (only the rows in view are in the DOM)', async () => {
    const f = await startFixture();
    const runs = await Promise.all(Array.from({ length: 1000 }, () => f.alpha.kiq(1)));
    await Promise.all(runs.map((r) => r.waitResult({ timeoutMs: 20_000 })));
    const w = await open(browser, `${f.server.httpUrl}/`);
    await w.page.waitForSelector('[data-testid="shown"]:has-text("1000 of 1000")', { timeout: 15_000 });
    const inDom = await w.page.$$eval('[data-run-id]', (els) => els.length);
    expect(inDom).toBeGreaterThan(5);
    expect(inDom).toBeLessThan(100);
    expectNoErrors(w);
  });
});

describe('run detail', () => {
  it('shows every log line from the first, also after a reload in the middle of the run', async () => {
    const f = await startFixture();
    const run = await f.startGated({ key: 'log', phases: [60, 40, 1] });
    await logHolds(f, run.runId, 3);
    const w = await open(browser, `${f.server.httpUrl}/dashboard/runs/${run.runId}`);
    await w.page.waitForSelector('[data-testid="log-count"]:has-text("60 lines")');
    f.open('log', 0);
    await w.page.waitForSelector('[data-testid="log-count"]:has-text("100 lines")');
    await w.page.reload();
    await w.page.waitForSelector('[data-testid="log-count"]:has-text("100 lines")');
    const expected = [...Array.from({ length: 60 }, (_, i) => `log phase 0 line ${i}`), ...Array.from({ length: 40 }, (_, i) => `log phase 1 line ${i}`)];
    expect(await allLogLines(w.page)).toEqual(expected);
    expect(await w.page.getAttribute('[data-testid="run-detail"]', 'data-status')).toBe('RUNNING');
    await screenshot(w, 'run-detail-running');
    f.open('log', 1);
    await w.page.waitForSelector('[data-testid="run-detail"][data-status="COMPLETED"]');
    expect(await allLogLines(w.page)).toEqual([...expected, 'log phase 2 line 0']);
    expectNoErrors(w);
  });

  it('cancels a running run from the page: the run ends CANCELLED', async () => {
    const f = await startFixture();
    const run = await f.startGated({ key: 'c', phases: [1, 1] });
    await logHolds(f, run.runId, 3);
    const w = await open(browser, `${f.server.httpUrl}/dashboard/runs/${run.runId}`);
    await w.page.click('[data-testid="cancel"]');
    await w.page.waitForSelector('[data-testid="run-detail"][data-status="CANCELLED"]');
    expect((await f.tracking.getStatus(run.runId))?.status).toBe('CANCELLED');
    expect(await w.page.textContent('[data-testid="run-detail"]')).toContain('Cancelled');
    expect(await w.page.$('[data-testid="cancel"]')).toBeNull();
    await screenshot(w, 'run-detail-cancelled');
    expectNoErrors(w);
  });

  it('retries an ended run from the page when the server knows its pipeline', async () => {
    const f = await startFixture({ server: { pipelines: [] } });
    // A second server over the same broker and tracking, which knows `alpha`.
    const { getWebSocketServer } = await import('../src/server/index.js');
    const server = getWebSocketServer({ port: 0, broker: f.broker, tracking: f.tracking, restRateLimit: false, pipelines: [f.alpha] });
    await server.startServer();
    const first = await f.runToEnd(f.alpha, 41);
    try {
      const w = await open(browser, `${server.httpUrl}/dashboard/runs/${first}`);
      await w.page.click('[data-testid="retry"]');
      await w.page.waitForURL((url) => url.pathname.startsWith('/dashboard/runs/') && !url.pathname.endsWith(first));
      await w.page.waitForSelector('[data-testid="run-detail"][data-status="COMPLETED"]');
      const newId = decodeURIComponent(new URL(w.page.url()).pathname.split('/').pop() as string);
      const status = await f.tracking.getStatus(newId);
      expect(status?.input).toBe(41);
      expect(status?.result).toBe(43);
      // The server without pipelines offers no Retry.
      const w2 = await open(browser, `${f.server.httpUrl}/dashboard/runs/${first}`);
      await w2.page.waitForSelector('[data-testid="run-detail"]');
      await w2.page.waitForSelector('[data-testid="gantt"]');
      expect(await w2.page.$('[data-testid="retry"]')).toBeNull();
      expectNoErrors(w);
      expectNoErrors(w2);
    } finally {
      await server.close();
    }
  });

  it('draws the graph of a dataflow run with each node\'s state', async () => {
    const f = await startFixture();
    const fail = f.broker.task('explode', () => {
      throw new Error('boom');
    });
    const incTask = f.broker.task('inc2', (n: number) => n + 1);
    const dag = new DataflowPipeline<number>(f.broker, { id: 'graph', failurePolicy: 'continue' })
      .step('a', incTask)
      .step('b', incTask)
      .step('c', incTask, { dependsOn: ['a', 'b'] })
      .step('bad', fail, { dependsOn: ['a'] })
      .step('after_bad', incTask, { dependsOn: ['bad'] })
      .withTracking(f.tracking);
    const run = await dag.kiq(1);
    await run.waitResult({ timeoutMs: 10_000 }).catch(() => undefined);
    const w = await open(browser, `${f.server.httpUrl}/dashboard/runs/${run.runId}`);
    await w.page.waitForSelector('[data-testid="dag"] [data-node="after_bad"]');
    await w.page.waitForSelector('[data-testid="run-detail"][data-status="FAILED"]');
    const nodes: [string | null, string | null, string | null][] = [];
    for (const h of await w.page.$$('[data-testid="dag"] [data-node]')) nodes.push([await h.getAttribute('data-node'), await h.getAttribute('data-status'), await h.textContent()]);
    expect(Object.fromEntries(nodes.map(([n, s]) => [n, s]))).toEqual({ a: 'COMPLETED', b: 'COMPLETED', c: 'COMPLETED', bad: 'FAILED', after_bad: 'SKIPPED' });
    // The state is written in each node, not only coloured.
    for (const [, , text] of nodes) expect(text).toMatch(/Completed|Failed|Skipped/);
    expect(await w.page.$$eval('[data-testid="dag"] .dag-edge', (els) => els.length)).toBe(4);
    await screenshot(w, 'run-detail-dag');
    expectNoErrors(w);
  });
});

describe('run detail timeline', () => {
  it('shows each attempt of a retried step as its own bar, saying it failed and was retried', async () => {
    const f = await startFixture();
    const flaky = f.broker.task('flaky', (n: number, ctx) => {
      if (ctx.attempt === 1) throw new Error('first attempt fails');
      return n;
    }, { retries: 2 });
    const pipeline = new Pipeline<number>(f.broker, { id: 'flaky' }).callNext(flaky).withTracking(f.tracking);
    const run = await pipeline.kiq(5);
    await run.waitResult({ timeoutMs: 10_000 });
    const w = await open(browser, `${f.server.httpUrl}/dashboard/runs/${run.runId}`);
    await w.page.waitForSelector('[data-testid="run-detail"][data-status="COMPLETED"]');
    const bars: string[] = [];
    for (const h of await w.page.$$('[data-testid="gantt"] .bar')) bars.push((await h.getAttribute('aria-label')) ?? '');
    expect(bars).toHaveLength(2);
    expect(bars[0]).toMatch(/^flaky attempt 1: failed, retried, .* — Error: first attempt fails$/);
    expect(bars[1]).toMatch(/^flaky attempt 2: completed, /);
    expect(await w.page.textContent('[data-testid="gantt"]')).toContain('2 attempts');
    await screenshot(w, 'run-detail-retry');
    expectNoErrors(w);
  });
});

describe('engine and metrics', () => {
  it('engine status shows the worker, the clients and fresh reports pushed over the WebSocket', async () => {
    const f: Fixture = await startFixture({ server: { engineIntervalMs: 200 } });
    await f.runToEnd(f.alpha);
    const w = await open(browser, `${f.server.httpUrl}/dashboard/engine`);
    await w.page.waitForSelector('[data-testid="workers-count"]');
    expect(await w.page.textContent('[data-testid="workers-count"]')).toBe('1');
    // The page's own WebSocket is a client: the count comes from a pushed engine_status.
    await w.page.waitForSelector('[data-testid="clients"]:has-text("1")');
    // Reports keep coming without a reload: the "updated" time moves on.
    const before = await w.page.textContent('[data-testid="engine"] .page-head');
    await w.page.waitForFunction(`document.querySelector('[data-testid="engine"] .page-head')?.textContent !== ${JSON.stringify(before)}`, undefined, { timeout: 5000 });
    await screenshot(w, 'engine');
    expectNoErrors(w);
  });

  it('metrics shows the charts and reloads when a run ends', async () => {
    const f = await startFixture();
    await f.runToEnd(f.alpha);
    await f.runToEnd(f.beta);
    const w = await open(browser, `${f.server.httpUrl}/dashboard/metrics`);
    await w.page.waitForSelector('[data-testid="total-runs"]:has-text("2")');
    expect(await w.page.$$eval('canvas', (els) => els.length)).toBeGreaterThanOrEqual(5);
    await f.runToEnd(f.alpha);
    await w.page.waitForSelector('[data-testid="total-runs"]:has-text("3")', { timeout: 10_000 });
    await screenshot(w, 'metrics');
    expectNoErrors(w);
  });
});

describe('keyboard', () => {
  it('reaches the navigation and a run with Tab, opens it with Enter, and shows a focus ring', async () => {
    const f = await startFixture();
    const id = await f.runToEnd(f.alpha);
    const w = await open(browser, `${f.server.httpUrl}/`);
    await w.page.waitForSelector(row(id));
    const seen: string[] = [];
    for (let i = 0; i < 30; i++) {
      await w.page.keyboard.press('Tab');
      const focused = await w.page.evaluate<string>(
        "(() => { const el = document.activeElement; return el === null ? '' : el.tagName + ':' + (el.getAttribute('href') ?? el.textContent?.trim() ?? ''); })()",
      );
      seen.push(focused);
      if (focused.endsWith(`/dashboard/runs/${id}`)) break;
    }
    expect(seen).toContain('A:/dashboard/engine');
    expect(seen).toContain('A:/dashboard/metrics');
    expect(seen.at(-1)).toBe(`A:/dashboard/runs/${id}`);
    const outline = await w.page.evaluate<string>('getComputedStyle(document.activeElement).outlineStyle');
    expect(outline).not.toBe('none');
    await w.page.keyboard.press('Enter');
    await w.page.waitForSelector('[data-testid="run-detail"]');
    expect(new URL(w.page.url()).pathname).toBe(`/dashboard/runs/${id}`);
    // Status is written, not only coloured: every badge carries its word.
    const badges = await w.page.locator('.badge').allTextContents();
    expect(badges.length).toBeGreaterThan(2);
    for (const b of badges) expect(b).toMatch(/Completed|Running|Failed|Cancelled|Pending|Skipped|Retrying/);
    expectNoErrors(w);
  });
});
