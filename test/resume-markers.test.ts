/**
 * A resumed run in the run streams (docs/protocol.md, "Resuming after a drop"): its
 * `resume` marker goes before its PipelineResumeEvent and carries that event's seq, so a
 * client that saw the run fail, dropped, and resumes its pipeline subscription from its
 * offset gets the new attempt from the PipelineResumeEvent on: not the first attempt
 * again, nothing twice, nothing missed. A client connected throughout gets the `resume`
 * position and the new events once. The SDK follows it too. On the in-memory broker and
 * on BullMQ over a real redis-server.
 */
import { mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { FlowcastEvent } from '../src/events/types.js';
import type { Broker } from '../src/pipeline/broker.js';
import { InMemoryBroker } from '../src/pipeline/memory-broker.js';
import { BullMQBroker } from '../src/redis/bullmq-broker.js';
import { PipelineTrackingManager } from '../src/tracking/index.js';
import { getWebSocketServer, type FlowcastServer } from '../src/server/index.js';
import { PipelineMonitor } from '../src/client/index.js';
import { waitUntil } from './helpers/collect.js';
import { useRedisServer } from './helpers/redis.js';
import { connect, isEvent, type ServerMessage, type TestClient } from './helpers/ws-client.js';
import { resumePipelines } from './fixtures/resume/pipelines.js';

const redis = useRedisServer();
const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

function failingDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'flowcast-resume-markers-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'fail'), '');
  return dir;
}

const terminal = (e: { type: string }): boolean => e.type === 'PipelineCompleteEvent' || e.type === 'PipelineErrorEvent' || e.type === 'PipelineCancelledEvent';

/** `seq`s received more than once on one connection. */
function repeated(messages: ServerMessage[]): number[] {
  const seen = new Set<number>();
  const twice: number[] = [];
  for (const m of messages) {
    if (!isEvent(m)) continue;
    if (seen.has(m.seq)) twice.push(m.seq);
    seen.add(m.seq);
  }
  return twice;
}

async function scenario(broker: Broker, tracking: PipelineTrackingManager): Promise<void> {
  const { sequential } = resumePipelines(broker);
  sequential.withTracking(tracking);
  const server: FlowcastServer = getWebSocketServer({ port: 0, host: '127.0.0.1', broker, tracking, restRateLimit: false });
  cleanups.push(() => server.close());
  await server.startServer();

  const events: FlowcastEvent[] = [];
  const monitor = new PipelineMonitor(server.url, { reconnect: { initialDelayMs: 20, maxDelayMs: 100 } });
  cleanups.push(() => monitor.close());
  monitor.on('*', (e) => events.push(e));
  const watched = monitor.subscribe('resume_seq');
  await monitor.connect();
  await watched;

  const live: TestClient = await connect(server.url);
  cleanups.push(() => live.close());
  await live.subscribe({ pipeline_id: 'resume_seq', positions: true });
  const dropped: TestClient = await connect(server.url);
  cleanups.push(() => dropped.close());
  const ack = await dropped.subscribe({ pipeline_id: 'resume_seq', positions: true });
  const epoch = ack.epoch as string;

  const dir = failingDir();
  const run = await sequential.kiq({ dir });
  await expect(run.waitResult()).rejects.toThrow(/flaky: asked to fail/);
  await dropped.waitForEnd(run.runId);
  const firstAttempt = dropped.events(run.runId);
  const positions = dropped.controls('position');
  const offset = positions[positions.length - 1]?.offset as number;
  expect(positions.map((p) => p.kind)).toEqual(['start', 'end']);
  await dropped.close();

  // While it is away: the run is resumed and completes.
  unlinkSync(join(dir, 'fail'));
  const resumed = await sequential.resume(run.runId);
  expect(await resumed.waitResult()).toBe('saved 6');
  const log = (await broker.transport.read(run.runId, { since: 0 })).events;
  expect(log.map((e) => e.seq)).toEqual(log.map((_e, i) => i + 1));
  expect(log[resumed.seq - 1]?.type).toBe('PipelineResumeEvent');

  // It comes back from its offset: a `resume` position with the seq, then the new attempt only.
  const back = await connect(server.url);
  cleanups.push(() => back.close());
  expect(await back.subscribe({ pipeline_id: 'resume_seq', offset, epoch })).toMatchObject({ recovered: true, offset });
  await back.waitForEnd(run.runId);
  const again = back.controls('position');
  expect(again.map((p) => [p.kind, p.run_id, p.resume_seq])).toEqual([
    ['resume', run.runId, resumed.seq],
    ['end', run.runId, undefined],
  ]);
  const secondAttempt = back.events(run.runId);
  expect(secondAttempt.map((e) => e.seq)).toEqual(log.slice(resumed.seq - 1).map((e) => e.seq));
  expect([...firstAttempt, ...secondAttempt].map((e) => e.event_id)).toEqual(log.map((e) => e.event_id));
  const resumePosition = back.messages.findIndex((m) => m.type === 'position' && m.kind === 'resume');
  const resumeEvent = back.messages.findIndex((m) => isEvent(m) && m.type === 'PipelineResumeEvent');
  expect(resumePosition).toBeGreaterThanOrEqual(0);
  expect(resumeEvent).toBeGreaterThan(resumePosition);

  // Connected throughout: the whole log once, with the `resume` position before the new attempt.
  await live.waitUntil(() => live.events(run.runId).filter(terminal).length === 2, 'both attempts at the live client', 20_000);
  expect(live.events(run.runId).map((e) => e.seq)).toEqual(log.map((e) => e.seq));
  expect(repeated(live.messages)).toEqual([]);
  expect(live.controls('position').map((p) => p.kind)).toEqual(['start', 'end', 'resume', 'end']);

  // The SDK: every event of both attempts, once.
  await waitUntil(() => events.filter((e) => e.run_id === run.runId).length >= log.length, 'both attempts at the SDK', 20_000);
  expect(events.filter((e) => e.run_id === run.runId).map((e) => e.seq)).toEqual(log.map((e) => e.seq));
  expect(monitor.stats.duplicatesDropped).toBe(0);
}

describe('a resumed run in the run streams', () => {
  it('in-memory broker: a client that resumes from its offset gets the new attempt from its PipelineResumeEvent, once', { timeout: 60_000 }, async () => {
    const broker = new InMemoryBroker();
    cleanups.push(() => broker.close());
    const tracking = new PipelineTrackingManager().withAutoStorage(broker);
    cleanups.push(() => tracking.close());
    await scenario(broker, tracking);
  });

  it('BullMQ on Redis: the same, the marker written before the reopen script', { timeout: 90_000 }, async () => {
    const broker = new BullMQBroker({ connection: redis.url, keyPrefix: redis.prefix(), worker: { concurrency: 2 }, onError: () => undefined });
    cleanups.push(() => broker.close({ force: true }));
    await broker.waitUntilReady();
    const tracking = new PipelineTrackingManager().withAutoStorage(broker);
    cleanups.push(() => tracking.close());
    await scenario(broker, tracking);
  });
});
