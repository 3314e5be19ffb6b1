/**
 * The hub's fill is woken by the live events of the run it waits for, never by a timer:
 * when a live event overtook another (published, the one before it not delivered here
 * yet), the hub waits for the next live event of that run and reads the log again then,
 * instead of reading the log every few milliseconds. The reads are counted, not timed.
 */
import { describe, expect, it } from 'vitest';
import type { EventDraft, FlowcastEvent } from '../src/events/types.js';
import { InMemoryTransport } from '../src/transport/memory-transport.js';
import type { Channel, EventListener, EventTransport, LogRead } from '../src/transport/transport.js';
import { getWebSocketServer } from '../src/server/index.js';
import { RunEvents } from './helpers/events.js';
import { onCleanup } from './helpers/server-fixture.js';
import { connect, isEvent, seqs } from './helpers/ws-client.js';

/** An in-memory transport whose log reads show no event above `visibleUpTo` (a log that lags its live stream), and that counts reads. */
class LaggingLog implements EventTransport {
  readonly inner = new InMemoryTransport();
  visibleUpTo = Number.POSITIVE_INFINITY;
  reads = 0;

  append(draft: EventDraft): Promise<FlowcastEvent | null> {
    return this.inner.append(draft);
  }
  publish(event: FlowcastEvent): void {
    this.inner.publish(event);
  }
  async read(runId: string, options?: { since?: number; limit?: number }): Promise<LogRead> {
    this.reads++;
    const log = await this.inner.read(runId, options);
    if (log.last_seq <= this.visibleUpTo) return log;
    const events = log.events.filter((e) => e.seq <= this.visibleUpTo);
    return { ...log, events, last_seq: this.visibleUpTo, complete: log.complete };
  }
  subscribe(channel: Channel, listener: EventListener): () => void {
    return this.inner.subscribe(channel, listener);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

function draftOf(event: FlowcastEvent): EventDraft {
  const { seq: _seq, v: _v, event_id: _id, ...draft } = event;
  return draft as EventDraft;
}

describe('hub fill', () => {
  it('waits for an overtaken event by the next live event of the run, reading the log once more, not on a timer', async () => {
    const transport = new LaggingLog();
    const server = getWebSocketServer({ port: 0, transport, restRateLimit: false });
    onCleanup(() => server.close());
    await server.startServer();
    const run = new RunEvents({ pipelineId: 'p', runId: 'run-1', steps: ['a'] });
    run.start();
    run.stepStart('a');
    for (let i = 0; i < 3; i++) run.stepLog('a', [`line ${i}`]);
    const stored: FlowcastEvent[] = [];
    for (const e of run.events) stored.push((await transport.append(draftOf(e))) as FlowcastEvent);

    const client = await connect(server.url);
    onCleanup(() => client.close());
    await client.subscribe({ run_id: 'run-1', since: 0 });
    await client.waitFor((m) => isEvent(m) && m.seq === 5, 'the first five events');

    // Seq 6 and 7 are appended; the log does not show them yet, and 7 arrives live first
    // (two writers: 7's append and publish overtook 6's).
    const six = (await transport.append(draftOf(run.stepLog('a', ['line 3'])))) as FlowcastEvent;
    const seven = (await transport.append(draftOf(run.stepLog('a', ['line 4'])))) as FlowcastEvent;
    transport.visibleUpTo = 5;
    const before = transport.reads;
    transport.publish(seven);
    // However long 6 takes to come, the hub does not poll the log meanwhile.
    await new Promise((r) => setTimeout(r, 300));
    const whileWaiting = transport.reads - before;
    transport.visibleUpTo = Number.POSITIVE_INFINITY;
    transport.publish(six);
    await client.waitFor((m) => isEvent(m) && m.seq === 7, 'seq 7');

    expect(seqs(client.events('run-1'))).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(client.events('run-1')).toEqual([...stored, six, seven]);
    expect(whileWaiting).toBe(1);
    expect(transport.reads - before).toBe(2);
  });
});
