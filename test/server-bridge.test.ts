/**
 * `setupWebSocketBridge()` as seed 000 writes it (§2.1, §6.4, §12), with the Redis
 * transport: the events a HookManager sees reach the clients of a server that reads
 * `RedisPubSubTransport`, in this process and in others; a wrong argument throws at
 * the call. Real redis-server, real sockets on port 0, real pipelines on an InMemoryBroker.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { HookManager, InMemoryBroker, InMemoryTransport, Pipeline, type FlowcastEvent } from '../src/index.js';
import { RedisPubSubTransport } from '../src/redis/transport.js';
import { getWebSocketServer, setupWebSocketBridge, type FlowcastServer } from '../src/server/index.js';
import { onCleanup } from './helpers/server-fixture.js';
import { connect, type TestClient } from './helpers/ws-client.js';
import { useRedisServer } from './helpers/redis.js';

const redis = useRedisServer();
const root = fileURLToPath(new URL('..', import.meta.url));

function redisTransport(): RedisPubSubTransport {
  const transport = new RedisPubSubTransport(redis.connect(), { keyPrefix: redis.prefix() });
  onCleanup(() => transport.close());
  return transport;
}

async function startServer(transport: RedisPubSubTransport): Promise<FlowcastServer> {
  const server = getWebSocketServer({ port: 0, transport, restRateLimit: false });
  onCleanup(() => server.close());
  await server.startServer();
  return server;
}

async function client(server: FlowcastServer, pipelineId: string): Promise<TestClient> {
  const c = await connect(server.url);
  onCleanup(() => c.close());
  await c.subscribe({ pipeline_id: pipelineId });
  return c;
}

/** A three-step pipeline that logs a line per step, with the hooks attached. */
function pipelineWith(hooks: HookManager, id: string): { broker: InMemoryBroker; pipeline: Pipeline<number, number> } {
  const broker = new InMemoryBroker();
  onCleanup(() => broker.close());
  const step = broker.task('step', (n: number, ctx) => {
    ctx.log(`step ${n}`);
    return n + 1;
  });
  const pipeline = new Pipeline<number>(broker, { id }).callNext(step).callNext(step).callNext(step).withHooks(hooks);
  return { broker, pipeline };
}

/** The run's whole log in the producer's broker: what a client must get, in this order. */
async function sourceLog(broker: InMemoryBroker, runId: string): Promise<FlowcastEvent[]> {
  return (await broker.transport.read(runId, { since: 0 })).events;
}

const brief = (events: FlowcastEvent[]): string[] => events.map((e) => `${e.seq}:${e.type}`);

describe('setupWebSocketBridge() with the Redis transport (seed 000 §6.4)', () => {
  it('setupWebSocketBridge(hooks) reaches a client of getWebSocketServer({ transport: new RedisPubSubTransport(redis) }), and of other servers on that Redis', async () => {
    const hooks = new HookManager();
    const off = setupWebSocketBridge(hooks);
    onCleanup(off);
    const { broker, pipeline } = pipelineWith(hooks, 'seed_bridge');
    const server = await startServer(redisTransport());
    // Another server instance on the same Redis (as in another process): no bridge, no broker.
    const other = await startServer(redisTransport());
    const here = await client(server, 'seed_bridge');
    const there = await client(other, 'seed_bridge');

    const run = await pipeline.kiq(1);
    expect(await run.waitResult({ timeoutMs: 10_000 })).toBe(4);
    const log = await sourceLog(broker, run.runId);
    expect(log).toHaveLength(11);
    await here.waitForEnd(run.runId);
    await there.waitForEnd(run.runId);
    expect(brief(here.events(run.runId))).toEqual(brief(log));
    expect(brief(there.events(run.runId))).toEqual(brief(log));
    expect(here.events(run.runId).map((e) => e.event_id)).toEqual(log.map((e) => e.event_id));
  });

  it('setupWebSocketBridge(hooks, redisTransport) stores every event in Redis with its seq and reaches the server\'s clients', async () => {
    const hooks = new HookManager();
    const failures: unknown[] = [];
    hooks.onError((error) => failures.push(error));
    const producer = redisTransport();
    onCleanup(setupWebSocketBridge(hooks, producer));
    const { broker, pipeline } = pipelineWith(hooks, 'seed_bridge_explicit');
    const server = await startServer(redisTransport());
    const c = await client(server, 'seed_bridge_explicit');

    const run = await pipeline.kiq(1);
    await run.waitResult({ timeoutMs: 10_000 });
    await c.waitForEnd(run.runId);
    await hooks.idle();
    expect(failures).toEqual([]);
    const log = await sourceLog(broker, run.runId);
    expect(brief(c.events(run.runId))).toEqual(brief(log));
    // The Redis log holds the same events under the same seqs: a client may replay it.
    const stored = await producer.read(run.runId, { since: 0 });
    expect(stored.events.map((e) => e.event_id)).toEqual(log.map((e) => e.event_id));
    expect(stored.ended).toBe(true);
    const late = await connect(server.url);
    onCleanup(() => late.close());
    await late.subscribe({ run_id: run.runId, since: 0 });
    await late.waitFor((m) => m.type === 'replay_complete', 'replay_complete');
    expect(brief(late.events(run.runId))).toEqual(brief(log));
  });

  it('a producer process with hooks and the bridge on Redis reaches a client of a server in another process', async () => {
    const server = await startServer(redisTransport());
    const c = await client(server, 'bridged');
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/fixtures/bridge-producer.ts'], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, REDIS_URL: redis.url, KEY_PREFIX: redis.prefix() },
    });
    onCleanup(() => {
      if (child.exitCode === null) child.kill('SIGKILL');
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const runId = /run (\S+)/.exec(stdout)?.[1] ?? '';
    await c.waitForEnd(runId);
    const events = c.events(runId);
    expect(events.map((e) => e.seq)).toEqual(Array.from({ length: 11 }, (_, i) => i + 1));
    expect(events[0]?.type).toBe('PipelineStartEvent');
    expect(events.at(-1)?.type).toBe('PipelineCompleteEvent');
    expect(events.filter((e) => e.type === 'StepLogEvent').map((e) => (e as FlowcastEvent & { lines: string[] }).lines)).toEqual([['step 1'], ['step 2'], ['step 3']]);
  });

  it('setupWebSocketBridge() with something that is not a transport throws at the call, naming what it received', () => {
    const hooks = new HookManager();
    const client = redis.connect({ lazyConnect: true });
    expect(() => setupWebSocketBridge(hooks, client as never)).toThrow(/setupWebSocketBridge\(hooks, transport\): transport must be an event transport.*received/);
    expect(() => setupWebSocketBridge(hooks, {} as never)).toThrow(/transport must be an event transport/);
    expect(() => setupWebSocketBridge(hooks, null as never)).toThrow(/transport must be an event transport/);
    expect(() => setupWebSocketBridge({} as never)).toThrow(/expected a HookManager/);
    expect(hooks.listenerCount).toBe(0);
    // The right arguments work.
    const off = setupWebSocketBridge(hooks, new InMemoryTransport());
    expect(hooks.listenerCount).toBe(1);
    off();
  });
});
