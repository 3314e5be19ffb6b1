/**
 * Edge cases of the client SDK against a small protocol server written here with `ws`
 * (as centrifuge-js tests its client with a fake server): the server sends exactly what
 * a test wants — duplicates, a live event that overtakes a replay, a 4008 close — and
 * records what the client sends, message by message.
 */
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { ErrorCodes, PipelineMonitor, type PipelineMonitorOptions, type ReplayIncompleteMessage, type StateChange } from '../src/client/index.js';
import type { FlowcastEvent } from '../src/index.js';
import { waitUntil } from './helpers/collect.js';

const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** One client connection as the fake server sees it. */
interface Peer {
  ws: WebSocket;
  /** Every message received, handshake ping included. */
  received: Record<string, unknown>[];
  send(message: object): void;
}

interface FakeServer {
  url: string;
  peers: Peer[];
  /** Waits for connection `i` (0-based) and returns it. */
  peer(i: number): Promise<Peer>;
}

/**
 * A protocol server: answers `ping` with `pong` (unless `answerPings` is false) and
 * `subscribe`/`unsubscribe` with `subscribed`/`unsubscribed`, echoing `id`; sends
 * nothing else unless the test does.
 */
async function fakeServer(
  options: { answerPings?: boolean; onSubscribe?: (peer: Peer, msg: Record<string, unknown>) => void; ack?: (msg: Record<string, unknown>) => Record<string, unknown> } = {},
): Promise<FakeServer> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((resolve) => wss.once('listening', resolve));
  const peers: Peer[] = [];
  wss.on('connection', (ws) => {
    const peer: Peer = { ws, received: [], send: (m) => ws.send(JSON.stringify(m)) };
    peers.push(peer);
    ws.on('message', (data) => {
      const msg = JSON.parse((data as Buffer).toString('utf8')) as Record<string, unknown>;
      peer.received.push(msg);
      if (msg.type === 'ping' && options.answerPings !== false) peer.send({ type: 'pong', timestamp: new Date().toISOString(), id: msg.id });
      if (msg.type === 'subscribe' || msg.type === 'unsubscribe') {
        const target = msg.run_id === undefined ? { pipeline_id: msg.pipeline_id } : { run_id: msg.run_id };
        peer.send({ type: `${msg.type}d`, ...target, ...(msg.type === 'subscribe' ? options.ack?.(msg) : undefined), id: msg.id });
        if (msg.type === 'subscribe') options.onSubscribe?.(peer, msg);
      }
    });
  });
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        for (const c of wss.clients) c.terminate();
        wss.close(() => resolve());
      }),
  );
  const url = `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`;
  return {
    url,
    peers,
    async peer(i) {
      await waitUntil(() => peers.length > i, `connection ${i + 1}`);
      return peers[i] as Peer;
    },
  };
}

let eventCounter = 0;
/** A protocol-shaped event of run `runId` (pipeline `p`) with this seq. */
function event(runId: string, seq: number, type: FlowcastEvent['type'] = 'StepLogEvent'): FlowcastEvent {
  return {
    type,
    v: 1,
    event_id: `e${++eventCounter}`,
    pipeline_id: 'p',
    run_id: runId,
    seq,
    timestamp: new Date().toISOString(),
    step_name: 's',
    step_index: 0,
    task_id: 't',
    lines: [`line ${seq}`],
    attempt: 1,
  } as FlowcastEvent;
}

function monitor(url: string, options: PipelineMonitorOptions = {}): PipelineMonitor {
  const m = new PipelineMonitor(url, { WebSocket, reconnect: { initialDelayMs: 5, maxDelayMs: 20 }, ...options });
  cleanups.push(() => m.close());
  return m;
}

function record(m: PipelineMonitor): { events: FlowcastEvent[]; states: StateChange[]; errors: Error[] } {
  const out = { events: [] as FlowcastEvent[], states: [] as StateChange[], errors: [] as Error[] };
  m.on('*', (e) => out.events.push(e));
  m.on('state', (s) => out.states.push(s));
  m.on('error', (e) => out.errors.push(e));
  return out;
}

const seqs = (events: FlowcastEvent[], runId = 'r1'): number[] => events.filter((e) => e.run_id === runId).map((e) => e.seq);
/** What the client sent after its handshake, without request ids. */
const sent = (peer: Peer): Record<string, unknown>[] =>
  peer.received.filter((m) => !(m.type === 'ping' && typeof m.id === 'string')).map(({ id: _id, ...rest }) => rest);

async function connected(m: PipelineMonitor, target: Parameters<PipelineMonitor['subscribe']>[0] = 'p'): Promise<void> {
  const subscribed = m.subscribe(target);
  await m.connect();
  await subscribed;
}

describe('dedupe', () => {
  it('drops an event at or below the last seq of its run', async () => {
    const server = await fakeServer();
    const m = monitor(server.url);
    const got = record(m);
    await connected(m);
    const peer = await server.peer(0);
    for (const seq of [1, 2, 2, 1, 3]) peer.send(event('r1', seq));
    peer.send(event('r2', 1));
    await waitUntil(() => got.events.length === 4, 'four events');
    expect(seqs(got.events)).toEqual([1, 2, 3]);
    expect(seqs(got.events, 'r2')).toEqual([1]);
    expect(m.stats.duplicatesDropped).toBe(2);
    expect(m.lastSeq('r1')).toBe(3);
  });
});

describe('resume after a drop', () => {
  it('after 4008 (slow consumer): resumes each run in flight from its last seq before resubscribing, then unsubscribes the run once caught up', async () => {
    const server = await fakeServer();
    const m = monitor(server.url);
    const got = record(m);
    await connected(m);
    const first = await server.peer(0);
    for (const seq of [1, 2, 3]) first.send(event('r1', seq));
    first.send(event('done', 1, 'PipelineStartEvent'));
    first.send(event('done', 2, 'PipelineCompleteEvent'));
    await waitUntil(() => got.events.length === 5, 'the first events');
    first.ws.close(4008, 'Slow consumer');

    const second = await server.peer(1);
    await waitUntil(() => sent(second).length === 2, 'the resubscription');
    // The ended run is not resumed; the run in flight is, before the pipeline.
    // This server gave the pipeline subscription no offset in its run stream: it comes back
    // with started_since, the time of the last event seen less the margin, so that runs
    // that began and ended meanwhile are replayed too.
    expect(sent(second)).toEqual([
      { type: 'subscribe', run_id: 'r1', since: 3 },
      { type: 'subscribe', pipeline_id: 'p', positions: true, started_since: expect.stringMatching(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/) as unknown as string },
    ]);
    expect(got.states.find((s) => s.to === 'reconnecting')).toMatchObject({ code: 4008, reason: 'Slow consumer' });
    // The replay repeats seq 3, then brings 4 and 5; live 6 follows.
    for (const seq of [3, 4, 5]) second.send(event('r1', seq));
    second.send({ type: 'replay_complete', run_id: 'r1', last_seq: 5 });
    second.send(event('r1', 6));
    await waitUntil(() => seqs(got.events).length === 6, 'six events of r1');
    expect(seqs(got.events)).toEqual([1, 2, 3, 4, 5, 6]);
    await waitUntil(() => sent(second).length === 3, 'the unsubscribe');
    expect(sent(second)[2]).toEqual({ type: 'unsubscribe', run_id: 'r1' });
    expect(got.errors).toEqual([]);
  });

  it("resubscribes a run subscription from the run's last seq, and does not resume runs of a pipeline no longer subscribed", async () => {
    const server = await fakeServer();
    const m = monitor(server.url);
    const got = record(m);
    await connected(m, { runId: 'r1' });
    await m.subscribe('p');
    const first = await server.peer(0);
    for (const seq of [1, 2]) first.send(event('r1', seq));
    first.send(event('other', 7));
    await waitUntil(() => got.events.length === 3, 'the first events');
    await m.unsubscribe('p');
    first.ws.close(1001, 'going away');

    const second = await server.peer(1);
    await waitUntil(() => sent(second).length === 1, 'the resubscription');
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(sent(second)).toEqual([{ type: 'subscribe', run_id: 'r1', since: 2 }]);
  });

  it('holds a live event that overtakes a replay until the replay reaches it', async () => {
    const server = await fakeServer({
      onSubscribe: (peer, msg) => {
        if (msg.pipeline_id === 'p') peer.send({ type: 'snapshot', pipeline_id: 'p', run_id: 'r1', last_seq: 3, status: { status: 'RUNNING' } });
        if (msg.run_id === 'r1') {
          // Live 4 was already on its way before the server took the replay.
          peer.send(event('r1', 4));
          for (const seq of [1, 2, 3, 4]) peer.send(event('r1', seq));
          peer.send({ type: 'replay_complete', run_id: 'r1', last_seq: 4 });
          peer.send(event('r1', 5));
        }
      },
    });
    const m = monitor(server.url, { lateJoin: 'replay' });
    const got = record(m);
    const snapshots: unknown[] = [];
    m.on('snapshot', (s) => snapshots.push(s));
    await connected(m);
    await waitUntil(() => seqs(got.events).length === 5, 'five events');
    expect(seqs(got.events)).toEqual([1, 2, 3, 4, 5]);
    expect(snapshots).toHaveLength(1);
    const peer = await server.peer(0);
    await waitUntil(() => sent(peer).length === 3, 'the unsubscribe of the caught-up run at the server');
    expect(sent(peer)).toEqual([
      { type: 'subscribe', pipeline_id: 'p', positions: true },
      { type: 'subscribe', run_id: 'r1', since: 0 },
      { type: 'unsubscribe', run_id: 'r1' },
    ]);
  });

  it('with lateJoin "snapshot", a snapshot moves the last seq forward, never back', async () => {
    const server = await fakeServer();
    const m = monitor(server.url);
    const got = record(m);
    await connected(m);
    const peer = await server.peer(0);
    peer.send({ type: 'snapshot', pipeline_id: 'p', run_id: 'r1', last_seq: 4, status: {} });
    peer.send(event('r1', 3));
    peer.send(event('r1', 5));
    peer.send({ type: 'snapshot', pipeline_id: 'p', run_id: 'r1', last_seq: 2, status: {} });
    peer.send(event('r1', 5));
    peer.send(event('r1', 6));
    await waitUntil(() => m.lastSeq('r1') === 6, 'seq 6');
    expect(seqs(got.events)).toEqual([5, 6]);
  });

  it('replay_incomplete: says from where the log starts, and the events from there are delivered', async () => {
    const server = await fakeServer({
      onSubscribe: (peer) => {
        peer.send({ type: 'replay_incomplete', run_id: 'r1', requested_since: 0, first_seq: 5, last_seq: 6 });
        for (const seq of [5, 6]) peer.send(event('r1', seq));
        peer.send({ type: 'replay_complete', run_id: 'r1', last_seq: 6 });
      },
    });
    const m = monitor(server.url);
    const got = record(m);
    const incomplete: ReplayIncompleteMessage[] = [];
    m.on('replay_incomplete', (r) => incomplete.push(r));
    await connected(m, { runId: 'r1', since: 0 });
    await waitUntil(() => seqs(got.events).length === 2, 'two events');
    expect(seqs(got.events)).toEqual([5, 6]);
    expect(incomplete).toEqual([{ type: 'replay_incomplete', run_id: 'r1', requested_since: 0, first_seq: 5, last_seq: 6 }]);
  });
});

describe('positions in run streams', () => {
  const position = (offset: number, kind: 'start' | 'end', runId: string): Record<string, unknown> => ({ type: 'position', stream: 'p', offset, kind, run_id: runId, pipeline_id: 'p' });

  it('after a drop: resumes the runs it knows (from events or positions) with since and the epoch, then the pipeline after its last position', async () => {
    const server = await fakeServer({ ack: (msg) => (msg.pipeline_id === 'p' ? { epoch: 'e1', offset: typeof msg.offset === 'number' ? msg.offset : 10 } : { epoch: 'e1' }) });
    const m = monitor(server.url);
    const got = record(m);
    await connected(m);
    const first = await server.peer(0);
    expect(sent(first)).toEqual([{ type: 'subscribe', pipeline_id: 'p', positions: true }]);
    first.send(position(11, 'start', 'r1'));
    for (const seq of [1, 2]) first.send(event('r1', seq));
    // Announced, with no event yet.
    first.send(position(12, 'start', 'r2'));
    first.send(position(13, 'start', 'r3'));
    first.send(event('r3', 1, 'PipelineStartEvent'));
    first.send(event('r3', 2, 'PipelineCompleteEvent'));
    first.send(position(14, 'end', 'r3'));
    await waitUntil(() => got.events.length === 4, 'the events');
    first.ws.close(4008, 'Slow consumer');

    const second = await server.peer(1);
    await waitUntil(() => sent(second).length === 3, 'the resubscription');
    expect(sent(second)).toEqual([
      { type: 'subscribe', run_id: 'r1', since: 2, epoch: 'e1' },
      { type: 'subscribe', run_id: 'r2', since: 0, epoch: 'e1' },
      { type: 'subscribe', pipeline_id: 'p', offset: 14, epoch: 'e1' },
    ]);
    expect(got.errors).toEqual([]);
  });

  it("says so ('resume_incomplete') when the server cannot resume the pipeline from its offset, and goes on from the server's", async () => {
    let connections = 0;
    const server = await fakeServer({
      ack: (msg) => {
        if (msg.pipeline_id !== 'p') return {};
        connections++;
        return connections === 1 ? { epoch: 'e1', offset: 3 } : { epoch: 'e2', offset: 40, recovered: false, reason: 'epoch' };
      },
    });
    const m = monitor(server.url);
    const resets: unknown[] = [];
    m.on('resume_incomplete', (r) => resets.push(r));
    await connected(m);
    const first = await server.peer(0);
    first.send(position(4, 'start', 'r1'));
    first.send(event('r1', 1, 'PipelineStartEvent'));
    first.send(event('r1', 2, 'PipelineCompleteEvent'));
    await waitUntil(() => m.lastSeq('r1') === 2, 'the run');
    first.ws.close(1001, 'going away');
    const second = await server.peer(1);
    await waitUntil(() => resets.length === 1, 'the resume_incomplete');
    expect(resets).toEqual([{ pipeline_id: 'p', reason: 'epoch', requested_offset: 4, offset: 40 }]);
    expect(sent(second)).toEqual([{ type: 'subscribe', pipeline_id: 'p', offset: 4, epoch: 'e1' }]);
    // Its next resume goes from the server's offset, in the server's epoch.
    second.send(position(41, 'start', 'r9'));
    await waitUntil(() => m.lastSeq('r9') === 0, 'the announced run');
    second.ws.close(1001, 'going away');
    const third = await server.peer(2);
    await waitUntil(() => sent(third).length === 2, 'the third subscription');
    expect(sent(third)).toEqual([
      { type: 'subscribe', run_id: 'r9', since: 0, epoch: 'e2' },
      { type: 'subscribe', pipeline_id: 'p', offset: 41, epoch: 'e2' },
    ]);
  });

  it('replay_incomplete with reason "epoch": forgets what it held of the run and delivers the new history from its start', async () => {
    const server = await fakeServer({
      ack: () => ({ epoch: 'e2' }),
      onSubscribe: (peer, msg) => {
        if (msg.run_id !== 'r1' || msg.since !== 5) return;
        peer.send({ type: 'replay_incomplete', run_id: 'r1', requested_since: 5, first_seq: 1, last_seq: 2, epoch: 'e2', reason: 'epoch' });
        for (const seq of [1, 2]) peer.send(event('r1', seq));
        peer.send({ type: 'replay_complete', run_id: 'r1', last_seq: 2 });
      },
    });
    const m = monitor(server.url);
    const got = record(m);
    await connected(m, { runId: 'r1' });
    const first = await server.peer(0);
    for (const seq of [1, 2, 3, 4, 5]) first.send(event('r1', seq));
    await waitUntil(() => m.lastSeq('r1') === 5, 'five events');
    first.ws.close(4010, 'Event history reset');
    await waitUntil(() => seqs(got.events).length === 7, 'the new history');
    expect(seqs(got.events)).toEqual([1, 2, 3, 4, 5, 1, 2]);
    expect(m.stats.duplicatesDropped).toBe(0);
    expect(m.lastSeq('r1')).toBe(2);
  });
});

describe('connection', () => {
  it('an attempt the server never confirms times out after connectTimeoutMs', async () => {
    const server = await fakeServer({ answerPings: false });
    const m = monitor(server.url, { connectTimeoutMs: 100, reconnect: { initialDelayMs: 1, maxDelayMs: 2, maxAttempts: 2 } });
    const got = record(m);
    await expect(m.connect()).rejects.toMatchObject({ code: ErrorCodes.CONNECTION_FAILED, message: expect.stringMatching(/after 2 attempts .*connectTimeoutMs \(100ms\)/) as unknown });
    expect(server.peers).toHaveLength(2);
    expect(got.states.map((s) => s.to)).toEqual(['connecting', 'reconnecting', 'connecting', 'closed']);
  });

  it('a 4001 close after the socket opened closes for good', async () => {
    const server = await fakeServer({ answerPings: false });
    const m = monitor(server.url);
    const connecting = m.connect();
    const peer = await server.peer(0);
    peer.ws.close(4001, 'Unauthorized');
    await expect(connecting).rejects.toMatchObject({ code: ErrorCodes.UNAUTHORIZED });
    expect(m.state).toBe('closed');
  });

  it("paces its messages under the server's rate limit and keeps their order", async () => {
    const server = await fakeServer();
    const m = monitor(server.url, { rateLimit: { messagesPerSecond: 50, burst: 2 } });
    const ids = ['a', 'b', 'c', 'd', 'e', 'f'];
    const all = Promise.all(ids.map((id) => m.subscribe(id)));
    await m.connect();
    await all;
    const peer = await server.peer(0);
    expect(sent(peer)).toEqual(ids.map((id) => ({ type: 'subscribe', pipeline_id: id, positions: true })));
  });

  it("a server error that answers no request goes to 'error' with its code", async () => {
    const server = await fakeServer();
    const m = monitor(server.url);
    const got = record(m);
    await connected(m);
    const peer = await server.peer(0);
    peer.send({ type: 'error', code: 'rate_limited', message: 'Too many messages' });
    await waitUntil(() => got.errors.length === 1, 'the error event');
    expect(got.errors[0]).toMatchObject({ code: ErrorCodes.REQUEST_REJECTED, serverCode: 'rate_limited' });
    expect(got.errors[0]?.message).toMatch(/rate_limited: Too many messages/);
  });

  it("a listener that throws goes to 'error'; the other listeners still get the event", async () => {
    const server = await fakeServer();
    const m = monitor(server.url);
    const got = record(m);
    m.on('StepLogEvent', () => {
      throw new Error('listener bug');
    });
    const after: number[] = [];
    m.on('StepLogEvent', (e) => after.push(e.seq));
    await connected(m);
    (await server.peer(0)).send(event('r1', 1));
    await waitUntil(() => after.length === 1, 'the second listener');
    expect(got.errors.map((e) => e.message)).toEqual(['listener bug']);
    expect(seqs(got.events)).toEqual([1]);
  });

  it('ignores binary frames, arrays and message types it does not know', async () => {
    const server = await fakeServer();
    const m = monitor(server.url);
    const got = record(m);
    await connected(m);
    const peer = await server.peer(0);
    peer.ws.send(Buffer.from([1, 2, 3]));
    peer.send([1, 2]);
    peer.send({ type: 'from_the_future', x: 1 });
    peer.ws.send('not json');
    peer.send(event('r1', 1));
    await waitUntil(() => got.events.length === 1, 'the event');
    expect(got.errors.map((e) => (e as { code?: string }).code)).toEqual([ErrorCodes.NOT_JSON]);
  });
});
