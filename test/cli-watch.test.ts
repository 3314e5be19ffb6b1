/**
 * `flowcast watch` as a user runs it: `node --import tsx src/cli/main.ts watch …` as a
 * child process (stdout a pipe, not a terminal) against a real server on port 0 in this
 * process; plus the terminal view in process, with a stream that says it is a terminal.
 */
import { PassThrough } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { InMemoryBroker, InMemoryPipelineStorage, Pipeline, PipelineTrackingManager, type FlowcastEvent } from '../src/index.js';
import { getWebSocketServer, type FlowcastServer, type ServerOptions } from '../src/server/server.js';
import { watchCommand } from '../src/cli/commands/watch.js';
import { deferred, waitUntil } from './helpers/collect.js';
import { flowcast, type CliChild } from './helpers/cli.js';

// eslint-disable-next-line no-control-regex -- looking for escape codes is the point
const ANSI = /\u001b\[/;

const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

type Watch = CliChild;

/** `flowcast watch <args>` from source, directly under node so that signals reach it. */
function watch(args: string[], env: Record<string, string> = {}): Watch {
  return flowcast(['watch', ...args], env);
}

async function exitOf(w: Watch, timeoutMs = 30_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return Promise.race([
    w.exited,
    new Promise<never>((_resolve, reject) =>
      setTimeout(() => reject(new Error(`flowcast watch did not exit within ${timeoutMs}ms\nstdout:\n${w.stdout()}\nstderr:\n${w.stderr()}`)), timeoutMs),
    ),
  ]);
}

async function waitFor(w: Watch, condition: () => boolean, what: string): Promise<void> {
  await waitUntil(() => condition() || w.child.exitCode !== null, what, 30_000).catch((error: unknown) => {
    throw new Error(`${String(error)}\nstdout:\n${w.stdout()}\nstderr:\n${w.stderr()}`);
  });
  if (!condition()) throw new Error(`flowcast watch exited (${w.child.exitCode}) before ${what}\nstdout:\n${w.stdout()}\nstderr:\n${w.stderr()}`);
}

interface Setup {
  broker: InMemoryBroker;
  tracking: PipelineTrackingManager;
  pipeline: Pipeline<number, number>;
  server: FlowcastServer;
}

/** A server with the `demo` pipeline: `load`, `crunch` (log lines and progress), `save`. */
async function setup(options: Partial<ServerOptions> = {}): Promise<Setup> {
  const broker = new InMemoryBroker({ onError: () => undefined });
  const tracking = new PipelineTrackingManager().withStorage(new InMemoryPipelineStorage());
  cleanups.push(() => broker.close());
  cleanups.push(() => tracking.close());
  const load = broker.task('load', (n: number) => n + 1);
  const crunch = broker.task('crunch', (n: number, ctx) => {
    ctx.log(`crunching ${n}`);
    ctx.progress(0.5, 'half way');
    ctx.log('crunched');
    return n * 2;
  });
  const save = broker.task('save', (n: number) => n);
  const pipeline = new Pipeline(broker, { id: 'demo' }).callNext(load).callNext(crunch).callNext(save).withTracking(tracking);
  const server = getWebSocketServer({ host: '127.0.0.1', port: 0, broker, tracking, heartbeatMs: 0, ...options });
  cleanups.push(() => server.close());
  await server.startServer();
  return { broker, tracking, pipeline, server };
}

const ndjson = (text: string): FlowcastEvent[] =>
  text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as FlowcastEvent);

async function expectExactly(events: FlowcastEvent[], s: Setup, runId: string, since = 0): Promise<void> {
  const log = await s.broker.transport.read(runId, { since });
  expect(log.ended).toBe(true);
  const mine = events.filter((e) => e.run_id === runId);
  expect(mine).toEqual(log.events);
}

describe('flowcast watch --json', () => {
  it('prints every event of a run as one JSON line, in seq order; Ctrl-C exits 0', { timeout: 60_000 }, async () => {
    const s = await setup();
    const w = watch(['demo', '--json', '--url', s.server.url]);
    await waitFor(w, () => w.stderr().includes('watching demo'), 'the subscription');
    const run = await s.pipeline.kiq(1);
    await run.waitResult({ timeoutMs: 10_000 });
    await waitFor(w, () => w.stdout().includes('"PipelineCompleteEvent"'), 'the run end on stdout');
    w.child.kill('SIGINT');
    expect(await exitOf(w)).toEqual({ code: 0, signal: null });
    // Every line is one whole event, nothing else on stdout.
    await expectExactly(ndjson(w.stdout()), s, run.runId);
    expect(w.stderr()).toBe(`flowcast watch: connected to ${s.server.url}, watching demo\n`);
  });

  it('--run --since replays the run after that seq and exits 0 when the run has ended', { timeout: 60_000 }, async () => {
    const s = await setup();
    const run = await s.pipeline.kiq(2);
    await run.waitResult({ timeoutMs: 10_000 });
    const w = watch(['--run', run.runId, '--since', '3', '--json', '--url', s.server.url]);
    expect(await exitOf(w)).toEqual({ code: 0, signal: null });
    await expectExactly(ndjson(w.stdout()), s, run.runId, 3);
  });

  it('--run --since at or past the end of an ended run prints nothing and exits 0 (it used to wait forever)', { timeout: 60_000 }, async () => {
    const s = await setup();
    const run = await s.pipeline.kiq(2);
    await run.waitResult({ timeoutMs: 10_000 });
    const log = await s.broker.transport.read(run.runId, { since: 0 });
    const last = log.events.at(-1)?.seq ?? 0;
    for (const since of [last, last + 100]) {
      const w = watch(['--run', run.runId, '--since', String(since), '--json', '--url', s.server.url]);
      expect(await exitOf(w)).toEqual({ code: 0, signal: null });
      expect(w.stdout()).toBe('');
      expect(w.stderr()).toContain(`run ${run.runId} ended (COMPLETED): no events after seq`);
    }
  });

  it('"*" watches every pipeline, from a run already in flight (whole) to the next', { timeout: 60_000 }, async () => {
    const s = await setup();
    const gate = deferred();
    cleanups.push(() => gate.resolve());
    const hold = s.broker.task('hold', async (n: number, ctx) => {
      ctx.log('holding');
      await gate.promise;
      return n;
    });
    const other = new Pipeline(s.broker, { id: 'other' }).callNext(hold).withTracking(s.tracking);
    const inFlight = await other.kiq(1);
    for (let i = 0; i < 1000 && !(await s.broker.transport.read(inFlight.runId)).events.some((e) => e.type === 'StepLogEvent'); i++) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    const w = watch(['*', '--json', '--url', s.server.url]);
    await waitFor(w, () => w.stdout().includes('"holding"'), 'the replayed log line of the run in flight');
    gate.resolve();
    const next = await s.pipeline.kiq(3);
    await next.waitResult({ timeoutMs: 10_000 });
    await waitFor(w, () => ndjson(w.stdout()).filter((e) => e.type === 'PipelineCompleteEvent').length === 2, 'both run ends');
    w.child.kill('SIGTERM');
    expect(await exitOf(w)).toEqual({ code: 0, signal: null });
    const events = ndjson(w.stdout());
    await expectExactly(events, s, inFlight.runId);
    await expectExactly(events, s, next.runId);
  });
});

describe('flowcast watch (plain lines)', () => {
  it('prints readable lines without escape codes: start, steps, log lines, the run summary', { timeout: 60_000 }, async () => {
    const s = await setup();
    const w = watch(['demo', '--url', s.server.url]);
    await waitFor(w, () => w.stderr().includes('watching demo'), 'the subscription');
    const run = await s.pipeline.kiq(4);
    await run.waitResult({ timeoutMs: 10_000 });
    await waitFor(w, () => w.stdout().includes('[COMPLETED]'), 'the summary line');
    w.child.kill('SIGINT');
    expect(await exitOf(w)).toEqual({ code: 0, signal: null });
    const out = w.stdout();
    expect(out).not.toMatch(ANSI);
    const short = run.runId.slice(0, 8);
    const lines = out.trimEnd().split('\n');
    const at = /^\d\d:\d\d:\d\d\.\d{3} demo [0-9a-f]{8} /;
    expect(lines.slice(0, -1).every((l) => at.test(l))).toBe(true);
    expect(lines.map((l) => l.replace(at, ''))).toEqual([
      'started (sequential, 3 steps)',
      'step load started',
      expect.stringMatching(/^step load completed in \d+ms$/) as unknown,
      'step crunch started',
      'crunch › crunching 5',
      'step crunch 50% half way',
      'crunch › crunched',
      expect.stringMatching(/^step crunch completed in \d+ms$/) as unknown,
      'step save started',
      expect.stringMatching(/^step save completed in \d+ms$/) as unknown,
      expect.stringMatching(new RegExp(`^\\[COMPLETED\\] +demo +${short} .*3/3 steps$`)) as unknown,
    ]);
  });
});

describe('flowcast watch errors', () => {
  it('exits 1 with a clear message when it cannot connect, after --retries', { timeout: 60_000 }, async () => {
    const s = await setup();
    const url = s.server.url;
    await s.server.close();
    const w = watch(['demo', '--json', '--url', url, '--retries', '1']);
    expect(await exitOf(w)).toEqual({ code: 1, signal: null });
    expect(w.stdout()).toBe('');
    expect(w.stderr()).toMatch(new RegExp(`could not connect to ${url} after 2 attempts \\(last: 1006 connect ECONNREFUSED`));
  });

  it('exits 1 with "Unauthorized" when the token is rejected (token from --token or $FLOWCAST_TOKEN)', { timeout: 60_000 }, async () => {
    const s = await setup({ auth: { apiKeys: { 'good-key': { id: 'me' } } } });
    const bad = watch(['demo', '--json', '--url', s.server.url, '--token', 'bad-key']);
    expect(await exitOf(bad)).toEqual({ code: 1, signal: null });
    expect(bad.stderr()).toMatch(/^flowcast watch: Unauthorized: .*rejected the token \(close code 4001\): .*--token or \$FLOWCAST_TOKEN$/m);
    const good = watch(['demo', '--json', '--url', s.server.url], { FLOWCAST_TOKEN: 'good-key' });
    await waitFor(good, () => good.stderr().includes('watching demo'), 'the subscription with the env token');
    good.child.kill('SIGINT');
    expect(await exitOf(good)).toEqual({ code: 0, signal: null });
  });

  it('exits 1 when the server forbids the pipeline', { timeout: 60_000 }, async () => {
    const s = await setup({ auth: { apiKeys: { 'other-only': { id: 'me', pipelines: ['other'] } } } });
    const w = watch(['demo', '--json', '--url', s.server.url, '--token', 'other-only']);
    expect(await exitOf(w)).toEqual({ code: 1, signal: null });
    expect(w.stderr()).toMatch(/subscribe\("demo"\) rejected: forbidden/);
  });

  it.each([
    [[], /give a pipeline id \(or "\*"\), or --run <run_id>/],
    [['demo', '--run', 'r1'], /give a pipeline id or --run <run_id>, not both/],
    [['demo', '--since', '3'], /--since needs --run <run_id>/],
    [['--run', 'r1', '--since', '-1'], /--since <seq>.*expected a whole number >= 0, received "-1"/],
    [['demo', '--url', 'ftp://x'], /--url <url>.*expected a ws:\/\/, wss:\/\/, http:\/\/ or https:\/\/ URL, received "ftp:\/\/x"/],
    [['demo', '--retries', 'many'], /--retries <count>.*expected a whole number >= 0, received "many"/],
    [['bad id!'], /pipeline_id must be 1-200 letters/],
  ])('exits 2 on bad arguments: %j', { timeout: 30_000 }, async (args, message) => {
    const w = watch(args);
    expect(await exitOf(w)).toEqual({ code: 2, signal: null });
    expect(w.stderr()).toMatch(message);
    expect(w.stdout()).toBe('');
  });
});

describe('watchCommand on a terminal', () => {
  it('draws runs as blocks with step bars and log lines, redrawn in place until stopped', { timeout: 30_000 }, async () => {
    const s = await setup();
    const stdout = Object.assign(new PassThrough(), { isTTY: true, columns: 100, rows: 40 }) as unknown as NodeJS.WriteStream;
    const stderr = new PassThrough() as unknown as NodeJS.WriteStream;
    let screen = '';
    (stdout as unknown as PassThrough).setEncoding('utf8').on('data', (chunk: string) => (screen += chunk));
    const stop = new AbortController();
    const done = watchCommand('demo', { url: s.server.url }, { stdout, stderr, signal: stop.signal });
    await waitUntil(() => screen.includes('connected to'), 'the connected footer', 10_000);
    const run = await s.pipeline.kiq(1);
    await run.waitResult({ timeoutMs: 10_000 });
    // eslint-disable-next-line no-control-regex -- the screen holds escape codes
    const plain = (): string => screen.replace(/\u001b\[[0-9;?]*[ -/]*[@-~]/g, '');
    await waitUntil(() => plain().includes('COMPLETED') && plain().includes('crunched'), 'the ended run on screen', 10_000);
    stop.abort();
    expect(await done).toBe(0);
    const text = plain();
    expect(text).toContain('flowcast watch demo');
    expect(text).toMatch(new RegExp(`COMPLETED\\]? +demo +${run.runId.slice(0, 8)} .*3/3 steps`));
    expect(text).toMatch(/✓ crunch +█{20} 100%/);
    expect(text).toContain('crunch › crunched');
  });
});
