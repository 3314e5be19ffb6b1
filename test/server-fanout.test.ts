/**
 * The fan-out write path (issue 3 items 6 and 7): a burst of events to a connection is
 * framed into one write, with every WebSocket length form (7-bit, 16-bit, 64-bit); a
 * subscriber that falls behind gets a step's progress collapsed to the latest and every
 * other event in order; and a replay larger than the connection's hard outgoing limit
 * waits for the network instead of getting the subscriber closed as a slow consumer.
 */
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { InMemoryBroker } from '../src/index.js';
import type { EventDraft, FlowcastEvent } from '../src/events/types.js';
import { getWebSocketServer, type FlowcastServer } from '../src/server/server.js';

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

async function start(options: { outgoing?: { softLimitBytes: number; hardLimitBytes: number } } = {}): Promise<{ broker: InMemoryBroker; server: FlowcastServer }> {
  const broker = new InMemoryBroker();
  const server = getWebSocketServer({ port: 0, broker, ...options });
  await server.startServer();
  cleanup.push(async () => {
    await server.close();
    await broker.close();
  });
  return { broker, server };
}

function progressDraft(runId: string, progress: number): EventDraft {
  return { type: 'StepProgressEvent', pipeline_id: 'fan', run_id: runId, timestamp: new Date().toISOString(), step_name: 'load', step_index: 0, task_id: 't1', attempt: 1, progress, message: `loaded ${progress}`.padEnd(200, '.') };
}

function logDraft(runId: string, line: string): EventDraft {
  return { type: 'StepLogEvent', pipeline_id: 'fan', run_id: runId, timestamp: new Date().toISOString(), step_name: 'load', step_index: 0, task_id: 't1', attempt: 1, lines: [line] };
}

interface Client {
  ws: WebSocket;
  messages: Record<string, unknown>[];
  closed: Promise<number>;
  until(pred: (messages: Record<string, unknown>[]) => boolean): Promise<void>;
}

async function client(url: string): Promise<Client> {
  const ws = new WebSocket(url);
  const messages: Record<string, unknown>[] = [];
  const waiters: (() => void)[] = [];
  ws.on('message', (data: Buffer, isBinary) => {
    expect(isBinary).toBe(false);
    messages.push(JSON.parse(data.toString()) as Record<string, unknown>);
    for (const w of waiters.splice(0)) w();
  });
  const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  cleanup.push(async () => {
    ws.terminate();
    await closed;
  });
  const until = async (pred: (m: Record<string, unknown>[]) => boolean): Promise<void> => {
    const deadline = Date.now() + 15_000;
    while (!pred(messages)) {
      if (Date.now() > deadline) throw new Error(`timed out; got ${messages.length} messages, last ${JSON.stringify(messages.at(-1))?.slice(0, 200)}`);
      await new Promise<void>((resolve) => {
        waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
  };
  return { ws, messages, closed, until };
}

const events = (messages: Record<string, unknown>[]): FlowcastEvent[] => messages.filter((m) => typeof m.seq === 'number') as unknown as FlowcastEvent[];

describe('fan-out write path', () => {
  it('a burst with payloads of every WebSocket length form arrives whole and in order at every subscriber', async () => {
    const { broker, server } = await start();
    const clients = await Promise.all([client(server.url), client(server.url), client(server.url)]);
    for (const c of clients) {
      c.ws.send(JSON.stringify({ type: 'subscribe', pipeline_id: 'fan' }));
      await c.until((m) => m.some((x) => x.type === 'subscribed'));
    }
    // Lines sized so the JSON is < 126 bytes... up to > 65,535 bytes (64-bit length), all published in one tick.
    const sizes = [1, 10, 100, 125, 126, 1000, 65_000, 65_535, 65_536, 70_000, 200_000, 5];
    const runId = 'run-fan-1';
    const published: FlowcastEvent[] = [];
    for (const [i, size] of sizes.entries()) {
      const event = broker.transport.appendSync(logDraft(runId, `${i}:`.padEnd(size, 'x'))) as FlowcastEvent;
      broker.transport.publish(event);
      published.push(event);
    }
    for (const c of clients) {
      await c.until((m) => events(m).length === sizes.length);
      expect(events(c.messages)).toEqual(published);
    }
  });

  it('a subscriber that stops reading gets, once it reads again, every log event in order and the latest progress of the step', async () => {
    const { broker, server } = await start({ outgoing: { softLimitBytes: 8 * 1024, hardLimitBytes: 64 * 1024 * 1024 } });
    const c = await client(server.url);
    c.ws.send(JSON.stringify({ type: 'subscribe', pipeline_id: 'fan' }));
    await c.until((m) => m.some((x) => x.type === 'subscribed'));
    const socket = (c.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket;
    socket.pause();
    const runId = 'run-slow-1';
    const published: FlowcastEvent[] = [];
    const publish = (draft: EventDraft): void => {
      const event = broker.transport.appendSync(draft) as FlowcastEvent;
      broker.transport.publish(event);
      published.push(event);
    };
    // About 6 MB of progress over 20 turns of the event loop (more than loopback buffers hold), a log line after each turn's.
    for (let turn = 0; turn < 20; turn++) {
      for (let i = 1; i <= 1000; i++) publish(progressDraft(runId, (turn * 1000 + i) / 20_000));
      publish(logDraft(runId, `after turn ${turn}`));
      await new Promise((r) => setImmediate(r));
    }
    const last = published.at(-1) as FlowcastEvent;
    socket.resume();
    await c.until((m) => events(m).some((e) => e.seq === last.seq));
    const got = events(c.messages);
    const seqs = got.map((e) => e.seq);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(new Set(seqs).size).toBe(seqs.length);
    expect(got.filter((e) => e.type === 'StepLogEvent')).toEqual(published.filter((e) => e.type === 'StepLogEvent'));
    const progress = got.filter((e) => e.type === 'StepProgressEvent');
    expect(progress.length).toBeLessThan(20_000);
    expect(progress.at(-1)).toEqual(published.filter((e) => e.type === 'StepProgressEvent').at(-1));
    expect(server.hub.collapsedCount).toBe(20_000 - progress.length);
  });

  it('a replay ten times the hard outgoing limit completes without closing the subscriber', async () => {
    const { broker, server } = await start({ outgoing: { softLimitBytes: 16 * 1024, hardLimitBytes: 64 * 1024 } });
    const runId = 'run-backlog-1';
    const log: FlowcastEvent[] = [];
    // About 700 KB of events.
    for (let i = 0; i < 2000; i++) log.push(broker.transport.appendSync(logDraft(runId, `line ${i} `.padEnd(250, '.'))) as FlowcastEvent);
    const c = await client(server.url);
    let closedWith: number | null = null;
    void c.closed.then((code) => (closedWith = code));
    c.ws.send(JSON.stringify({ type: 'subscribe', run_id: runId, since: 0 }));
    await c.until((m) => m.some((x) => x.type === 'replay_complete') || closedWith !== null);
    expect(closedWith).toBeNull();
    expect(events(c.messages)).toEqual(log);
    expect(c.messages.find((x) => x.type === 'replay_complete')).toMatchObject({ run_id: runId, last_seq: 2000 });
  });
});
