/**
 * Dashboard bench (`npm run bench:dashboard`): how long the dashboard takes, in headless
 * Chromium against a real server, to
 *
 * - render the runs overview with 1,000 runs (navigation start → the virtualised table
 *   shows all 1,000), and to apply a live update there (a WebSocket message carrying a new
 *   run's event → its row in the DOM; and a filter click → the table re-rendered);
 * - render a run's log tail of 10,000 lines (navigation start → all 10,000 lines in the
 *   list), and to apply a live update there (the message with one more line → the line
 *   count shown).
 *
 * Times are taken in the page with performance.now(): message arrival is recorded by a
 * wrapper around the page's WebSocket, DOM changes by a MutationObserver. Median of
 * `rounds` (default 5) page loads. Usage: tsx bench/dashboard.ts [rounds]
 */
import { chromium, type Page } from 'playwright-core';
import { InMemoryBroker, InMemoryPipelineStorage, Pipeline, PipelineTrackingManager } from '../src/index.js';
import { getWebSocketServer } from '../src/server/index.js';

const ROUNDS = Number(process.argv[2] ?? 5);
const RUNS = 1000;
const LINES = 10_000;
const LINES_PER_EVENT = 100;

/** Installed before the page's scripts: timestamps of incoming WebSocket messages that mention a marker. */
const INIT = `
  window.__marks = {};
  window.__watch = null;
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', (e) => {
        const w = window.__watch;
        if (w !== null && typeof e.data === 'string' && e.data.includes(w) && window.__marks[w] === undefined) window.__marks[w] = performance.now();
      });
    }
  };
`;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

/** Resolves in the page with performance.now() once `condition` (JS source) holds, checked on every DOM change. */
function whenInPage(page: Page, condition: string, timeoutMs = 30_000): Promise<number> {
  return page.evaluate<number>(`new Promise((resolve, reject) => {
    const check = () => { try { return ${condition}; } catch { return false; } };
    if (check()) return resolve(performance.now());
    const obs = new MutationObserver(() => { if (check()) { obs.disconnect(); resolve(performance.now()); } });
    obs.observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true });
    setTimeout(() => { obs.disconnect(); reject(new Error('timed out: ' + ${JSON.stringify(condition)})); }, ${timeoutMs});
  })`);
}

async function main(): Promise<void> {
  const broker = new InMemoryBroker({ onError: () => undefined });
  const tracking = new PipelineTrackingManager().withStorage(new InMemoryPipelineStorage());
  const inc = broker.task('inc', (n: number) => n + 1);
  let release: () => void = () => undefined;
  const gate = (): Promise<void> => new Promise((resolve) => (release = resolve));
  const chatty = broker.task('chatty', async (lines: number, ctx) => {
    for (let i = 0; i < lines; i += LINES_PER_EVENT) ctx.log(...Array.from({ length: LINES_PER_EVENT }, (_, j) => `line ${i + j} of the bench tail`));
    await gate();
    ctx.log('one more line');
    return lines;
  });
  const quick = new Pipeline(broker, { id: 'quick' }).callNext(inc).callNext(inc).withTracking(tracking);
  const tail = new Pipeline<number>(broker, { id: 'tail' }).callNext(chatty).withTracking(tracking);
  const server = getWebSocketServer({ port: 0, broker, tracking, restRateLimit: false });
  await server.startServer();
  const handles = await Promise.all(Array.from({ length: RUNS }, (_, i) => quick.kiq(i)));
  await Promise.all(handles.map((h) => h.waitResult({ timeoutMs: 60_000 })));

  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--headless', '--no-sandbox', '--disable-gpu'] });
  const results: Record<string, number[]> = { overviewRest: [], overviewFirst: [], overviewLive: [], overviewFilter: [], tailFirst: [], tailLive: [] };
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
      await page.addInitScript(INIT);
      await page.goto(`${server.httpUrl}/`);
      results.overviewFirst?.push(await whenInPage(page, `Number(/of (\\d+)/.exec(document.querySelector('[data-testid="shown"]')?.textContent ?? '')?.[1] ?? 0) >= ${RUNS} && document.querySelectorAll('[data-run-id]').length > 10`));
      await page.waitForSelector('[data-testid="live-state"]:has-text("Live")');
      const rest = await page.evaluate<number | undefined>(`performance.getEntriesByType('resource').find((e) => e.name.includes('/api/runs?'))?.responseEnd`);
      if (rest !== undefined) results.overviewRest?.push(rest);
      // A live update: the next run's first message (found by its unique input) → its row.
      const marker = `"input":${-1 - round}`;
      await page.evaluate(`window.__watch = ${JSON.stringify(marker)}`);
      const next = await quick.kiq(-1 - round);
      const shown = await whenInPage(page, `document.querySelector('[data-run-id="${next.runId}"]') !== null`);
      const arrived = await page.evaluate<number | undefined>(`window.__marks[${JSON.stringify(marker)}]`);
      if (arrived !== undefined) results.overviewLive?.push(shown - arrived);
      await next.waitResult({ timeoutMs: 10_000 });
      const clicked = await page.evaluate<number>(`(() => { const t = performance.now(); document.querySelector('[data-testid="count-FAILED"]').click(); return t; })()`);
      results.overviewFilter?.push((await whenInPage(page, `document.querySelector('[data-testid="shown"]')?.textContent.startsWith('0 of')`)) - clicked);
      await page.close();

      const run = await tail.kiq(LINES);
      for (;;) {
        const log = await broker.transport.read(run.runId, { since: 0 });
        if (log.last_seq >= 2 + LINES / LINES_PER_EVENT) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      const detail = await browser.newPage({ viewport: { width: 1280, height: 800 } });
      await detail.addInitScript(INIT);
      await detail.goto(`${server.httpUrl}/dashboard/runs/${run.runId}`);
      results.tailFirst?.push(await whenInPage(detail, `document.querySelector('[data-testid="log-count"]')?.textContent === '${LINES} lines'`));
      await detail.evaluate(`window.__watch = 'one more line'`);
      release();
      const lineShown = await whenInPage(detail, `document.querySelector('[data-testid="log-count"]')?.textContent === '${LINES + 1} lines'`);
      const lineArrived = await detail.evaluate<number | undefined>(`window.__marks['one more line']`);
      if (lineArrived !== undefined) results.tailLive?.push(lineShown - lineArrived);
      await run.waitResult({ timeoutMs: 10_000 });
      await detail.close();
    }
  } finally {
    await browser.close();
    await server.close();
    await tracking.close();
    await broker.close();
  }
  const row = (name: string, what: string, xs: number[] | undefined): string =>
    `| ${name} | ${what} | ${xs === undefined || xs.length === 0 ? 'n/a' : `${median(xs).toFixed(0)} ms`} | ${(xs ?? []).map((x) => x.toFixed(0)).join(', ')} |`;
  console.log(`Dashboard bench: ${RUNS} runs, ${LINES} log lines, ${ROUNDS} rounds (median; raw rounds in ms)`);
  console.log('| view | measure | median | rounds |');
  console.log('|---|---|---|---|');
  console.log(row('overview, 1,000 runs', 'REST list received (navigation → /api/runs answered)', results.overviewRest));
  console.log(row('overview, 1,000 runs', 'first render (navigation → table filled)', results.overviewFirst));
  const afterRest = (results.overviewFirst ?? []).map((t, i) => t - (results.overviewRest?.[i] ?? 0));
  console.log(row('overview, 1,000 runs', 'of which after the REST answer (parse, store, render)', afterRest));
  console.log(row('overview, 1,000 runs', 'live update (message → new row in the DOM)', results.overviewLive));
  console.log(row('overview, 1,000 runs', 'filter click → table re-rendered', results.overviewFilter));
  console.log(row('log tail, 10,000 lines', 'first render (navigation → all lines in the list)', results.tailFirst));
  console.log(row('log tail, 10,000 lines', 'live update (message → line counted and shown)', results.tailLive));
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
