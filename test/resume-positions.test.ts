/**
 * Issue 13 item 12: a client that drops and resumes gets every run it missed exactly once
 * and nothing it already had: no whole run again from seq 1, no duplicate frame, with no
 * de-duplication on the client. Pipeline and `*` subscriptions resume from their offset
 * in the run stream (docs/protocol.md, "Resuming after a drop"), runs in flight from
 * their seq.
 *
 * Memory: real servers over one InMemoryBroker (as instances share Redis), the SDK and a
 * raw client that follows the protocol document. Redis: two servers and a BullMQ worker
 * on one real redis-server, the SDK moving from one server to the other.
 */
import { describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { Pipeline, PipelineTrackingManager, type FlowcastEvent, type RunHandle } from '../src/index.js';
import { PipelineMonitor, type WebSocketConstructor } from '../src/client/index.js';
import { BullMQBroker } from '../src/redis/bullmq-broker.js';
import { getWebSocketServer, type FlowcastServer } from '../src/server/index.js';
import { waitUntil } from './helpers/collect.js';
import { freePort, useRedisServer } from './helpers/redis.js';
import { logHolds, onCleanup, startFixture, type Fixture } from './helpers/server-fixture.js';
import { isEvent, type TestClient } from './helpers/ws-client.js';

type Frame = Record<string, unknown>;

/** A `ws` WebSocket class that keeps every frame each of its connections received, in order. */
function framesRecorder(): { WebSocket: WebSocketConstructor; connections: Frame[][] } {
  const connections: Frame[][] = [];
  class Recording extends WebSocket {
    constructor(address: string | URL, protocols?: string | string[]) {
      super(address, protocols);
      const frames: Frame[] = [];
      connections.push(frames);
      this.on('message', (data: Buffer) => frames.push(JSON.parse(data.toString('utf8')) as Frame));
    }
  }
  return { WebSocket: Recording, connections };
}

const isEventFrame = (f: Frame): f is Frame & FlowcastEvent => typeof f.seq === 'number' && typeof f.run_id === 'string' && typeof f.event_id === 'string';
const terminal = (e: { type: string }): boolean => e.type === 'PipelineCompleteEvent' || e.type === 'PipelineErrorEvent' || e.type === 'PipelineCancelledEvent';

/** `run#seq` of every event frame that came more than once, over all connections. */
function repeatedFrames(connections: Frame[][]): string[] {
  const seen = new Set<string>();
  const twice: string[] = [];
  for (const f of connections.flat()) {
    if (!isEventFrame(f)) continue;
    const key = `${f.run_id}#${f.seq}`;
    if (seen.has(key)) twice.push(key);
    seen.add(key);
  }
  return twice;
}

/** On each connection, every run's start `position` came before any event of that run (for the runs it announced). */
function expectPositionsFirst(connections: Frame[][]): void {
  for (const frames of connections) {
    const firstEvent = new Map<string, number>();
    frames.forEach((f, i) => {
      if (isEventFrame(f) && !firstEvent.has(f.run_id)) firstEvent.set(f.run_id, i);
    });
    frames.forEach((f, i) => {
      if (f.type !== 'position' || f.kind !== 'start') return;
      const first = firstEvent.get(f.run_id as string);
      if (first !== undefined) expect(first, `the first event of run ${String(f.run_id)} came before its position`).toBeGreaterThan(i);
    });
  }
}

async function expectWholeLogs(monitorEvents: FlowcastEvent[], read: (runId: string) => Promise<FlowcastEvent[]>, runIds: string[]): Promise<void> {
  for (const runId of runIds) {
    const log = await read(runId);
    await waitUntil(() => monitorEvents.filter((e) => e.run_id === runId).length >= log.length, `every event of run ${runId} at the client`, 20_000);
    const got = monitorEvents.filter((e) => e.run_id === runId);
    expect(got.map((e) => e.seq), `seqs of run ${runId}`).toEqual(log.map((e) => e.seq));
    expect(got.map((e) => e.event_id)).toEqual(log.map((e) => e.event_id));
  }
}

describe('a PipelineMonitor that reconnects (memory)', () => {
  it('gets every run it missed once and no frame twice: not the runs it saw end, not the one it had in flight', { timeout: 60_000 }, async () => {
    const f = await startFixture();
    const port = await freePort();
    const recorder = framesRecorder();
    const monitor = new PipelineMonitor([f.server.url, `ws://127.0.0.1:${port}`], { WebSocket: recorder.WebSocket, reconnect: { initialDelayMs: 20, maxDelayMs: 100 } });
    onCleanup(() => monitor.close());
    const events: FlowcastEvent[] = [];
    monitor.on('*', (e) => events.push(e));
    const subscribed = monitor.subscribe('*');
    await monitor.connect();
    await subscribed;
    const ended = (runId: string): boolean => events.some((e) => e.run_id === runId && terminal(e));

    // Seen before the drop: three runs start and end, one is in flight.
    const seen = [await f.runToEnd(f.alpha), await f.runToEnd(f.beta), await f.runToEnd(f.alpha)];
    const inFlight = await f.startGated({ key: 'a', phases: [3, 2] });
    await logHolds(f, inFlight.runId, 5);
    await waitUntil(() => seen.every(ended) && events.filter((e) => e.run_id === inFlight.runId).length === 5, 'everything before the drop');

    // The server goes away; runs start and end meanwhile, the one in flight ends, another starts.
    await f.server.close();
    const away = [await f.runToEnd(f.alpha), await f.runToEnd(f.beta)];
    f.open('a', 0);
    await inFlight.waitResult({ timeoutMs: 10_000 });
    const later = await f.startGated({ key: 'b', phases: [2, 1] });
    await logHolds(f, later.runId, 4);

    const second = getWebSocketServer({ port, broker: f.broker, tracking: f.tracking, restRateLimit: false });
    onCleanup(() => second.close());
    await second.startServer();
    await waitUntil(() => monitor.state === 'open' && monitor.url === second.url, 'the reconnect to the second server', 20_000);
    f.open('b', 0);
    await later.waitResult({ timeoutMs: 10_000 });
    const after = await f.runToEnd(f.alpha);

    await expectWholeLogs(events, (runId) => f.log(runId), [...seen, inFlight.runId, ...away, later.runId, after]);
    expect(repeatedFrames(recorder.connections)).toEqual([]);
    expect(monitor.stats.duplicatesDropped).toBe(0);
    expectPositionsFirst(recorder.connections);
  });
});

/** The last `position` offset a raw client got for a stream (or the `subscribed` one when none came). */
function lastOffset(client: TestClient, stream: string): number {
  const positions = client.controls('position').filter((m) => m.stream === stream);
  const last = positions[positions.length - 1];
  if (last !== undefined) return last.offset as number;
  return client.controls('subscribed').find((m) => m.pipeline_id === stream)?.offset as number;
}

/** The runs a raw client knows and has not seen end, with the last seq it got of each. */
function inFlightAt(client: TestClient): Map<string, number> {
  const runs = new Map<string, number>();
  for (const m of client.messages) {
    if (m.type === 'position' && m.kind === 'start' && !runs.has(m.run_id as string)) runs.set(m.run_id as string, 0);
    if (isEvent(m)) runs.set(m.run_id, m.seq);
  }
  for (const m of client.messages) if (isEvent(m) && terminal(m)) runs.delete(m.run_id);
  return runs;
}

async function gatedInFlight(f: Fixture, key: string, held: number): Promise<RunHandle<string>> {
  const run = await f.startGated({ key, phases: [held - 2, 1] });
  await logHolds(f, run.runId, held);
  return run;
}

describe('resuming as docs/protocol.md says (raw protocol, memory)', () => {
  it('each run in flight from its seq, then "*" from its offset: the runs it missed from their first event, nothing twice, positions first', { timeout: 60_000 }, async () => {
    const f = await startFixture();
    const first = await f.client();
    const ack = await first.subscribe({ pipeline_id: '*', positions: true });
    expect(ack).toMatchObject({ offset: expect.any(Number) as unknown, epoch: expect.any(String) as unknown });
    const epoch = ack.epoch as string;
    const seen = [await f.runToEnd(f.alpha), await f.runToEnd(f.beta)];
    const held = await gatedInFlight(f, 'x', 4);
    await first.waitUntil(() => seen.every((r) => first.events(r).some(terminal)) && first.events(held.runId).length === 4, 'everything before the drop');
    const offset = lastOffset(first, '*');
    const known = inFlightAt(first);
    expect([...known.entries()]).toEqual([[held.runId, 4]]);
    await first.close();

    const away = [await f.runToEnd(f.beta), await f.runToEnd(f.alpha)];
    f.open('x', 0);
    await held.waitResult({ timeoutMs: 10_000 });
    const later = await gatedInFlight(f, 'y', 3);

    const second = await f.client();
    for (const [runId, since] of known) await second.subscribe({ run_id: runId, since, epoch });
    const resumed = await second.subscribe({ pipeline_id: '*', offset, epoch });
    expect(resumed).toMatchObject({ recovered: true, offset, epoch });
    f.open('y', 0);
    await later.waitResult({ timeoutMs: 10_000 });
    const all = [...seen, held.runId, ...away, later.runId];
    for (const runId of [held.runId, ...away, later.runId]) await second.waitForEnd(runId);
    for (const runId of all) {
      const log = await f.log(runId);
      const got = [...first.events(runId), ...second.events(runId)];
      expect(got.map((e) => e.seq), `run ${runId}`).toEqual(log.map((e) => e.seq));
    }
    // The positions after the offset, each once, in order.
    const offsets = second.controls('position').map((m) => m.offset as number);
    expect(offsets).toEqual(offsets.map((_o, i) => offset + 1 + i));
    expect(second.controls('position').filter((m) => m.kind === 'start').map((m) => m.run_id)).toEqual([...away, later.runId]);
    expect(repeatedFrames([first.messages, second.messages] as Frame[][])).toEqual([]);
    expectPositionsFirst([first.messages, second.messages] as Frame[][]);
  });

  it('says when it cannot resume from the offset (another epoch, an offset never reached, markers trimmed), and goes on as a late join', { timeout: 60_000 }, async () => {
    const f = await startFixture({ broker: { transport: { runStreamLength: 2 } } });
    const c = await f.client();
    const ack = await c.subscribe({ pipeline_id: 'alpha', positions: true });
    for (let i = 0; i < 3; i++) await f.runToEnd(f.alpha);
    const epoch = ack.epoch as string;
    // Six markers (three starts, three ends), two kept: offsets 5 and 6.
    expect(await c.subscribe({ pipeline_id: 'alpha', offset: 6, epoch })).toMatchObject({ recovered: true, offset: 6 });
    expect(await c.subscribe({ pipeline_id: 'alpha', offset: 4, epoch })).toMatchObject({ recovered: true, offset: 4 });
    expect(await c.subscribe({ pipeline_id: 'alpha', offset: 2, epoch })).toMatchObject({ recovered: false, reason: 'trimmed', offset: 6 });
    expect(await c.subscribe({ pipeline_id: 'alpha', offset: 3, epoch: 'another-history' })).toMatchObject({ recovered: false, reason: 'epoch', offset: 6, epoch });
    expect(await c.subscribe({ pipeline_id: 'alpha', offset: 99, epoch })).toMatchObject({ recovered: false, reason: 'unknown', offset: 6 });
    const bad = await c.request({ type: 'subscribe', run_id: 'r', offset: 1 });
    expect(bad).toMatchObject({ type: 'error', code: 'bad_message' });
    expect(String(bad.message)).toMatch(/"offset" need "pipeline_id"/);
    const lone = await c.request({ type: 'subscribe', pipeline_id: 'alpha', epoch });
    expect(String(lone.message)).toMatch(/"epoch" goes with "since" or "offset"/);
  });
});

describe('positions and authorisation', () => {
  it('a "*" subscription gets no position of a run it may not read, and resumes past them without their events', { timeout: 60_000 }, async () => {
    const f = await startFixture({ server: { auth: { apiKeys: { 'key-alpha': { id: 'alpha-team', pipelines: ['alpha'] } } } } });
    const c = await f.client({ queryToken: 'key-alpha' });
    const ack = await c.subscribe({ pipeline_id: '*', positions: true });
    const hidden = await f.runToEnd(f.beta);
    const shown = await f.runToEnd(f.alpha);
    await c.waitForEnd(shown);
    expect(c.controls('position').map((m) => [m.kind, m.run_id])).toEqual([
      ['start', shown],
      ['end', shown],
    ]);
    expect(JSON.stringify(c.messages)).not.toContain(hidden);
    const offset = c.controls('position').at(-1)?.offset as number;
    await c.close();
    const again = await f.client({ queryToken: 'key-alpha' });
    const hiddenAway = await f.runToEnd(f.beta);
    const shownAway = await f.runToEnd(f.alpha);
    expect(await again.subscribe({ pipeline_id: '*', offset, epoch: ack.epoch })).toMatchObject({ recovered: true });
    await again.waitForEnd(shownAway);
    expect(again.controls('position').map((m) => m.run_id)).toEqual([shownAway, shownAway]);
    expect(JSON.stringify(again.messages)).not.toContain(hidden);
    expect(JSON.stringify(again.messages)).not.toContain(hiddenAway);
    expect(again.events(shown).map((e) => e.seq)).toEqual([]);
  });
});

const redis = useRedisServer();

describe('a PipelineMonitor that moves to another server (Redis)', () => {
  it('gets every run it missed once and no frame twice, across servers sharing one Redis', { timeout: 120_000 }, async () => {
    const prefix = redis.prefix();
    const worker = new BullMQBroker({ connection: redis.url, keyPrefix: prefix, worker: { concurrency: 4 }, onError: () => undefined });
    onCleanup(() => worker.close({ force: true }));
    const tracking = new PipelineTrackingManager().withAutoStorage(worker);
    onCleanup(() => tracking.close());
    const inc = worker.task('inc', (n: number, ctx) => {
      ctx.log(`inc ${n}`);
      return n + 1;
    });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const hold = worker.task('hold', async (n: number) => {
      await gate;
      return n;
    });
    const quick = new Pipeline(worker, { id: 'quick' }).callNext(inc).callNext(inc).withTracking(tracking);
    const slow = new Pipeline(worker, { id: 'slow' }).callNext(inc).callNext(hold).callNext(inc).withTracking(tracking);
    await worker.waitUntilReady();

    const servers: FlowcastServer[] = [];
    const port = await freePort();
    const serverOn = async (p: number): Promise<FlowcastServer> => {
      const s = getWebSocketServer({ host: '127.0.0.1', port: p, broker: worker, tracking, restRateLimit: false });
      servers.push(s);
      onCleanup(() => s.close());
      await s.startServer();
      return s;
    };
    const one = await serverOn(0);
    const recorder = framesRecorder();
    const monitor = new PipelineMonitor([one.url, `ws://127.0.0.1:${port}`], { WebSocket: recorder.WebSocket, reconnect: { initialDelayMs: 20, maxDelayMs: 100 } });
    onCleanup(() => monitor.close());
    const events: FlowcastEvent[] = [];
    monitor.on('*', (e) => events.push(e));
    const subscribed = monitor.subscribe('*');
    await monitor.connect();
    await subscribed;
    const ended = (runId: string): boolean => events.some((e) => e.run_id === runId && terminal(e));
    const finish = async (run: Promise<RunHandle<number>>): Promise<string> => {
      const handle = await run;
      await handle.waitResult({ timeoutMs: 20_000 });
      return handle.runId;
    };
    const read = async (runId: string): Promise<FlowcastEvent[]> => (await worker.transport.read(runId)).events;

    const seen = await Promise.all([finish(quick.kiq(1)), finish(quick.kiq(2)), finish(quick.kiq(3))]);
    const inFlight = await slow.kiq(10);
    await waitUntil(() => seen.every(ended) && events.some((e) => e.run_id === inFlight.runId && e.type === 'StepStartEvent' && e.step_name === 'hold'), 'everything before the drop', 20_000);

    await one.close();
    const away = await Promise.all([finish(quick.kiq(4)), finish(quick.kiq(5))]);
    release();
    await inFlight.waitResult({ timeoutMs: 20_000 });
    await serverOn(port);
    await waitUntil(() => monitor.state === 'open' && monitor.url === `ws://127.0.0.1:${port}`, 'the move to the second server', 20_000);
    const after = await finish(quick.kiq(6));

    await expectWholeLogs(events, read, [...seen, inFlight.runId, ...away, after]);
    expect(repeatedFrames(recorder.connections)).toEqual([]);
    expect(monitor.stats.duplicatesDropped).toBe(0);
    expectPositionsFirst(recorder.connections);
    expect(servers).toHaveLength(2);
  });
});
