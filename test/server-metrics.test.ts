/**
 * `/metrics` (issue 3, item 1): Prometheus text from a registry per server, with bounded
 * labels (pipeline id, type, status; never a run id), fed by the hub's counters and the
 * transport's events of real runs. Real server on port 0 and real WebSocket and SSE
 * clients where connections are counted.
 */
import { get, type IncomingMessage } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { register as globalRegistry } from 'prom-client';
import WebSocket from 'ws';
import { InMemoryBroker, InMemoryPipelineStorage, Pipeline, PipelineTrackingManager, type RunHandle } from '../src/index.js';
import { getWebSocketServer, type FlowcastServer, type ServerOptions } from '../src/server/index.js';
import { ServerMetrics } from '../src/server/metrics.js';
import { waitUntil } from './helpers/collect.js';
import { useRedisServer } from './helpers/redis.js';
import { BullMQBroker } from '../src/redis/index.js';

const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const METRIC_NAMES = [
  'flowcast_connections',
  'flowcast_subscriptions',
  'flowcast_upstream_channels',
  'flowcast_events_in_total',
  'flowcast_deliveries_total',
  'flowcast_serialisations_total',
  'flowcast_replayed_events_total',
  'flowcast_messages_collapsed_total',
  'flowcast_pipeline_runs_started_total',
  'flowcast_pipeline_runs_total',
  'flowcast_pipeline_runs_running',
  'flowcast_pipeline_run_duration_seconds',
  'flowcast_step_duration_seconds',
];

interface Setup {
  broker: InMemoryBroker;
  server: FlowcastServer;
  ok: Pipeline<number, number>;
  failing: Pipeline<number, number>;
  held: Pipeline<number, number>;
  runs: string[];
}

function setup(options: Partial<ServerOptions> = {}): Setup {
  const broker = new InMemoryBroker({ onError: () => undefined });
  const tracking = new PipelineTrackingManager().withStorage(new InMemoryPipelineStorage());
  const inc = broker.task('inc', (n: number) => n + 1);
  const boom = broker.task('boom', (_n: number): number => {
    throw new Error('boom');
  });
  const wait = broker.task('wait', (n: number, ctx) => {
    return new Promise<number>((resolve) => {
      if (ctx.signal.aborted) resolve(n);
      ctx.signal.addEventListener('abort', () => resolve(n), { once: true });
    });
  });
  const ok = new Pipeline(broker, { id: 'alpha' }).callNext(inc).callNext(inc).withTracking(tracking);
  const failing = new Pipeline(broker, { id: 'beta' }).callNext(inc).callNext(boom).withTracking(tracking);
  const held = new Pipeline(broker, { id: 'gamma' }).callNext(wait).withTracking(tracking);
  const server = getWebSocketServer({ port: 0, broker, tracking, restRateLimit: false, ...options });
  cleanups.push(() => broker.close());
  cleanups.push(() => tracking.close());
  cleanups.push(() => server.close());
  return { broker, server, ok, failing, held, runs: [] };
}

async function settle(run: RunHandle<number>): Promise<void> {
  await run.waitResult({ timeoutMs: 5_000 }).catch(() => undefined);
}

async function scrape(server: FlowcastServer, token?: string): Promise<{ status: number; type: string; text: string }> {
  const res = await server.app.inject({ method: 'GET', url: '/metrics', headers: token === undefined ? {} : { authorization: `Bearer ${token}` } });
  return { status: res.statusCode, type: String(res.headers['content-type']), text: res.body };
}

/** The value of one sample line, by its exact name and labels. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('GET /metrics', () => {
  it('exposes every metric, counts runs by pipeline, type and status, and never names a run', async () => {
    const s = setup();
    for (let i = 0; i < 2; i++) {
      const run = await s.ok.kiq(i);
      s.runs.push(run.runId);
      await settle(run);
    }
    const failed = await s.failing.kiq(1);
    s.runs.push(failed.runId);
    await settle(failed);
    const cancelled = await s.held.kiq(1);
    s.runs.push(cancelled.runId);
    await cancelled.cancel('enough');
    await settle(cancelled);
    const running = await s.held.kiq(2);
    s.runs.push(running.runId);
    cleanups.push(async () => {
      await running.cancel('test over');
    });

    const m = await scrape(s.server);
    expect(m.status).toBe(200);
    expect(m.type).toMatch(/^text\/plain; version=0\.0\.4/);
    for (const name of METRIC_NAMES) expect(m.text, name).toContain(`# TYPE ${name} `);
    for (const id of s.runs) expect(m.text).not.toContain(id);
    expect(m.text).not.toMatch(/run_id/);

    expect(sample(m.text, 'flowcast_pipeline_runs_started_total{pipeline_id="alpha",pipeline_type="sequential"}')).toBe(2);
    expect(sample(m.text, 'flowcast_pipeline_runs_total{pipeline_id="alpha",pipeline_type="sequential",status="COMPLETED"}')).toBe(2);
    expect(sample(m.text, 'flowcast_pipeline_runs_total{pipeline_id="beta",pipeline_type="sequential",status="FAILED"}')).toBe(1);
    expect(sample(m.text, 'flowcast_pipeline_runs_total{pipeline_id="gamma",pipeline_type="sequential",status="CANCELLED"}')).toBe(1);
    expect(sample(m.text, 'flowcast_pipeline_runs_running{pipeline_id="gamma",pipeline_type="sequential"}')).toBe(1);
    expect(sample(m.text, 'flowcast_pipeline_run_duration_seconds_count{pipeline_id="alpha",pipeline_type="sequential",status="COMPLETED"}')).toBe(2);
    expect(sample(m.text, 'flowcast_step_duration_seconds_count{pipeline_id="alpha",status="completed"}')).toBe(4);
    expect(sample(m.text, 'flowcast_step_duration_seconds_count{pipeline_id="beta",status="failed"}')).toBe(1);
    expect(sample(m.text, 'flowcast_step_duration_seconds_bucket{le="+Inf",pipeline_id="beta",status="completed"}')).toBe(1);

    await running.cancel('done');
    await settle(running);
    const after = await scrape(s.server);
    expect(sample(after.text, 'flowcast_pipeline_runs_total{pipeline_id="gamma",pipeline_type="sequential",status="CANCELLED"}')).toBe(2);
    expect(sample(after.text, 'flowcast_pipeline_runs_running{pipeline_id="gamma",pipeline_type="sequential"}')).toBeUndefined();
  });

  it('counts WebSocket and SSE connections, subscriptions, events in, deliveries, serialisations and replays', async () => {
    const s = setup();
    await s.server.startServer();
    const before = await s.ok.kiq(0);
    await settle(before);

    const ws = new WebSocket(s.server.url);
    cleanups.push(() => ws.close());
    const messages: Record<string, unknown>[] = [];
    ws.on('message', (data: Buffer) => messages.push(JSON.parse(data.toString()) as Record<string, unknown>));
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    ws.send(JSON.stringify({ type: 'subscribe', pipeline_id: '*' }));
    ws.send(JSON.stringify({ type: 'subscribe', run_id: before.runId, since: 0 }));
    await waitUntil(() => messages.some((m) => m.type === 'replay_complete'), 'the replay of the first run');
    const replayed = messages.filter((m) => m.run_id === before.runId && typeof m.seq === 'number').length;

    // node:http rather than fetch: destroying the request closes its socket at once.
    const sse = get(`${s.server.httpUrl}/api/events?pipeline_id=alpha`);
    cleanups.push(() => {
      sse.destroy();
    });
    const sseResponse = await new Promise<IncomingMessage>((resolve, reject) => {
      sse.once('response', resolve);
      sse.once('error', reject);
    });
    expect(sseResponse.statusCode).toBe(200);
    await waitUntil(() => s.server.hub.connectionCount === 2, 'the SSE session is attached');

    const live = await s.ok.kiq(1);
    await settle(live);
    await waitUntil(() => messages.some((m) => m.run_id === live.runId && m.type === 'PipelineCompleteEvent'), 'the live run reached the WebSocket');
    const liveEvents = messages.filter((m) => m.run_id === live.runId && typeof m.seq === 'number').length;

    const m = await scrape(s.server);
    expect(sample(m.text, 'flowcast_connections{transport="ws"}')).toBe(1);
    expect(sample(m.text, 'flowcast_connections{transport="sse"}')).toBe(1);
    expect(sample(m.text, 'flowcast_subscriptions')).toBe(3);
    expect(sample(m.text, 'flowcast_replayed_events_total')).toBeGreaterThanOrEqual(replayed);
    const eventsIn = sample(m.text, 'flowcast_events_in_total') as number;
    expect(eventsIn).toBeGreaterThanOrEqual(liveEvents);
    // Two subscribers got each live event: two deliveries, one serialisation.
    expect(sample(m.text, 'flowcast_deliveries_total')).toBeGreaterThanOrEqual(2 * liveEvents);
    expect(sample(m.text, 'flowcast_serialisations_total')).toBeLessThanOrEqual(eventsIn);
    expect(sample(m.text, 'flowcast_messages_collapsed_total')).toBe(0);

    ws.close();
    sse.destroy();
    await waitUntil(() => s.server.hub.connectionCount === 0, 'both connections are gone');
    const gone = await scrape(s.server);
    expect(sample(gone.text, 'flowcast_connections{transport="ws"}')).toBe(0);
    expect(sample(gone.text, 'flowcast_subscriptions')).toBe(0);
    // Counters never go down.
    expect(sample(gone.text, 'flowcast_deliveries_total')).toBe(sample(m.text, 'flowcast_deliveries_total'));
  });

  it('keeps a registry per server, never the global one', async () => {
    const s = setup();
    const run = await s.ok.kiq(0);
    await settle(run);
    const other = getWebSocketServer({ port: 0, transport: s.broker.transport, restRateLimit: false });
    cleanups.push(() => other.close());
    const mine = await scrape(s.server);
    const theirs = await scrape(other);
    expect(sample(mine.text, 'flowcast_pipeline_runs_started_total{pipeline_id="alpha",pipeline_type="sequential"}')).toBe(1);
    expect(theirs.text).not.toContain('pipeline_id="alpha"');
    expect(await globalRegistry.metrics()).not.toContain('flowcast_');
  });

  it('with auth, needs a token and leaves out pipelines the caller may not read', async () => {
    const s = setup({
      auth: {
        apiKeys: {
          'ops-key': { id: 'ops', pipelines: '*' },
          'alpha-key': { id: 'alpha-reader', pipelines: ['alpha'] },
        },
      },
    });
    await settle(await s.ok.kiq(0));
    await settle(await s.failing.kiq(0));
    expect((await scrape(s.server)).status).toBe(401);
    expect((await scrape(s.server, 'nope')).status).toBe(401);
    const ops = await scrape(s.server, 'ops-key');
    expect(ops.text).toContain('pipeline_id="beta"');
    const reader = await scrape(s.server, 'alpha-key');
    expect(reader.status).toBe(200);
    expect(reader.text).toContain('pipeline_id="alpha"');
    expect(reader.text).not.toContain('pipeline_id="beta"');
    for (const name of METRIC_NAMES) expect(reader.text).toContain(`# TYPE ${name} `);
    expect(sample(reader.text, 'flowcast_events_in_total')).toBeDefined();
  });
});

describe('ServerMetrics', () => {
  it('caps distinct pipeline labels: further pipelines count under "_other"', async () => {
    const s = setup();
    const metrics = new ServerMetrics({ hub: s.server.hub, transport: s.server.transport, wsConnections: () => 0, maxPipelines: 2 });
    cleanups.push(() => metrics.close());
    await settle(await s.ok.kiq(0));
    await settle(await s.failing.kiq(0));
    const held = await s.held.kiq(0);
    await held.cancel('x');
    await settle(held);
    const text = await metrics.render();
    expect(sample(text, 'flowcast_pipeline_runs_started_total{pipeline_id="alpha",pipeline_type="sequential"}')).toBe(1);
    expect(sample(text, 'flowcast_pipeline_runs_started_total{pipeline_id="beta",pipeline_type="sequential"}')).toBe(1);
    expect(text).not.toContain('pipeline_id="gamma"');
    expect(sample(text, 'flowcast_pipeline_runs_total{pipeline_id="_other",pipeline_type="sequential",status="CANCELLED"}')).toBe(1);
  });

  it('ignores an event it has already counted', async () => {
    const s = setup();
    const metrics = new ServerMetrics({ hub: s.server.hub, transport: s.server.transport, wsConnections: () => 0 });
    cleanups.push(() => metrics.close());
    const run = await s.ok.kiq(0);
    await settle(run);
    const log = await s.server.transport.read(run.runId);
    for (const event of log.events) metrics.observe(event);
    const text = await metrics.render();
    expect(sample(text, 'flowcast_pipeline_runs_started_total{pipeline_id="alpha",pipeline_type="sequential"}')).toBe(1);
    expect(sample(text, 'flowcast_pipeline_runs_total{pipeline_id="alpha",pipeline_type="sequential",status="COMPLETED"}')).toBe(1);
    expect(sample(text, 'flowcast_step_duration_seconds_count{pipeline_id="alpha",status="completed"}')).toBe(2);
  });

  it('stops counting once closed', async () => {
    const s = setup();
    const metrics = new ServerMetrics({ hub: s.server.hub, transport: s.server.transport, wsConnections: () => 0 });
    await settle(await s.ok.kiq(0));
    metrics.close();
    metrics.close();
    await settle(await s.ok.kiq(1));
    const text = await metrics.render();
    expect(sample(text, 'flowcast_pipeline_runs_started_total{pipeline_id="alpha",pipeline_type="sequential"}')).toBe(1);
  });
});

describe('GET /metrics: process and queues', () => {
  const redis = useRedisServer();

  it('has prom-client\'s default metrics once, on every server, never on the global registry', async () => {
    const s = setup();
    const other = getWebSocketServer({ port: 0, transport: s.broker.transport, restRateLimit: false });
    cleanups.push(() => other.close());
    for (const server of [s.server, other]) {
      const m = await scrape(server);
      for (const name of ['process_cpu_user_seconds_total', 'process_resident_memory_bytes', 'nodejs_eventloop_lag_seconds', 'nodejs_heap_size_used_bytes', 'nodejs_version_info']) {
        expect(m.text.split('\n').filter((l) => l.startsWith(`# TYPE ${name} `)), name).toHaveLength(1);
      }
    }
    expect(await globalRegistry.metrics()).not.toContain('process_cpu');
    const off = getWebSocketServer({ port: 0, transport: s.broker.transport, restRateLimit: false, processMetrics: false });
    cleanups.push(() => off.close());
    const bare = await scrape(off);
    expect(bare.text).not.toContain('process_cpu');
    expect(bare.text).toContain('# TYPE flowcast_connections ');
    expect(() => getWebSocketServer({ processMetrics: 'yes' as never })).toThrow(/processMetrics must be a boolean, received "yes"/);
  });

  it('shows each BullMQ queue\'s depth by state, and keeps answering when the broker cannot be read', async () => {
    // A producer only: the run's first step waits in the queue, nobody takes it.
    const broker = new BullMQBroker({ connection: redis.url, keyPrefix: redis.prefix(), worker: false });
    let closed = false;
    cleanups.push(() => (closed ? undefined : broker.close()));
    const task = broker.task('inc', (n: number) => n + 1);
    const pipeline = new Pipeline(broker, { id: 'queued' }).callNext(task);
    const server = getWebSocketServer({ port: 0, broker, restRateLimit: false });
    cleanups.push(() => server.close());
    await pipeline.kiq(1);
    await pipeline.kiq(2);
    let m = await scrape(server);
    for (const state of ['waiting', 'active', 'delayed', 'failed', 'completed']) expect(m.text, state).toMatch(new RegExp(`^flowcast_queue_jobs\\{queue="tasks",state="${state}"\\} \\d+$`, 'm'));
    expect(sample(m.text, 'flowcast_queue_jobs{queue="tasks",state="waiting"}')).toBe(2);
    expect(sample(m.text, 'flowcast_queue_jobs{queue="control",state="waiting"}')).toBe(0);
    expect(sample(m.text, 'flowcast_queue_read_errors_total')).toBe(0);
    // The broker goes away: each scrape still answers, with the last depths, and the failed read is counted.
    closed = true;
    await broker.close();
    const deadline = Date.now() + 20_000;
    do {
      m = await scrape(server);
      expect(m.status).toBe(200);
      expect(sample(m.text, 'flowcast_queue_jobs{queue="tasks",state="waiting"}')).toBe(2);
      if ((sample(m.text, 'flowcast_queue_read_errors_total') ?? 0) >= 1) break;
      await new Promise((resolve) => setTimeout(resolve, 250));
    } while (Date.now() < deadline);
    expect(sample(m.text, 'flowcast_queue_read_errors_total')).toBeGreaterThanOrEqual(1);
  });
});
