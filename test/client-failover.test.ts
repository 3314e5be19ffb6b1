/**
 * The SDK given several servers of one deployment: when the one it uses goes away it
 * moves to the next and resumes every run where it stopped. Two real servers share one
 * broker's transport here (as instances share Redis in production).
 */
import { describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { getWebSocketServer } from '../src/server/server.js';
import { InvalidArgumentError, type FlowcastEvent } from '../src/index.js';
import { PipelineMonitor, type StateChange } from '../src/client/index.js';
import { logHolds, onCleanup, startFixture } from './helpers/server-fixture.js';
import { waitUntil } from './helpers/collect.js';

describe('PipelineMonitor with several servers', () => {
  it('fails over to the next server and resumes each run: every event once, in order', async () => {
    const f = await startFixture();
    const second = getWebSocketServer({ port: 0, broker: f.broker, tracking: f.tracking, restRateLimit: false });
    await second.startServer();
    onCleanup(() => second.close());

    const monitor = new PipelineMonitor([f.server.url, second.url], { WebSocket, reconnect: { initialDelayMs: 10, maxDelayMs: 50 } });
    onCleanup(() => monitor.close());
    const events: FlowcastEvent[] = [];
    const states: StateChange[] = [];
    monitor.on('*', (e) => events.push(e));
    monitor.on('state', (s) => states.push(s));
    await monitor.connect();
    await monitor.subscribe('gated');
    expect(monitor.url).toBe(f.server.url);

    const run = await f.startGated({ key: 'fo', phases: [5, 5, 5] });
    await logHolds(f, run.runId, 7);
    await waitUntil(() => events.length >= 7, 'the first phase at the client');

    // The first server goes away with the client on it; the run goes on meanwhile.
    await f.server.close();
    f.open('fo', 0);
    await logHolds(f, run.runId, 8);
    await waitUntil(() => monitor.state === 'open' && monitor.url === second.url, 'the move to the second server');
    f.open('fo', 1);
    await run.waitResult({ timeoutMs: 10_000 });
    const log = await f.log(run.runId);
    await waitUntil(() => events.filter((e) => e.run_id === run.runId).length === log.length, 'every event of the run at the client');
    const got = events.filter((e) => e.run_id === run.runId);
    expect(got.map((e) => e.seq)).toEqual(log.map((e) => e.seq));
    expect(got.map((e) => e.event_id)).toEqual(log.map((e) => e.event_id));
    expect(states.some((s) => s.to === 'reconnecting')).toBe(true);
  });

  it('after a reconnect, also gets the runs that began and ended while it was away', async () => {
    const f = await startFixture();
    const second = getWebSocketServer({ port: 0, broker: f.broker, tracking: f.tracking, restRateLimit: false });
    await second.startServer();
    onCleanup(() => second.close());
    const monitor = new PipelineMonitor([f.server.url, second.url], { WebSocket, reconnect: { initialDelayMs: 300, maxDelayMs: 300 } });
    onCleanup(() => monitor.close());
    const events: FlowcastEvent[] = [];
    monitor.on('*', (e) => events.push(e));
    await monitor.connect();
    await monitor.subscribe('*');
    const before = await f.runToEnd(f.alpha);
    await waitUntil(() => events.filter((e) => e.run_id === before).length === 6, 'the first run');

    // The client's server goes away; two runs start and end before it is back on the other.
    await f.server.close();
    expect(monitor.state).not.toBe('open');
    const away = [await f.runToEnd(f.alpha), await f.runToEnd(f.beta)];
    expect(monitor.state).not.toBe('open');
    await waitUntil(() => monitor.state === 'open', 'the reconnect to the second server');
    for (const runId of away) {
      const log = await f.log(runId);
      await waitUntil(() => events.filter((e) => e.run_id === runId).length === log.length, `run ${runId} at the client`);
      expect(events.filter((e) => e.run_id === runId).map((e) => e.event_id)).toEqual(log.map((e) => e.event_id));
    }
    // The run it had already seen is not sent again.
    expect(events.filter((e) => e.run_id === before)).toHaveLength(6);
  });

  it('refuses an empty list of servers and a bad URL in the list', () => {
    expect(() => new PipelineMonitor([], { WebSocket })).toThrow(InvalidArgumentError);
    expect(() => new PipelineMonitor(['ws://127.0.0.1:1', 'ftp://nope'], { WebSocket })).toThrow(/ftp:\/\/nope/);
  });
});
