/**
 * Seed 001 §6 typed in as written: `TrackingEventBroadcaster(tracking, hookManager)`,
 * `tracking.addListener(broadcaster.onStatusUpdate)` (a function listener), then a
 * pipeline with those hooks and that tracking: its events reach WebSocket clients of a
 * server started as the WebSocket guide starts one, each once, in seq order.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { HookManager, InMemoryBroker, InMemoryTransport, Pipeline, PipelineTrackingManager, type Broker } from '../src/index.js';
import { BullMQBroker } from '../src/redis/bullmq-broker.js';
import { TrackingEventBroadcaster, setupWebSocketBridge } from '../src/server/index.js';
import { getWebSocketServer } from '../src/server/server.js';
import { useRedisServer } from './helpers/redis.js';
import { connect, seqs } from './helpers/ws-client.js';

const redis = useRedisServer();

const closers: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

const brokers: [string, () => Promise<Broker>][] = [
  [
    'InMemoryBroker',
    () => {
      const broker = new InMemoryBroker();
      closers.push(() => broker.close());
      return Promise.resolve(broker);
    },
  ],
  [
    'BullMQBroker',
    async () => {
      const broker = new BullMQBroker({ connection: redis.url, keyPrefix: redis.prefix(), worker: { concurrency: 2 } });
      closers.push(() => broker.close());
      await broker.waitUntilReady();
      return broker;
    },
  ],
];

describe.each(brokers)('seed 001 §6 TrackingEventBroadcaster on %s', (_name, make) => {
  it.each([
    ['as written', false],
    ['with the WebSocket guide’s setupWebSocketBridge(hooks) too', true],
  ])('broadcasts a tracked pipeline’s events to WebSocket subscribers, each once and in order (%s)', async (_how, bridged) => {
    const broker = await make();
    const tracking = new PipelineTrackingManager().withAutoStorage(broker);
    closers.push(() => tracking.close());
    // The broker first (idempotent): its worker may still be handing the run's last events to tracking.
    closers.push(() => broker.close());

    const hookManager = new HookManager();
    const broadcaster = new TrackingEventBroadcaster(tracking, hookManager);
    closers.push(() => broadcaster.close());
    tracking.addListener(broadcaster.onStatusUpdate);
    if (bridged) closers.push(setupWebSocketBridge(hookManager));

    const fetchData = broker.task('fetch_data', (n: number, ctx) => {
      ctx.log(`fetching ${n}`);
      return n + 1;
    });
    const double = broker.task('double', (n: number) => n * 2);
    const pipeline = new Pipeline(broker, { id: `broadcast_${bridged ? 'bridged' : 'plain'}` }).callNext(fetchData).callNext(double).withHooks(hookManager).withTracking(tracking);

    const server = getWebSocketServer({ host: '127.0.0.1', port: 0 });
    closers.push(() => server.close());
    await server.startServer();
    const client = await connect(server.url);
    closers.push(() => client.ws.close());
    await client.subscribe({ pipeline_id: pipeline.pipelineId });

    const run = await pipeline.kiq(1);
    expect(await run.waitResult({ timeoutMs: 15_000 })).toBe(4);
    await client.waitForEnd(run.runId, 15_000);

    const events = client.events(run.runId);
    expect(seqs(events)).toEqual(events.map((_e, i) => i + 1));
    expect(events.map((e) => e.type)).toEqual([
      'PipelineStartEvent',
      'StepStartEvent',
      'StepLogEvent',
      'StepCompleteEvent',
      'StepStartEvent',
      'StepCompleteEvent',
      'PipelineCompleteEvent',
    ]);
    expect((await tracking.getStatus(run.runId))?.status).toBe('COMPLETED');
  });
});

describe('TrackingEventBroadcaster', () => {
  it('broadcasts into the transport it is given, stops after close(), and refuses a transport that cannot take events', async () => {
    const broker = new InMemoryBroker();
    closers.push(() => broker.close());
    const tracking = new PipelineTrackingManager().withAutoStorage(broker);
    closers.push(() => tracking.close());
    const hooks = new HookManager();
    const transport = new InMemoryTransport();
    const broadcaster = new TrackingEventBroadcaster(tracking, hooks, transport);
    tracking.addListener(broadcaster.onStatusUpdate);
    const inc = broker.task('inc', (n: number) => n + 1);
    const pipeline = new Pipeline(broker, { id: 'own_transport' }).callNext(inc).withHooks(hooks).withTracking(tracking);

    const first = await pipeline.kiq(1);
    await first.waitResult();
    expect((await transport.read(first.runId)).events.map((e) => e.type)).toEqual(['PipelineStartEvent', 'StepStartEvent', 'StepCompleteEvent', 'PipelineCompleteEvent']);

    broadcaster.close();
    broadcaster.close();
    const second = await pipeline.kiq(2);
    await second.waitResult();
    expect((await transport.read(second.runId)).events).toEqual([]);

    expect(() => new TrackingEventBroadcaster(tracking, hooks, {} as never)).toThrow('transport must be an InMemoryTransport (a transport with ingest(event))');
  });
});
