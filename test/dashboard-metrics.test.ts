/**
 * The metrics and engine pages as a user reads them, in headless Chromium at a desktop
 * (1280×800) and a phone (390×844) size, against a real server: failure reasons grouped
 * by their masked message with the raw messages one click away, no label clipped, no
 * page wider than the screen, each chart axis titled once and its tick labels distinct.
 * Screenshots go to test-artifacts/ (metrics-1280.png, metrics-390-open.png...).
 */
import { randomUUID } from 'node:crypto';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Pipeline } from '../src/index.js';
import { launchChromium } from './helpers/browser.js';
import { expectNoErrors, open, requireBuiltDashboard, screenshot } from './helpers/dashboard.js';
import { startFixture, type Fixture } from './helpers/server-fixture.js';

// Two page sizes, a browser and a server per case: slow on a busy machine.
vi.setConfig({ testTimeout: 120_000 });

let browser: Browser;
beforeAll(async () => {
  requireBuiltDashboard();
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
});

const VIEWPORTS = [
  { width: 1280, height: 800 },
  { width: 390, height: 844 },
] as const;

const LONG = 'Could not reach the upstream inventory service at https://inventory.internal.example.com/api/v2/stock-levels because the TLS handshake did not complete';

/** Six timeouts that differ only by numbers and job ids, and one long message. */
async function failures(f: Fixture): Promise<void> {
  const timeout = f.broker.task('timeout', (ms: number) => {
    throw new Error(`Timeout after ${ms}ms on job ${randomUUID()}`);
  });
  const upstream = f.broker.task('upstream', () => {
    throw new Error(LONG);
  });
  const flaky = new Pipeline<number>(f.broker, { id: 'flaky' }).callNext(timeout).withTracking(f.tracking);
  const remote = new Pipeline<number>(f.broker, { id: 'remote' }).callNext(upstream).withTracking(f.tracking);
  for (const ms of [120, 95, 3000, 41, 1500, 7]) await (await flaky.kiq(ms)).waitResult({ timeoutMs: 10_000 }).catch(() => undefined);
  await (await remote.kiq(1)).waitResult({ timeoutMs: 10_000 }).catch(() => undefined);
}

/** Text elements whose content is cut (wider than their box, or past the screen's edge and not in a box that scrolls sideways). */
async function clipped(page: Page, root: string): Promise<string[]> {
  return page.evaluate<string[]>(`(() => {
    const out = [];
    for (const el of document.querySelectorAll('${root} *')) {
      if (el.closest('details:not([open]) > :not(summary)')) continue;
      const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim() !== '');
      if (!own) continue;
      const r = el.getBoundingClientRect();
      if (r.width <= 1 || el.closest('.sr-only')) continue; // nothing to see, or text for screen readers only
      const style = getComputedStyle(el);
      if (el.scrollWidth > el.clientWidth + 1 && style.display !== 'inline') out.push('overflows: ' + el.textContent.trim().slice(0, 60));
      else if (r.right > window.innerWidth + 1 || r.left < -1) {
        // Inside a box that scrolls sideways (a wide table on a phone) and is itself on screen, it is one swipe away.
        let box = el.parentElement;
        while (box !== null && !/auto|scroll/.test(getComputedStyle(box).overflowX)) box = box.parentElement;
        const b = box === null ? null : box.getBoundingClientRect();
        if (b === null || b.right > window.innerWidth + 1 || b.left < -1) out.push('off screen: ' + el.textContent.trim().slice(0, 60));
      }
    }
    if (document.documentElement.scrollWidth > window.innerWidth + 1) out.push('page wider than the screen: ' + document.documentElement.scrollWidth);
    return out;
  })()`);
}

/** Every chart's axes, as the page drew them: `{ chart, axis, title, ticks }`. */
async function axes(page: Page): Promise<{ chart: string; axis: string; title: string; ticks: string[] }[]> {
  return page.evaluate<{ chart: string; axis: string; title: string; ticks: string[] }[]>(`(() => {
    const out = [];
    for (const canvas of document.querySelectorAll('canvas[data-axes]')) {
      for (const [axis, a] of Object.entries(JSON.parse(canvas.dataset.axes))) out.push({ chart: canvas.getAttribute('aria-label'), axis, title: a.title, ticks: a.ticks });
    }
    return out;
  })()`);
}

function expectAxesLabelledOnce(list: { chart: string; axis: string; title: string; ticks: string[] }[]): void {
  expect(list.length).toBeGreaterThan(0);
  for (const a of list) {
    expect(a.title, `${a.chart}: ${a.axis} axis title`).not.toBe('');
    const shown = a.ticks.filter((t) => t !== '');
    expect(new Set(shown).size, `${a.chart}: ${a.axis} ticks ${JSON.stringify(shown)}`).toBe(shown.length);
  }
}

describe('metrics page', () => {
  it('groups failure reasons by their masked message, shows the raw ones on a click, and clips no label at 1280×800 and 390×844', async () => {
    const f = await startFixture();
    await failures(f);
    for (const size of VIEWPORTS) {
      const w = await open(browser, `${f.server.httpUrl}/dashboard/metrics`);
      await w.page.setViewportSize(size);
      await w.page.waitForSelector('[data-testid="failure-group"]');
      const groups = w.page.locator('[data-testid="failure-group"]');
      expect(await groups.count()).toBe(2);
      expect((await groups.nth(0).locator('.reason-label').textContent())?.trim()).toBe("Pipeline failed at step 'timeout': Error: Timeout after <n>ms on job <id>");
      expect((await groups.nth(0).locator('.reason-count').textContent())?.trim()).toBe('6');
      expect((await groups.nth(1).locator('.reason-label').textContent())?.trim()).toBe(
        "Pipeline failed at step 'upstream': Error: Could not reach the upstream inventory service at https://inventory.internal.example.com/api/v2/stock-levels because the TLS handshake did not complete",
      );
      await screenshot(w, `metrics-${size.width}`);
      expect(await clipped(w.page, '[data-testid="metrics"]')).toEqual([]);

      // The raw messages: one click away, each whole.
      expect(await groups.nth(0).locator('.reason-example').first().isVisible()).toBe(false);
      await groups.nth(0).locator('summary').click();
      const examples = await groups.nth(0).locator('.reason-example').allTextContents();
      expect(examples).toHaveLength(6);
      for (const e of examples) expect(e).toMatch(/^Pipeline failed at step 'timeout': Error: Timeout after \d+ms on job [0-9a-f-]{36}$/);
      await groups.nth(1).locator('summary').click();
      expect(await groups.nth(1).locator('.reason-example').allTextContents()).toEqual([expect.stringContaining(LONG)]);
      await screenshot(w, `metrics-${size.width}-open`);
      expect(await clipped(w.page, '[data-testid="metrics"]')).toEqual([]);

      expectAxesLabelledOnce(await axes(w.page));
      expectNoErrors(w);
    }
  });
});

describe('engine page', () => {
  it('titles each chart axis once with distinct tick labels, and clips no label at 1280×800 and 390×844', async () => {
    const f = await startFixture();
    await f.runToEnd(f.alpha);
    for (const size of VIEWPORTS) {
      const w = await open(browser, `${f.server.httpUrl}/dashboard/engine`);
      await w.page.setViewportSize(size);
      await w.page.waitForSelector('canvas[data-axes]');
      // A few pushes of engine status: several samples on the chart.
      await w.page.waitForFunction(`JSON.parse(document.querySelector('canvas[data-axes]').dataset.axes).x.ticks.length >= 3`, undefined, { timeout: 30_000 });
      await screenshot(w, `engine-${size.width}`);
      expectAxesLabelledOnce(await axes(w.page));
      expect(await clipped(w.page, '[data-testid="engine"]')).toEqual([]);
      expectNoErrors(w);
    }
  });
});

describe('runs overview and run detail', () => {
  it('clip no label at 1280×800 and 390×844 (a wide table scrolls inside its own box)', async () => {
    const f = await startFixture();
    await failures(f);
    const runId = await f.runToEnd(f.alpha);
    for (const size of VIEWPORTS) {
      const w = await open(browser, `${f.server.httpUrl}/`);
      await w.page.setViewportSize(size);
      await w.page.waitForSelector(`[data-run-id="${runId}"]`);
      await screenshot(w, `overview-${size.width}`, { fullPage: false });
      expect(await clipped(w.page, 'main')).toEqual([]);
      const d = await open(browser, `${f.server.httpUrl}/dashboard/runs/${runId}`);
      await d.page.setViewportSize(size);
      await d.page.waitForSelector('.gantt');
      await screenshot(d, `run-detail-${size.width}`);
      expect(await clipped(d.page, 'main')).toEqual([]);
      expectNoErrors(w);
      expectNoErrors(d);
    }
  });
});
