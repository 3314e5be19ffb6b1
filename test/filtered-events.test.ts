/**
 * Issue 13 item 1: a log fed through a filter has gaps in its seqs (the filtered-out
 * events never reach it), and nothing may stall on them: not the server's event loop, not
 * live delivery, not a replay. A client that resumes with `since` across filtered-out
 * events gets exactly the events the log holds after it, and no `replay_incomplete`.
 *
 * - Memory: seed 000 §7 as typed (`setupWebSocketBridge(hooks)` then `hooks.addFilter(...)`),
 *   in a child process (test/fixtures/seed/filtered-bridge.ts), so that a frozen event
 *   loop shows as a server that stops answering instead of freezing the test.
 * - Redis: a run log with the same gaps (as a bridge with a filter writes it: the events
 *   keep their seqs), live and replayed through a real server.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import type { FlowcastEvent } from '../src/index.js';
import { InMemoryTransport } from '../src/transport/memory-transport.js';
import { runLogKey, runLogMetaKey } from '../src/redis/keys.js';
import { RedisPubSubTransport } from '../src/redis/transport.js';
import { getWebSocketServer } from '../src/server/index.js';
import { useRedisServer } from './helpers/redis.js';
import { connect, seqs, type TestClient } from './helpers/ws-client.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function client(url: string): Promise<TestClient> {
  const c = await connect(url);
  cleanups.push(() => c.close());
  return c;
}

/** GET /health, bounded: a server whose event loop is frozen never answers. */
async function health(port: number): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(10_000) });
  return res.status;
}

interface SeedServer {
  port: number;
  /** Runs the pipeline once; resolves with the run id once it finished. */
  run(input: number): Promise<string>;
}

/** Starts test/fixtures/seed/filtered-bridge.ts. */
async function seedServer(): Promise<SeedServer> {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', 'test/fixtures/seed/filtered-bridge.ts'], { cwd: root, stdio: ['pipe', 'pipe', 'inherit'] });
  cleanups.push(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const waiting: ((line: string) => boolean)[] = [];
  createInterface({ input: child.stdout! }).on('line', (line) => {
    const i = waiting.findIndex((w) => w(line));
    if (i >= 0) waiting.splice(i, 1);
  });
  const next = (pattern: RegExp, what: string): Promise<RegExpExecArray> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${what}: no line matching ${pattern} within 60 s`)), 60_000);
      waiting.push((line) => {
        const m = pattern.exec(line);
        if (m === null) return false;
        clearTimeout(timer);
        resolve(m);
        return true;
      });
    });
  const port = Number((await next(/^listening (\d+)$/, 'the server'))[1]);
  return {
    port,
    async run(input) {
      const done = next(/^(done|failed) (.*)$/, `run ${input}`);
      child.stdin!.write(`run ${input}\n`);
      const m = await done;
      if (m[1] === 'failed') throw new Error(`the run failed: ${m[2]}`);
      return m[2] as string;
    },
  };
}

describe('seed 000 §7: a HookManager filter in front of setupWebSocketBridge (memory)', () => {
  it('the server still answers /health and new clients after a filtered run whose task logs; the subscriber gets exactly the step events', { timeout: 90_000 }, async () => {
    const server = await seedServer();
    const url = `ws://127.0.0.1:${server.port}`;
    const watcher = await client(url);
    await watcher.subscribe({ pipeline_id: 'demo_workflow' });
    const runId = await server.run(1);
    // Two steps: StepStartEvent and StepCompleteEvent each; the logs and the pipeline events are filtered out.
    await watcher.waitUntil(() => watcher.events(runId).length === 4, 'the four step events');
    expect(await health(server.port)).toBe(200);
    const got = watcher.events(runId);
    expect(got.map((e) => e.type)).toEqual(['StepStartEvent', 'StepCompleteEvent', 'StepStartEvent', 'StepCompleteEvent']);
    // The events keep the run's seqs: the gaps are where filtered-out events were.
    expect(seqs(got)).toEqual([2, 4, 5, 7]);

    const second = await client(url);
    await second.subscribe({ pipeline_id: 'demo_workflow' });
    const again = await server.run(2);
    await second.waitUntil(() => second.events(again).length === 4, 'the next run');
    expect(await health(server.port)).toBe(200);
  });

  it('a client resuming with since across filtered-out events gets exactly what follows, with replay_complete and no replay_incomplete', { timeout: 90_000 }, async () => {
    const server = await seedServer();
    const url = `ws://127.0.0.1:${server.port}`;
    const runId = await server.run(3);
    const cases: [number, number[]][] = [
      [0, [2, 4, 5, 7]],
      [1, [2, 4, 5, 7]],
      [3, [4, 5, 7]],
      [5, [7]],
      [6, [7]],
      [7, []],
    ];
    for (const [since, expected] of cases) {
      const c = await client(url);
      await c.subscribe({ run_id: runId, since });
      const done = await c.waitFor((m) => m.type === 'replay_complete', `replay_complete after since ${since}`);
      expect(done).toMatchObject({ run_id: runId, last_seq: 7 });
      expect(seqs(c.events(runId)), `since ${since}`).toEqual(expected);
      expect(c.controls('replay_incomplete')).toEqual([]);
      await c.close();
    }
    expect(await health(server.port)).toBe(200);
  });
});

describe('InMemoryTransport#read of a log with gaps', () => {
  it('returns every held event after since, and counts a gap as no loss', () => {
    const t = new InMemoryTransport();
    for (const seq of [2, 4, 5, 7, 9]) t.ingest(logEvent('run-g', 'p', seq));
    for (const since of [0, 1, 2, 3, 6, 8, 9]) {
      const read = t.readSync('run-g', { since });
      expect(read.events.map((e) => e.seq), `since ${since}`).toEqual([2, 4, 5, 7, 9].filter((s) => s > since));
      expect(read).toMatchObject({ first_seq: 1, last_seq: 9, complete: true });
    }
    expect(t.readSync('run-g', { since: 3, limit: 2 }).events.map((e) => e.seq)).toEqual([4, 5]);
  });

  it('announces a bridged run in its run stream even when its PipelineStartEvent was filtered out', async () => {
    const t = new InMemoryTransport();
    for (const seq of [2, 4]) t.ingest(logEvent('run-b', 'p', seq));
    t.ingest(logEvent('run-b', 'p', 6, 'PipelineCompleteEvent'));
    const read = await t.runs.read('p');
    expect(read.markers.map((m) => [m.offset, m.kind, m.run_id])).toEqual([
      [1, 'start', 'run-b'],
      [2, 'end', 'run-b'],
    ]);
  });

  it('still says when retention trimmed events of a log with gaps', () => {
    const t = new InMemoryTransport({ maxEventsPerRun: 3 });
    for (const seq of [2, 4, 5, 7, 9, 12]) t.ingest(logEvent('run-t', 'p', seq));
    // Held: 7, 9, 12; trimmed through 5.
    expect(t.readSync('run-t', { since: 0 })).toMatchObject({ first_seq: 6, last_seq: 12, complete: false });
    expect(t.readSync('run-t', { since: 5 })).toMatchObject({ first_seq: 6, complete: true });
    expect(t.readSync('run-t', { since: 5 }).events.map((e) => e.seq)).toEqual([7, 9, 12]);
  });
});

const redis = useRedisServer();

function logEvent(runId: string, pipelineId: string, seq: number, type: 'StepLogEvent' | 'PipelineCompleteEvent' = 'StepLogEvent'): FlowcastEvent {
  const base = { v: 1 as const, event_id: `${runId}-${seq}`, pipeline_id: pipelineId, run_id: runId, seq, timestamp: new Date().toISOString() };
  if (type === 'PipelineCompleteEvent') return { type, ...base, pipeline_type: 'sequential', status: 'COMPLETED', duration_ms: 1, result: null };
  return { type, ...base, step_name: 's', step_index: 0, task_id: 't', attempt: 1, lines: [`line ${seq}`] };
}

/** Stores an event with its own seq in a run's Redis log, as a bridge behind a filter does (gaps stay gaps). */
async function store(client: Redis, prefix: string, event: FlowcastEvent): Promise<void> {
  const meta = runLogMetaKey(prefix, event.run_id);
  const multi = client.multi().xadd(runLogKey(prefix, event.run_id), `${event.seq}-0`, 'e', JSON.stringify(event)).hset(meta, 'seq', event.seq);
  if (event.type === 'PipelineCompleteEvent') multi.hset(meta, 'end', event.seq);
  await multi.exec();
}

describe('a run log with gaps on Redis', () => {
  it('is delivered live and replayed with since across the gaps: no stall, no replay_incomplete', { timeout: 60_000 }, async () => {
    const prefix = redis.prefix();
    const rc = redis.connect();
    const transport = new RedisPubSubTransport(rc, { keyPrefix: prefix, onError: () => undefined });
    cleanups.push(() => transport.close());
    const server = getWebSocketServer({ host: '127.0.0.1', port: 0, transport });
    cleanups.push(() => server.close());
    await server.startServer();
    const live = await client(server.url);
    await live.subscribe({ pipeline_id: 'p' });
    await transport.subscribed();

    const held = [2, 4, 5, 7, 9];
    const events = [...held.map((seq) => logEvent('run-r', 'p', seq)), logEvent('run-r', 'p', 11, 'PipelineCompleteEvent')];
    for (const e of events) {
      await store(rc, prefix, e);
      await transport.publish(e);
    }
    await live.waitForEnd('run-r');
    expect(seqs(live.events('run-r'))).toEqual([...held, 11]);

    for (const since of [0, 1, 3, 6, 10, 11]) {
      const c = await client(server.url);
      await c.subscribe({ run_id: 'run-r', since });
      await c.waitFor((m) => m.type === 'replay_complete', `replay_complete after since ${since}`);
      expect(seqs(c.events('run-r')), `since ${since}`).toEqual([...held, 11].filter((s) => s > since));
      expect(c.controls('replay_incomplete')).toEqual([]);
      await c.close();
    }
    const read = await transport.read('run-r');
    expect(read).toMatchObject({ first_seq: 1, last_seq: 11, complete: true, ended: true });
  });
});
