/**
 * The client SDK (`flowcast/client`) against a real server on port 0 with real `ws`
 * sockets and real pipelines on an InMemoryBroker. Timeouts only bound the waits.
 */
import { afterEach, describe, expect, expectTypeOf, it } from 'vitest';
import { WebSocket } from 'ws';
import {
  InMemoryBroker,
  InMemoryPipelineStorage,
  Pipeline,
  PipelineTrackingManager,
  type FlowcastEvent,
  type StepCompleteEvent,
} from '../src/index.js';
import { getWebSocketServer, type FlowcastServer, type ServerOptions } from '../src/server/server.js';
import { ErrorCodes, MonitorError, PipelineMonitor, type ConnectionState, type PipelineMonitorOptions, type RunSnapshot, type StateChange } from '../src/client/index.js';
import { deferred, waitUntil, type Deferred } from './helpers/collect.js';

const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Setup {
  broker: InMemoryBroker;
  tracking: PipelineTrackingManager;
  /** `demo`: `first` (logs, waits for `gates.first`), `second` (logs, waits for `gates.second`), `third`. */
  pipeline: Pipeline<number, number>;
  gates: { first: Deferred; second: Deferred };
  /** Runs with open gates (for runs that should just go through). */
  quick: Pipeline<number, number>;
}

function setup(): Setup {
  const broker = new InMemoryBroker({ onError: () => undefined });
  const tracking = new PipelineTrackingManager().withStorage(new InMemoryPipelineStorage());
  cleanups.push(() => broker.close());
  cleanups.push(() => tracking.close());
  const gates = { first: deferred(), second: deferred() };
  // Runs waiting on a gate must end for the broker to close.
  cleanups.push(() => {
    gates.first.resolve();
    gates.second.resolve();
  });
  const first = broker.task('first', async (n: number, ctx) => {
    ctx.log(`first got ${n}`);
    await gates.first.promise;
    ctx.log('first done');
    return n + 1;
  });
  const second = broker.task('second', async (n: number, ctx) => {
    ctx.log(`second got ${n}`);
    ctx.progress(0.5, 'half way');
    await gates.second.promise;
    return n * 2;
  });
  const third = broker.task('third', (n: number) => n + 100);
  const pipeline = new Pipeline(broker, { id: 'demo' }).callNext(first).callNext(second).callNext(third).withTracking(tracking);
  const step = broker.task('step', (n: number, ctx) => {
    ctx.log(`step ${n}`);
    return n + 1;
  });
  const quick = new Pipeline(broker, { id: 'quick' }).callNext(step).callNext(step).withTracking(tracking);
  return { broker, tracking, pipeline, gates, quick };
}

async function startServer(s: Setup, options: Partial<ServerOptions> = {}): Promise<FlowcastServer> {
  const server = getWebSocketServer({ host: '127.0.0.1', port: 0, broker: s.broker, tracking: s.tracking, heartbeatMs: 0, ...options });
  cleanups.push(() => server.close());
  await server.startServer();
  return server;
}

function monitor(url: string, options: PipelineMonitorOptions = {}): PipelineMonitor {
  const m = new PipelineMonitor(url, { WebSocket, reconnect: { initialDelayMs: 20, maxDelayMs: 200 }, ...options });
  cleanups.push(() => m.close());
  return m;
}

/** Collects what a monitor delivers. */
function record(m: PipelineMonitor): { events: FlowcastEvent[]; states: StateChange[]; errors: Error[]; snapshots: RunSnapshot[] } {
  const out = { events: [] as FlowcastEvent[], states: [] as StateChange[], errors: [] as Error[], snapshots: [] as RunSnapshot[] };
  m.on('*', (e) => out.events.push(e));
  m.on('state', (s) => out.states.push(s));
  m.on('error', (e) => out.errors.push(e));
  m.on('snapshot', (s) => out.snapshots.push(s));
  return out;
}

/** Polls an async condition; the timeout only bounds the wait. */
async function waitForAsync(condition: () => Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${timeoutMs}ms`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Waits until the run's tracked status has reached `seq`. */
const trackedTo = (s: Setup, runId: string, seq: number): Promise<void> =>
  waitForAsync(async () => ((await s.tracking.getStatus(runId))?.last_seq ?? 0) >= seq, `run ${runId} tracked to seq ${seq}`);

const ended = (events: FlowcastEvent[], runId: string): boolean => events.some((e) => e.run_id === runId && e.type === 'PipelineCompleteEvent');

/** The run's events as delivered are exactly its log: every seq once, in order, the same event ids. */
async function expectExactly(events: FlowcastEvent[], s: Setup, runId: string, fromSeq = 1): Promise<void> {
  const mine = events.filter((e) => e.run_id === runId);
  const log = await s.broker.transport.read(runId, { since: fromSeq - 1 });
  expect(log.ended).toBe(true);
  expect(mine.map((e) => `${e.seq} ${e.type}`)).toEqual(log.events.map((e) => `${e.seq} ${e.type}`));
  expect(mine.map((e) => e.event_id)).toEqual(log.events.map((e) => e.event_id));
}

describe('#subscribe', () => {
  it('delivers a whole run in seq order to typed listeners, to "*" and to the async iterator', async () => {
    const s = setup();
    const server = await startServer(s);
    const m = monitor(server.url);
    const got = record(m);
    const completes: StepCompleteEvent[] = [];
    m.on('StepCompleteEvent', (e) => {
      expectTypeOf(e).toEqualTypeOf<StepCompleteEvent>();
      completes.push(e);
    });
    m.on('PipelineCompleteEvent', (e) => expectTypeOf(e.result).not.toBeAny());
    // Queued before the connection exists.
    const subscribed = m.subscribe('quick');
    expect(m.state).toBe('idle');
    await m.connect();
    await subscribed;
    expect(m.state).toBe('open');

    const run = await s.quick.kiq(1);
    expect(await run.waitResult({ timeoutMs: 10_000 })).toBe(3);
    await waitUntil(() => ended(got.events, run.runId), 'the run end');
    await expectExactly(got.events, s, run.runId);
    expect(completes.map((e) => e.step_index)).toEqual([0, 1]);
    expect(got.states.map((c) => `${c.from}>${c.to}`)).toEqual(['idle>connecting', 'connecting>open']);
    expect(got.errors).toEqual([]);
  });

  it('a disposer stops its listener and only its listener', async () => {
    const s = setup();
    const server = await startServer(s);
    const m = monitor(server.url);
    const kept: FlowcastEvent[] = [];
    const dropped: FlowcastEvent[] = [];
    m.on('*', (e) => kept.push(e));
    const off = m.on('*', (e) => dropped.push(e));
    off();
    off();
    const subscribed = m.subscribe('quick');
    await m.connect();
    await subscribed;
    const run = await s.quick.kiq(1);
    await waitUntil(() => ended(kept, run.runId), 'the run end');
    expect(kept.length).toBeGreaterThan(0);
    expect(dropped).toEqual([]);
  });

  it('rejects with the server\'s error reply (forbidden), and the connection keeps serving other subscriptions', async () => {
    const s = setup();
    const server = await startServer(s, { auth: { apiKeys: { 'key-quick': { id: 'reader', pipelines: ['quick'] } } } });
    const m = monitor(server.url, { token: 'key-quick' });
    const got = record(m);
    await m.connect();
    const refused = await m.subscribe('demo').then(
      () => null,
      (error: unknown) => error,
    );
    expect(refused).toBeInstanceOf(MonitorError);
    expect(refused).toMatchObject({ code: ErrorCodes.REQUEST_REJECTED, serverCode: 'forbidden' });
    expect((refused as Error).message).toMatch(/subscribe\("demo"\) rejected: forbidden/);
    expect(m.stats.subscriptions).toBe(0);

    await m.subscribe('quick');
    const run = await s.quick.kiq(2);
    await waitUntil(() => ended(got.events, run.runId), 'the run end');
    await expectExactly(got.events, s, run.runId);
    // The rejection went to the promise, not to the error event.
    expect(got.errors).toEqual([]);
  });

  it('{ runId, since } replays the events after since, then follows live', async () => {
    const s = setup();
    const server = await startServer(s);
    const run = await s.pipeline.kiq(1);
    await trackedTo(s, run.runId, 3);
    const m = monitor(server.url);
    const got = record(m);
    const replayed: number[] = [];
    m.on('replay_complete', (r) => replayed.push(r.last_seq));
    await m.connect();
    await m.subscribe({ runId: run.runId, since: 1 });
    await waitUntil(() => replayed.length === 1, 'replay_complete');
    s.gates.first.resolve();
    s.gates.second.resolve();
    await run.waitResult({ timeoutMs: 10_000 });
    await waitUntil(() => ended(got.events, run.runId), 'the run end');
    await expectExactly(got.events, s, run.runId, 2);
  });

  it('subscribing twice to the same target is one subscription', async () => {
    const s = setup();
    const server = await startServer(s);
    const m = monitor(server.url);
    const got = record(m);
    await m.connect();
    await Promise.all([m.subscribe('quick'), m.subscribe('quick'), m.subscribe({ pipelineId: 'quick' })]);
    await m.subscribe('*');
    expect(m.stats.subscriptions).toBe(2);
    const run = await s.quick.kiq(1);
    await waitUntil(() => ended(got.events, run.runId), 'the run end');
    await expectExactly(got.events, s, run.runId);
  });
});

describe('#unsubscribe', () => {
  it('stops the events of that pipeline', async () => {
    const s = setup();
    const server = await startServer(s);
    const m = monitor(server.url);
    const got = record(m);
    await m.connect();
    await m.subscribe('quick');
    const run1 = await s.quick.kiq(1);
    await waitUntil(() => ended(got.events, run1.runId), 'the first run end');
    await m.unsubscribe('quick');
    // A witness subscription on another pipeline: once its run ended, the quick run (started first and done first) would have been seen.
    await m.subscribe('demo');
    const run2 = await s.quick.kiq(2);
    await run2.waitResult({ timeoutMs: 10_000 });
    s.gates.first.resolve();
    s.gates.second.resolve();
    const witness = await s.pipeline.kiq(1);
    await witness.waitResult({ timeoutMs: 10_000 });
    await waitUntil(() => ended(got.events, witness.runId), 'the witness run end');
    expect(got.events.filter((e) => e.run_id === run2.runId)).toEqual([]);
  });

  it('before connect, removes the queued subscription and rejects its pending promise', async () => {
    const s = setup();
    const server = await startServer(s);
    const m = monitor(server.url);
    const pending = m.subscribe('quick');
    await m.unsubscribe('quick');
    await expect(pending).rejects.toMatchObject({ code: ErrorCodes.CANCELLED });
    expect(m.stats.subscriptions).toBe(0);
  });
});

describe('#events', () => {
  it('iterates events until the signal aborts', async () => {
    const s = setup();
    const server = await startServer(s);
    const m = monitor(server.url);
    const subscribed = m.subscribe('quick');
    await m.connect();
    await subscribed;
    const controller = new AbortController();
    const run = await s.quick.kiq(1);
    const seen: FlowcastEvent[] = [];
    for await (const e of m.events({ signal: controller.signal })) {
      seen.push(e);
      if (e.type === 'PipelineCompleteEvent') controller.abort();
    }
    await expectExactly(seen, s, run.runId);
  });

  it('filters by type, and ends after the held events when the monitor closes', async () => {
    const s = setup();
    const server = await startServer(s);
    const m = monitor(server.url);
    const subscribed = m.subscribe('quick');
    await m.connect();
    await subscribed;
    const starts = m.events({ types: ['StepStartEvent'] });
    const all = m.events();
    const run = await s.quick.kiq(1);
    const seen: FlowcastEvent[] = [];
    for await (const e of all) {
      seen.push(e);
      if (e.type === 'PipelineCompleteEvent') break;
    }
    await m.close();
    const startTypes: string[] = [];
    for await (const e of starts) startTypes.push(`${e.type}:${e.run_id === run.runId}`);
    expect(startTypes).toEqual(['StepStartEvent:true', 'StepStartEvent:true']);
    // A new iterator of a closed monitor is over at once.
    expect(await m.events().next()).toEqual({ value: undefined, done: true });
  });

  it('an already aborted signal gives an iterator that is over', async () => {
    const s = setup();
    const server = await startServer(s);
    const m = monitor(server.url);
    expect(await m.events({ signal: AbortSignal.abort() }).next()).toEqual({ value: undefined, done: true });
  });
});

describe('#ping', () => {
  it('resolves with the round trip in milliseconds; rejects when not connected', async () => {
    const s = setup();
    const server = await startServer(s);
    const m = monitor(server.url);
    await expect(m.ping()).rejects.toMatchObject({ code: ErrorCodes.CONNECTION_FAILED });
    await m.connect();
    const ms = await m.ping();
    expect(typeof ms).toBe('number');
    expect(ms).toBeGreaterThanOrEqual(0);
  });
});

describe('late join', () => {
  it('"snapshot": a run in flight comes as its snapshot, then exactly the events after its last_seq', async () => {
    const s = setup();
    const server = await startServer(s);
    const run = await s.pipeline.kiq(1);
    await trackedTo(s, run.runId, 3);
    const m = monitor(server.url);
    const got = record(m);
    const subscribed = m.subscribe('demo');
    await m.connect();
    await subscribed;
    await waitUntil(() => got.snapshots.length === 1, 'the snapshot');
    const snap = got.snapshots[0] as RunSnapshot;
    expect(snap).toMatchObject({ type: 'snapshot', run_id: run.runId, pipeline_id: 'demo' });
    expect(snap.status.status).toBe('RUNNING');
    expect(m.lastSeq(run.runId)).toBe(snap.last_seq);
    s.gates.first.resolve();
    s.gates.second.resolve();
    await run.waitResult({ timeoutMs: 10_000 });
    await waitUntil(() => ended(got.events, run.runId), 'the run end');
    await expectExactly(got.events, s, run.runId, snap.last_seq + 1);
  });

  it('"replay": a run in flight comes whole, from seq 1, every log line included', async () => {
    const s = setup();
    const server = await startServer(s);
    const run = await s.pipeline.kiq(1);
    await trackedTo(s, run.runId, 3);
    const m = monitor(server.url, { lateJoin: 'replay' });
    const got = record(m);
    const subscribed = m.subscribe('demo');
    await m.connect();
    await subscribed;
    await waitUntil(() => got.events.some((e) => e.type === 'StepLogEvent'), 'the replayed log line');
    s.gates.first.resolve();
    s.gates.second.resolve();
    await run.waitResult({ timeoutMs: 10_000 });
    await waitUntil(() => ended(got.events, run.runId), 'the run end');
    await expectExactly(got.events, s, run.runId);
    expect(got.snapshots).toHaveLength(1);
    expect(got.events.filter((e) => e.type === 'StepLogEvent').flatMap((e) => (e.type === 'StepLogEvent' ? e.lines : []))).toEqual([
      'first got 1',
      'first done',
      'second got 2',
    ]);
  });
});

describe('reconnect', () => {
  it('across a server restart on the same port: no event of a run spanning the restart is lost or repeated', { timeout: 30_000 }, async () => {
    const s = setup();
    const first = await startServer(s);
    const m = monitor(first.url);
    const got = record(m);
    const subscribed = m.subscribe('demo');
    await m.connect();
    await subscribed;
    const run = await s.pipeline.kiq(1);
    await waitUntil(() => got.events.some((e) => e.type === 'StepLogEvent' && e.run_id === run.runId), 'the first log line');

    await first.close();
    await waitUntil(() => m.state !== 'open', 'the monitor seeing the close');
    // The run goes on while nobody listens.
    s.gates.first.resolve();
    await waitForAsync(async () => (await s.broker.transport.read(run.runId)).events.some((e) => e.type === 'StepProgressEvent'), 'the progress event in the log');
    const seenBefore = got.events.length;
    const second = await startServer(s, { port: first.port });
    expect(second.port).toBe(first.port);
    await waitUntil(() => m.state === 'open', 'the reconnect', 10_000);
    await waitUntil(() => got.events.some((e) => e.type === 'StepProgressEvent'), 'the missed events');
    expect(got.events.length).toBeGreaterThan(seenBefore);
    s.gates.second.resolve();
    await run.waitResult({ timeoutMs: 10_000 });
    await waitUntil(() => ended(got.events, run.runId), 'the run end');
    await expectExactly(got.events, s, run.runId);

    // A run started after the restart arrives too: the pipeline subscription was made again.
    const next = await s.quick.kiq(1);
    await m.subscribe('quick');
    await next.waitResult({ timeoutMs: 10_000 });
    const transitions = got.states.map((c) => `${c.from}>${c.to}`);
    expect(transitions.slice(0, 3)).toEqual(['idle>connecting', 'connecting>open', 'open>reconnecting']);
    expect(transitions[transitions.length - 1]).toBe('connecting>open');
    expect(got.states.find((c) => c.to === 'reconnecting')).toMatchObject({ code: 1001 });
    expect(got.errors).toEqual([]);
  });

  it('a rejected token (4001) closes for good with "Unauthorized", without retrying', async () => {
    const s = setup();
    const server = await startServer(s, { auth: { apiKeys: { good: { id: 'someone' } } } });
    let upgrades = 0;
    server.app.server.on('upgrade', () => upgrades++);
    const m = monitor(server.url, { token: 'bad-token', reconnect: { initialDelayMs: 1, maxDelayMs: 2 } });
    const got = record(m);
    const subscribed = m.subscribe('quick');
    const error = await m.connect().then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(MonitorError);
    expect(error).toMatchObject({ code: ErrorCodes.UNAUTHORIZED, closeCode: 4001 });
    expect((error as Error).message).toMatch(/^Unauthorized/);
    await expect(subscribed).rejects.toMatchObject({ code: ErrorCodes.UNAUTHORIZED });
    expect(m.state).toBe('closed');
    expect(got.errors).toEqual([error]);
    expect(got.states.map((c) => `${c.from}>${c.to}`)).toEqual(['idle>connecting', 'connecting>closed']);
    // Give a retry every chance to happen (1-2 ms backoff): none does.
    await new Promise((r) => setTimeout(r, 200));
    expect(upgrades).toBe(1);
    await expect(m.connect()).rejects.toMatchObject({ code: ErrorCodes.UNAUTHORIZED });
    await expect(m.subscribe('quick')).rejects.toMatchObject({ code: ErrorCodes.UNAUTHORIZED });
  });

  it('a good token works as a subprotocol and, when it cannot be one, in ?token=', async () => {
    const s = setup();
    const server = await startServer(s, { auth: { apiKeys: { 'plain.key-1': { id: 'a' }, 'with space/and=': { id: 'b' } } } });
    for (const token of ['plain.key-1', 'with space/and=', () => Promise.resolve('plain.key-1')]) {
      const m = monitor(server.url, { token });
      await m.connect();
      expect(await m.ping()).toBeGreaterThanOrEqual(0);
      await m.close();
    }
  });

  it('gives up after reconnect.maxAttempts failed attempts with CONNECTION_FAILED', async () => {
    const s = setup();
    const server = await startServer(s);
    const url = server.url;
    await server.close();
    const m = monitor(url, { reconnect: { initialDelayMs: 1, maxDelayMs: 5, maxAttempts: 3 } });
    const got = record(m);
    await expect(m.connect()).rejects.toMatchObject({ code: ErrorCodes.CONNECTION_FAILED, message: expect.stringMatching(/after 3 attempts/) as unknown });
    const states: ConnectionState[] = got.states.map((c) => c.to);
    expect(states).toEqual(['connecting', 'reconnecting', 'connecting', 'reconnecting', 'connecting', 'closed']);
    expect(got.states.filter((c) => c.to === 'connecting').map((c) => c.attempt)).toEqual([1, 2, 3]);
  });

  it('reconnect: false closes at the first drop', async () => {
    const s = setup();
    const server = await startServer(s);
    const m = monitor(server.url, { reconnect: false });
    const got = record(m);
    await m.connect();
    await server.close();
    await waitUntil(() => m.state === 'closed', 'the close');
    expect(got.errors[0]).toMatchObject({ code: ErrorCodes.CONNECTION_FAILED, closeCode: 1001 });
  });
});

describe('#close', () => {
  it('is idempotent, ends pending work, and is final', async () => {
    const s = setup();
    const server = await startServer(s);
    const m = monitor(server.url);
    const got = record(m);
    await m.connect();
    const p1 = m.close();
    const p2 = m.close();
    expect(p1).toBe(p2);
    await p1;
    expect(m.state).toBe('closed');
    expect(got.states.map((c) => c.to)).toEqual(['connecting', 'open', 'closed']);
    expect(got.errors).toEqual([]);
    await expect(m.connect()).rejects.toMatchObject({ code: ErrorCodes.CLOSED });
    await waitUntil(() => server.connections === 0, 'the server seeing the close');
  });

  it('while connecting rejects connect() with CLOSED', async () => {
    const s = setup();
    const server = await startServer(s);
    const m = monitor(server.url);
    const connecting = m.connect();
    await m.close();
    await expect(connecting).rejects.toMatchObject({ code: ErrorCodes.CLOSED });
  });

  it('supports await using', async () => {
    const s = setup();
    const server = await startServer(s);
    let inner: PipelineMonitor;
    {
      await using m = new PipelineMonitor(server.url, { WebSocket });
      inner = m;
      await m.connect();
    }
    expect(inner.state).toBe('closed');
  });
});
