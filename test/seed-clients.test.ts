/**
 * The seed's own clients work unchanged against the flowcast server (issue 3):
 * - seed 000 §4.1's `PipelineMonitor` class, in headless Chromium (Debian's chromium via
 *   playwright-core), page test/fixtures/seed/pipeline-monitor.html;
 * - seed 000 §4.2's Python `monitor_pipeline` (Debian's python3 + python3-websockets),
 *   script test/fixtures/seed/monitor.py.
 * Real server on port 0, real pipelines on an InMemoryBroker. Timeouts only bound the waits.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  InMemoryBroker,
  InMemoryPipelineStorage,
  Pipeline,
  PipelineTrackingManager,
  isEventType,
  type FlowcastEvent,
} from '../src/index.js';
import { getWebSocketServer, type FlowcastServer } from '../src/server/server.js';
import { launchChromium, openPage, type WatchedPage } from './helpers/browser.js';
import { waitUntil } from './helpers/collect.js';

const PIPELINE_ID = 'demo_workflow';
const STEP_TASKS = ['load', 'transform', 'save'];
const fixtures = fileURLToPath(new URL('./fixtures/seed/', import.meta.url));
/** Debian's python3 (where python3-websockets installs), else whatever `python3` is on PATH. */
const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Setup {
  broker: InMemoryBroker;
  tracking: PipelineTrackingManager;
  pipeline: Pipeline<number, { saved: number }>;
}

/** A broker with the three-step `demo_workflow` pipeline (the middle step writes log lines), tracked. */
function setup(): Setup {
  const broker = new InMemoryBroker({ onError: () => undefined });
  const tracking = new PipelineTrackingManager().withStorage(new InMemoryPipelineStorage());
  cleanups.push(() => broker.close());
  cleanups.push(() => tracking.close());
  const load = broker.task('load', (n: number) => n + 1);
  const transform = broker.task('transform', (n: number, ctx) => {
    ctx.log(`transforming ${n}`);
    ctx.log('still transforming', 'done');
    return n * 2;
  });
  const save = broker.task('save', (n: number) => ({ saved: n }));
  const pipeline = new Pipeline(broker, { id: PIPELINE_ID }).callNext(load).callNext(transform).callNext(save).withTracking(tracking);
  return { broker, tracking, pipeline };
}

/** The origin the browser test's page is served from: a real deployment lists it in allowedOrigins too. */
let pageOrigin: string | undefined;

async function startServer(s: Setup, port = 0): Promise<FlowcastServer> {
  const server = getWebSocketServer({ host: '127.0.0.1', port, broker: s.broker, tracking: s.tracking, ...(pageOrigin !== undefined && { allowedOrigins: [pageOrigin] }) });
  cleanups.push(() => server.close());
  await server.startServer();
  return server;
}

/** Checks one run's events as a client received them: exactly the run's log, in seq order, with the seed's shape. */
async function expectWholeRun(received: FlowcastEvent[], s: Setup, runId: string, input: number): Promise<void> {
  const mine = received.filter((e) => e.run_id === runId);
  const log = await s.broker.transport.read(runId);
  expect(log.complete).toBe(true);
  expect(mine.map((e) => `${e.seq} ${e.type}`)).toEqual(log.events.map((e) => `${e.seq} ${e.type}`));
  expect(mine.map((e) => e.event_id)).toEqual(log.events.map((e) => e.event_id));
  expect(mine.map((e) => e.seq)).toEqual(mine.map((_e, i) => i + 1));
  for (const e of mine) expect(e.pipeline_id).toBe(PIPELINE_ID);

  const first = mine[0];
  const last = mine[mine.length - 1];
  expect(first?.type).toBe('PipelineStartEvent');
  if (first?.type === 'PipelineStartEvent') {
    expect(first.pipeline_type).toBe('sequential');
    expect(first.input).toBe(input);
  }
  expect(last?.type).toBe('PipelineCompleteEvent');
  if (last?.type === 'PipelineCompleteEvent') {
    expect(last.status).toBe('COMPLETED');
    expect(last.result).toEqual({ saved: (input + 1) * 2 });
    expect(typeof last.duration_ms).toBe('number');
  }
  // Per step, in order: StepStartEvent, then StepCompleteEvent with duration_ms.
  const stepEvents = mine.filter((e) => e.type === 'StepStartEvent' || e.type === 'StepCompleteEvent');
  expect(stepEvents.map((e) => [e.type, e.step_index, e.task_id.length > 0])).toEqual(
    STEP_TASKS.flatMap((_t, i) => [
      ['StepStartEvent', i, true],
      ['StepCompleteEvent', i, true],
    ]),
  );
  for (const e of stepEvents) {
    if (e.type === 'StepCompleteEvent') {
      expect(typeof e.duration_ms).toBe('number');
      expect(e.duration_ms).toBeGreaterThanOrEqual(0);
    }
  }
  const lines = mine.flatMap((e) => (e.type === 'StepLogEvent' ? e.lines : []));
  expect(lines).toEqual([`transforming ${input + 1}`, 'still transforming', 'done']);
}

describe('seed 000 §4.1 PipelineMonitor in headless Chromium', () => {
  let browser: Browser;
  let pages: Server;
  let pageBase: string;

  beforeAll(async () => {
    browser = await launchChromium();
    // The fixture page over real HTTP (a page from file:// may not open sockets everywhere).
    const html = readFileSync(`${fixtures}pipeline-monitor.html`);
    pages = createServer((req, res) => {
      if (new URL(req.url ?? '/', 'http://localhost').pathname === '/pipeline-monitor.html') {
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(html);
      } else {
        res.writeHead(404).end();
      }
    });
    await new Promise<void>((resolve) => pages.listen(0, '127.0.0.1', resolve));
    pageOrigin = `http://127.0.0.1:${(pages.address() as AddressInfo).port}`;
    pageBase = `${pageOrigin}/pipeline-monitor.html`;
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await new Promise((resolve) => pages?.close(resolve));
  });

  async function openMonitor(server: FlowcastServer): Promise<WatchedPage> {
    const watched = await openPage(browser, `${pageBase}?url=${encodeURIComponent(server.url)}&pipeline=${PIPELINE_ID}`);
    cleanups.push(() => watched.page.close());
    return watched;
  }

  /** What the page's monitor received (`window.__events`: everything handleEvent saw). */
  async function received(page: Page): Promise<Record<string, unknown>[]> {
    return page.evaluate<Record<string, unknown>[]>('window.__events');
  }

  function eventsOnly(messages: Record<string, unknown>[]): FlowcastEvent[] {
    return messages.filter((m) => isEventType(m.type)) as unknown as FlowcastEvent[];
  }

  async function waitForPage(page: Page, condition: string, what: string): Promise<void> {
    await page.waitForFunction(condition, undefined, { timeout: 20_000 }).catch((error: unknown) => {
      throw new Error(`page: ${what} did not happen within 20s (${String(error)})`);
    });
  }

  const subscribedCount = (n: number): string => `window.__events.filter((m) => m.type === 'subscribed').length >= ${n}`;
  const runEnded = (runId: string): string =>
    `window.__events.some((m) => m.type === 'PipelineCompleteEvent' && m.run_id === ${JSON.stringify(runId)})`;

  it('subscribes by pipeline id and receives a whole run in seq order, with the seed callbacks firing and no console error', { timeout: 60_000 }, async () => {
    const s = setup();
    const server = await startServer(s);
    const { page, console, errors, consoleErrors } = await openMonitor(server);
    await waitForPage(page, subscribedCount(1), 'the subscription');
    expect((await received(page)).find((m) => m.type === 'subscribed')).toMatchObject({ pipeline_id: PIPELINE_ID });

    const run = await s.pipeline.kiq(1);
    expect(await run.waitResult({ timeoutMs: 20_000 })).toEqual({ saved: 4 });
    await waitForPage(page, runEnded(run.runId), 'PipelineCompleteEvent');

    const messages = await received(page);
    await expectWholeRun(eventsOnly(messages), s, run.runId, 1);
    // The seed class kept the same messages in its own list.
    expect(await page.evaluate('monitor.events.length')).toBe(messages.length);
    // The seed's usage callbacks ran: one line per step, then the status.
    const texts = console.map((m) => m.text);
    expect(texts[0]).toBe('Connected to WebSocket server');
    const completes = eventsOnly(messages).filter((e) => e.type === 'StepCompleteEvent');
    expect(texts.filter((t) => t.startsWith('Step '))).toEqual(completes.map((e) => `Step ${e.step_name} completed in ${e.duration_ms}ms`));
    expect(texts).toContain('Pipeline finished with status: COMPLETED');
    expect(errors).toEqual([]);
    expect(consoleErrors()).toEqual([]);
  });

  it("reconnects with the seed's reconnect() to a new server on the same port and receives the next run", { timeout: 90_000 }, async () => {
    const s = setup();
    const first = await startServer(s);
    const { page, console, errors } = await openMonitor(first);
    await waitForPage(page, subscribedCount(1), 'the first subscription');
    const run1 = await s.pipeline.kiq(1);
    await run1.waitResult({ timeoutMs: 20_000 });
    await waitForPage(page, runEnded(run1.runId), 'the first run');

    await first.close();
    await waitUntil(() => console.some((m) => m.text === 'WebSocket connection closed'), 'the page seeing the close', 20_000);
    const second = await startServer(s, first.port);
    expect(second.port).toBe(first.port);
    // The seed reconnects 3 s after the close and subscribes again.
    await waitForPage(page, subscribedCount(2), 'the subscription after the reconnect');
    expect(second.connections).toBe(1);

    const run2 = await s.pipeline.kiq(5);
    expect(await run2.waitResult({ timeoutMs: 20_000 })).toEqual({ saved: 12 });
    await waitForPage(page, runEnded(run2.runId), 'the second run');

    const events = eventsOnly(await received(page));
    await expectWholeRun(events, s, run1.runId, 1);
    await expectWholeRun(events, s, run2.runId, 5);
    expect(new Set(events.map((e) => e.event_id)).size).toBe(events.length);
    expect(console.filter((m) => m.text === 'Connected to WebSocket server').length).toBeGreaterThanOrEqual(2);
    expect(errors).toEqual([]);
    // Only a reconnect attempt that came before the new server listened may have failed (the seed retries).
    for (const m of console.filter((c) => c.type === 'error')) expect(m.text).toMatch(/WebSocket/);
  });
});

interface PythonMonitor {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** `python3 test/fixtures/seed/monitor.py <url> <pipeline_id>` as a child process. */
function pythonMonitor(url: string, pipelineId: string): PythonMonitor {
  const child = spawn(PYTHON, [`${fixtures}monitor.py`, url, pipelineId, '60'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, PYTHONUNBUFFERED: '1' },
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal }));
  });
  cleanups.push(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return { child, stdout: () => stdout, stderr: () => stderr, exited };
}

describe('seed 000 §4.2 Python client (python3-websockets)', () => {
  it('prints every event of a run in order, then "Pipeline finished: COMPLETED", and ends when the server closes', { timeout: 60_000 }, async () => {
    const s = setup();
    const server = await startServer(s);
    const py = pythonMonitor(server.url, PIPELINE_ID);
    const why = (): string => `\nstdout:\n${py.stdout()}\nstderr:\n${py.stderr()}`;
    await waitUntil(() => py.stdout().includes('[subscribed]') || py.child.exitCode !== null, 'the Python subscription', 20_000).catch(
      (error: unknown) => {
        throw new Error(`${String(error)}${why()}`);
      },
    );
    expect(py.stdout(), why()).toContain('[subscribed]');

    const run = await s.pipeline.kiq(1);
    await run.waitResult({ timeoutMs: 20_000 });
    await waitUntil(() => py.stdout().includes('Pipeline finished: COMPLETED') || py.child.exitCode !== null, 'the Python "Pipeline finished"', 20_000);

    // The seed's loop ends when the server goes away (1001).
    await server.close();
    const exit = await Promise.race([
      py.exited,
      new Promise<never>((_resolve, reject) => setTimeout(() => reject(new Error(`monitor.py did not exit within 20s after the server closed${why()}`)), 20_000)),
    ]);
    expect(exit, why()).toEqual({ code: 0, signal: null });

    const lines = py.stdout().trimEnd().split('\n');
    const log = await s.broker.transport.read(run.runId);
    // One "[Type] {...}" line per event, in the log's order, then the seed's closing line.
    const eventLines = lines.filter((l) => /^\[(\w+)\] /.exec(l) !== null && isEventType(/^\[(\w+)\]/.exec(l)?.[1]));
    expect(eventLines.map((l) => /^\[(\w+)\]/.exec(l)?.[1])).toEqual(log.events.map((e) => e.type));
    expect(eventLines.map((l) => Number(/'seq': (\d+)/.exec(l)?.[1]))).toEqual(log.events.map((e) => e.seq));
    for (const l of eventLines) expect(l).toContain(`'run_id': '${run.runId}'`);
    expect(eventLines[0]).toMatch(/^\[PipelineStartEvent\] /);
    expect(eventLines.filter((l) => l.startsWith('[StepCompleteEvent] ')).every((l) => /'duration_ms': \d/.test(l))).toBe(true);
    const end = lines.findIndex((l) => l.startsWith('[PipelineCompleteEvent] '));
    expect(end).toBeGreaterThan(0);
    expect(lines[end + 1]).toBe('Pipeline finished: COMPLETED');
    expect(py.stderr()).toBe('');
  });
});
