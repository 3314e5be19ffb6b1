/**
 * Starting runs from the dashboard in headless Chromium against a real server (port 0,
 * in-memory broker, tracking, WebSocket): the Pipelines page, the Start form built from
 * an input schema (and the JSON editor without one), the server's refusals next to the
 * form, the new run's page opening live, a refused second start of a one-at-a-time
 * pipeline naming the run in the way, Start disabled with its reason, a double click and
 * a resent request starting one run. Screenshots of the Pipelines page (1280×800 and
 * 390×844) go to test-artifacts/; the refused start is also docs/img/dashboard-pipelines.png.
 */
import { fileURLToPath } from 'node:url';
import { Type } from '@sinclair/typebox';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { InMemoryBroker, InMemoryPipelineStorage, Pipeline, PipelineTrackingManager } from '../src/index.js';
import { getEngine } from '../src/pipeline/engine.js';
import { getWebSocketServer, type FlowcastServer, type ServerOptions } from '../src/server/index.js';
import { launchChromium, type WatchedPage } from './helpers/browser.js';
import { deferred, type Deferred } from './helpers/collect.js';
import { open, requireBuiltDashboard, screenshot } from './helpers/dashboard.js';
import { onCleanup } from './helpers/server-fixture.js';

// Chromium pages and a server per case: seconds each on a busy machine.
vi.setConfig({ testTimeout: 60_000 });

let browser: Browser;
beforeAll(async () => {
  requireBuiltDashboard();
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
});

type TailInput = { lines: number; label: string; level?: 'info' | 'warn'; loud?: boolean };

const TailSchema = Type.Object(
  {
    lines: Type.Integer({ minimum: 1, maximum: 50, default: 3, description: 'Log lines to write' }),
    label: Type.String({ minLength: 1, default: 'job' }),
    level: Type.Optional(Type.Union([Type.Literal('info'), Type.Literal('warn')], { default: 'info' })),
    loud: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);

const NestedSchema = Type.Object({ target: Type.Object({ host: Type.String() }) });

interface Setup {
  server: FlowcastServer;
  broker: InMemoryBroker;
  tracking: PipelineTrackingManager;
  /** Lets the `tail` run labelled `label` finish. */
  release(label: string): void;
  /** Starts a `tail` run from code (it holds until released). */
  hold(label: string): Promise<string>;
  /** The run ids of a pipeline, as tracking holds them. */
  runs(pipelineId: string): Promise<string[]>;
}

async function setup(server: Partial<ServerOptions> = {}): Promise<Setup> {
  const broker = new InMemoryBroker({ onError: () => undefined });
  const tracking = new PipelineTrackingManager().withStorage(new InMemoryPipelineStorage());
  const gates = new Map<string, Deferred>();
  const gate = (label: string): Deferred => {
    let g = gates.get(label);
    if (g === undefined) gates.set(label, (g = deferred()));
    return g;
  };
  const tailTask = broker.task('tail_lines', async (input: TailInput, ctx) => {
    for (let i = 0; i < input.lines; i++) ctx.log(`${input.level ?? 'info'} ${input.label} line ${i}${input.loud === true ? '!' : ''}`);
    await new Promise<void>((resolve, reject) => {
      const onAbort = (): void => reject(ctx.signal.reason instanceof Error ? ctx.signal.reason : new Error('cancelled'));
      if (ctx.signal.aborted) onAbort();
      ctx.signal.addEventListener('abort', onAbort, { once: true });
      void gate(input.label).promise.then(() => {
        ctx.signal.removeEventListener('abort', onAbort);
        resolve();
      });
    });
    return `${input.label} done`;
  });
  const echo = broker.task('echo_input', (input: unknown) => ({ got: input }) as { got: never });
  const tail = new Pipeline<TailInput>(broker, { id: 'tail', description: 'Writes log lines, then waits', inputSchema: TailSchema, concurrency: { limit: 1 } })
    .callNext(tailTask)
    .withTracking(tracking);
  const free = new Pipeline(broker, { id: 'free_json' }).callNext(echo).withTracking(tracking);
  const nested = new Pipeline(broker, { id: 'nested', inputSchema: NestedSchema }).callNext(echo).withTracking(tracking);
  const s = getWebSocketServer({ port: 0, broker, tracking, restRateLimit: false, pipelines: [tail, free, nested], ...server });
  onCleanup(() => broker.close());
  onCleanup(() => tracking.close());
  onCleanup(async () => {
    for (const run of await tracking.listPipelines({ status: 'RUNNING' })) await getEngine(broker).cancel(run.run_id, 'test over').catch(() => false);
  });
  onCleanup(() => s.close());
  await s.startServer();
  return {
    server: s,
    broker,
    tracking,
    release: (label) => gate(label).resolve(),
    async hold(label) {
      const run = await tail.kiq({ lines: 1, label });
      return run.runId;
    },
    async runs(pipelineId) {
      return (await tracking.listPipelines({ pipelineId })).map((r) => r.run_id);
    },
  };
}

const card = (id: string): string => `[data-testid="pipeline"][data-pipeline-id="${id}"]`;

/** The run id of the run page the browser shows. */
async function runPage(page: Page): Promise<string> {
  await page.waitForURL((url) => /^\/dashboard\/runs\/[^/]+$/.test(url.pathname));
  return decodeURIComponent(new URL(page.url()).pathname.split('/').pop() as string);
}

/** Nothing thrown, no console error but the browser's own line for a refused request (a 400 or 409 the page shows). */
function expectOnlyRefusals(w: WatchedPage): void {
  expect(w.errors).toEqual([]);
  expect(w.consoleErrors().filter((m) => !/Failed to load resource: the server responded with a status of (400|409)/.test(m.text))).toEqual([]);
}

describe('Pipelines page', () => {
  it('starts a run from the schema form, shows the server\'s validation error next to its field, and opens the new run live', async () => {
    const f = await setup();
    const w = await open(browser, `${f.server.httpUrl}/dashboard/runs`);
    await w.page.click('header nav a:has-text("Pipelines")');
    await w.page.waitForSelector(card('tail'));
    expect(await w.page.getAttribute('header nav a:has-text("Pipelines")', 'aria-current')).toBe('page');
    expect(await w.page.textContent(`${card('tail')} [data-testid="policy"]`)).toBe('One run at a time');
    expect(await w.page.textContent(`${card('free_json')} [data-testid="policy"]`)).toBe('No concurrency limit');
    await screenshot(w, 'pipelines', { fullPage: false });
    await w.page.setViewportSize({ width: 390, height: 844 });
    await screenshot(w, 'pipelines-narrow', { fullPage: false });
    expect(await w.page.evaluate('document.documentElement.scrollWidth <= 390')).toBe(true);
    await w.page.setViewportSize({ width: 1280, height: 800 });

    await w.page.click(`${card('tail')} [data-testid="start-toggle"]`);
    const form = `${card('tail')} [data-testid="start-form"]`;
    await w.page.waitForSelector(form);
    // Fields from the schema: defaults filled in, required ones marked, the enum a select, the boolean a checkbox.
    expect(await w.page.inputValue(`${form} input[name="lines"]`)).toBe('3');
    expect(await w.page.getAttribute(`${form} input[name="lines"]`, 'type')).toBe('number');
    expect(await w.page.inputValue(`${form} input[name="label"]`)).toBe('job');
    expect(await w.page.textContent(`${form} [data-field="lines"] label`)).toContain('*');
    expect(await w.page.textContent(`${form} [data-field="level"] label`)).not.toContain('*');
    expect(await w.page.locator(`${form} select[name="level"] option`).allTextContents()).toEqual(['—', 'info', 'warn']);
    expect(await w.page.textContent(`${form} select[name="level"] option:checked`)).toBe('info');
    expect(await w.page.getAttribute(`${form} input[name="loud"]`, 'type')).toBe('checkbox');
    await screenshot(w, 'pipelines-start-form', { fullPage: false });

    // The server refuses lines = 0: its message next to the field, nothing started.
    await w.page.fill(`${form} input[name="lines"]`, '0');
    await w.page.click(`${form} [data-testid="start-submit"]`);
    await w.page.waitForSelector(`${form} [data-field="lines"] [data-testid="field-error"]`);
    expect(await w.page.textContent(`${form} [data-testid="start-error"]`)).toMatch(/input\.lines .*1/);
    expect(await w.page.getAttribute(`${form} input[name="lines"]`, 'aria-invalid')).toBe('true');
    expect(await f.runs('tail')).toEqual([]);

    await w.page.fill(`${form} input[name="lines"]`, '2');
    await w.page.fill(`${form} input[name="label"]`, 'first');
    await w.page.selectOption(`${form} select[name="level"]`, { label: 'warn' });
    await w.page.check(`${form} input[name="loud"]`);
    await w.page.click(`${form} [data-testid="start-submit"]`);
    const runId = await runPage(w.page);
    await w.page.waitForSelector('[data-testid="run-detail"][data-status="RUNNING"]');
    await w.page.waitForSelector('[data-testid="log-count"]:has-text("2 lines")');
    expect(await w.page.textContent('.log')).toContain('warn first line 1!');
    expect((await f.tracking.getStatus(runId))?.input).toEqual({ lines: 2, label: 'first', level: 'warn', loud: true });
    // Live: the run's end reaches the open page.
    f.release('first');
    await w.page.waitForSelector('[data-testid="run-detail"][data-status="COMPLETED"]');
    expect(await f.runs('tail')).toEqual([runId]);
    expectOnlyRefusals(w);
  });

  it('gives a pipeline without a schema, or with a nested one, a JSON editor', async () => {
    const f = await setup();
    const w = await open(browser, `${f.server.httpUrl}/dashboard/pipelines`);
    await w.page.click(`${card('nested')} [data-testid="start-toggle"]`);
    expect(await w.page.textContent(`${card('nested')} [data-testid="start-form"]`)).toContain('not flat');
    await w.page.waitForSelector(`${card('nested')} [data-testid="json-input"]`);
    // The server checks the nested schema.
    await w.page.fill(`${card('nested')} [data-testid="json-input"]`, '{"target": {}}');
    await w.page.click(`${card('nested')} [data-testid="start-submit"]`);
    await w.page.waitForSelector(`${card('nested')} [data-testid="start-error"]:has-text("host")`);

    await w.page.click(`${card('free_json')} [data-testid="start-toggle"]`);
    const form = `${card('free_json')} [data-testid="start-form"]`;
    expect(await w.page.textContent(form)).toContain('no input schema');
    await w.page.fill(`${form} [data-testid="json-input"]`, '{"a": ');
    await w.page.click(`${form} [data-testid="start-submit"]`);
    await w.page.waitForSelector(`${form} [data-testid="start-error"]:has-text("not JSON")`);
    await w.page.fill(`${form} [data-testid="json-input"]`, '{"a": [1, 2], "b": "x"}');
    await w.page.click(`${form} [data-testid="start-submit"]`);
    const runId = await runPage(w.page);
    await w.page.waitForSelector('[data-testid="run-detail"][data-status="COMPLETED"]');
    expect((await f.tracking.getStatus(runId))?.result).toEqual({ got: { a: [1, 2], b: 'x' } });
    expectOnlyRefusals(w);
  });

  it('shows a refused second start of a one-at-a-time pipeline with the running run\'s id, then lets it start once that run ends', async () => {
    const f = await setup();
    const w = await open(browser, `${f.server.httpUrl}/dashboard/pipelines`);
    await w.page.click(`${card('tail')} [data-testid="start-toggle"]`);
    const form = `${card('tail')} [data-testid="start-form"]`;
    await w.page.waitForSelector(form);
    // Someone else starts a run after the page loaded: the server refuses this one.
    const holder = await f.hold('elsewhere');
    await w.page.click(`${form} [data-testid="start-submit"]`);
    const error = await w.page.waitForSelector(`${form} [data-testid="start-error"]`);
    expect(await error.textContent()).toContain(holder);
    expect(await error.textContent()).toMatch(/Already running/);
    expect(await w.page.getAttribute(`${form} [data-testid="start-error"] a`, 'href')).toBe(`/dashboard/runs/${holder}`);
    // The page now knows: Start disabled with the reason and a link to the run in the way.
    await w.page.waitForSelector(`${card('tail')}[data-blocked="true"] [data-testid="start-blocked"]`);
    expect(await w.page.textContent(`${card('tail')} [data-testid="start-blocked"]`)).toContain(holder);
    expect(await w.page.isDisabled(`${form} [data-testid="start-submit"]`)).toBe(true);
    await screenshot(w, 'pipelines-refused', { fullPage: false });
    await screenshot(w, 'dashboard-pipelines', { fullPage: false, path: fileURLToPath(new URL('../docs/img/dashboard-pipelines.png', import.meta.url)) });
    expect(await f.runs('tail')).toEqual([holder]);

    // The run in the way ends: the page hears it live and Start comes back.
    f.release('elsewhere');
    await w.page.waitForSelector(`${card('tail')}[data-blocked="false"]`);
    expect(await w.page.$(`${card('tail')} [data-testid="start-blocked"]`)).toBeNull();
    await w.page.fill(`${form} input[name="label"]`, 'mine');
    await w.page.click(`${form} [data-testid="start-submit"]`);
    const mine = await runPage(w.page);
    expect(mine).not.toBe(holder);
    await w.page.waitForSelector('[data-testid="run-detail"][data-status="RUNNING"]');
    expectOnlyRefusals(w);
  });

  it('disables Start with the reason and a link to the run in the way, and without the start right', async () => {
    const f = await setup({ auth: { apiKeys: { starter: { id: 'starter', pipelines: '*', actions: ['start', 'cancel'] }, reader: { id: 'reader', pipelines: ['tail'] } } } });
    const holder = await f.hold('busy');
    const w = await open(browser, `${f.server.httpUrl}/dashboard/pipelines?token=starter`);
    await w.page.waitForSelector(`${card('tail')} [data-testid="start-blocked"]`);
    expect(await w.page.isDisabled(`${card('tail')} [data-testid="start-toggle"]`)).toBe(true);
    const reason = await w.page.textContent(`${card('tail')} [data-testid="start-blocked"]`);
    expect(reason).toContain('one run at a time');
    expect(reason).toContain(holder);
    expect(await w.page.isDisabled(`${card('free_json')} [data-testid="start-toggle"]`)).toBe(false);
    await screenshot(w, 'pipelines-blocked', { fullPage: false });
    await w.page.click(`${card('tail')} [data-testid="start-blocked"] a`);
    expect(await runPage(w.page)).toBe(holder);
    await w.page.waitForSelector('[data-testid="run-detail"][data-status="RUNNING"]');

    // A token that may read `tail` but not start it: disabled, with that reason; the others are not listed.
    const r = await open(browser, `${f.server.httpUrl}/dashboard/pipelines?token=reader`);
    await w.page.close();
    await r.page.waitForSelector(`${card('tail')} [data-testid="start-blocked"]`);
    expect(await r.page.textContent(`${card('tail')} [data-testid="start-blocked"]`)).toMatch(/no "start" right/);
    expect(await r.page.isDisabled(`${card('tail')} [data-testid="start-toggle"]`)).toBe(true);
    expect(await Promise.all((await r.page.locator('[data-testid="pipeline"]').all()).map((c) => c.getAttribute('data-pipeline-id')))).toEqual(['tail']);
    expectOnlyRefusals(r);
  });

  it('works under a base path: the page, its start and the new run\'s page all stay under it', async () => {
    const f = await setup({ basePath: '/flowcast' });
    const w = await open(browser, `${f.server.httpUrl}/flowcast/dashboard/pipelines`);
    await w.page.click(`${card('free_json')} [data-testid="start-toggle"]`);
    const form = `${card('free_json')} [data-testid="start-form"]`;
    expect(await w.page.getAttribute(`${card('free_json')} h2 a`, 'href')).toBe('/flowcast/dashboard/pipelines/free_json');
    await w.page.fill(`${form} [data-testid="json-input"]`, '{"under": "base"}');
    await w.page.click(`${form} [data-testid="start-submit"]`);
    await w.page.waitForURL((url) => url.pathname.startsWith('/flowcast/dashboard/runs/'));
    const runId = decodeURIComponent(new URL(w.page.url()).pathname.split('/').pop() as string);
    await w.page.waitForSelector('[data-testid="run-detail"][data-status="COMPLETED"]');
    expect((await f.tracking.getStatus(runId))?.input).toEqual({ under: 'base' });
    expectOnlyRefusals(w);
  });

  it('starts one run on a double click, and a resent start request opens the same run', async () => {
    const f = await setup();
    const w = await open(browser, `${f.server.httpUrl}/dashboard/pipelines/free_json`);
    const form = `${card('free_json')} [data-testid="start-form"]`;
    await w.page.waitForSelector(form);
    await w.page.fill(`${form} [data-testid="json-input"]`, '{"n": 1}');
    await w.page.dblclick(`${form} [data-testid="start-submit"]`);
    const first = await runPage(w.page);
    await w.page.waitForSelector('[data-testid="run-detail"][data-status="COMPLETED"]');
    expect(await f.runs('free_json')).toEqual([first]);

    // The network resends the start (a retried request): the server sees the same
    // idempotency key twice, starts one run and answers it to both.
    const answers: number[] = [];
    await w.page.route('**/api/pipelines/free_json/runs', async (route) => {
      const once = await route.fetch();
      answers.push(once.status());
      const again = await route.fetch();
      answers.push(again.status());
      await route.fulfill({ response: again });
    });
    await w.page.goto(`${f.server.httpUrl}/dashboard/pipelines/free_json`);
    await w.page.waitForSelector(form);
    await w.page.fill(`${form} [data-testid="json-input"]`, '{"n": 2}');
    await w.page.click(`${form} [data-testid="start-submit"]`);
    await w.page.waitForURL((url) => url.pathname !== '/dashboard/pipelines/free_json');
    const second = await runPage(w.page);
    expect(answers).toEqual([201, 200]);
    await w.page.waitForSelector('[data-testid="run-detail"][data-status="COMPLETED"]');
    expect((await f.runs('free_json')).sort()).toEqual([first, second].sort());
    expect((await f.tracking.getStatus(second))?.input).toEqual({ n: 2 });
    expectOnlyRefusals(w);
  });
});
