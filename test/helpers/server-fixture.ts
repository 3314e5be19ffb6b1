/**
 * A real flowcast server on port 0 over a real InMemoryBroker, pipelines and tracking,
 * for the server suites, with clients that are closed after each test:
 *
 * - `alpha` and `beta`: two quick steps each (`inc`, `inc`): six events a run;
 * - `gated`: step `work` writes log lines in phases and waits between phases until the
 *   test opens the gate (`open(key, phase)`), then step `finish`. So a test holds a run
 *   in flight exactly where it wants, with no timing involved.
 */
import { afterEach } from 'vitest';
import {
  InMemoryBroker,
  InMemoryPipelineStorage,
  Pipeline,
  PipelineTrackingManager,
  type FlowcastEvent,
  type InMemoryBrokerOptions,
  type RunHandle,
} from '../../src/index.js';
import { getWebSocketServer, type FlowcastServer, type ServerOptions } from '../../src/server/index.js';
import { deferred, type Deferred } from './collect.js';
import { connect, type ConnectOptions, type TestClient } from './ws-client.js';

const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) {
    try {
      await cleanup();
    } catch (error) {
      console.error('cleanup failed:', error);
    }
  }
});

/** Runs `fn` after the current test (last registered, first run). */
export function onCleanup(fn: () => Promise<unknown> | void): void {
  cleanups.push(fn);
}

/** The input of a `gated` run: log `phases[i]` lines in phase i, and wait for the gate `key:i` between phases. */
// A type alias, not an interface: only aliases are assignable to JsonValue's index signature.
export type Script = {
  key: string;
  phases: number[];
};

export interface Fixture {
  broker: InMemoryBroker;
  tracking: PipelineTrackingManager;
  server: FlowcastServer;
  alpha: Pipeline<number, number>;
  beta: Pipeline<number, number>;
  gated: Pipeline<Script, string>;
  /** Opens the gate after phase `phase` of the `gated` run started with `key`. */
  open(key: string, phase: number): void;
  /** Starts a `gated` run; it is cancelled after the test if still running. */
  startGated(script: Script): Promise<RunHandle<string>>;
  /** Runs `pipeline` once to its end; resolves with the run id. */
  runToEnd(pipeline: Pipeline<number, number>, input?: number): Promise<string>;
  /** Connects a client to this server; it is closed after the test. */
  client(options?: ConnectOptions): Promise<TestClient>;
  /** The run's whole log, as the transport holds it. */
  log(runId: string): Promise<FlowcastEvent[]>;
}

/** Builds the fixture and starts the server (port 0). Everything is closed after the test. */
export async function startFixture(options: { server?: Partial<ServerOptions>; broker?: InMemoryBrokerOptions } = {}): Promise<Fixture> {
  const broker = new InMemoryBroker({ onError: () => undefined, ...options.broker });
  const tracking = new PipelineTrackingManager().withStorage(new InMemoryPipelineStorage());
  const gates = new Map<string, Deferred>();
  const gate = (name: string): Deferred => {
    let g = gates.get(name);
    if (g === undefined) {
      g = deferred();
      gates.set(name, g);
    }
    return g;
  };
  const inc = broker.task('inc', (n: number) => n + 1);
  const work = broker.task('work', async (input: Script, ctx) => {
    for (let i = 0; i < input.phases.length; i++) {
      for (let j = 0; j < (input.phases[i] ?? 0); j++) ctx.log(`${input.key} phase ${i} line ${j}`);
      if (i < input.phases.length - 1) {
        await new Promise<void>((resolve, reject) => {
          const onAbort = (): void => reject(ctx.signal.reason instanceof Error ? ctx.signal.reason : new Error('cancelled'));
          if (ctx.signal.aborted) onAbort();
          ctx.signal.addEventListener('abort', onAbort, { once: true });
          void gate(`${input.key}:${i}`).promise.then(() => {
            ctx.signal.removeEventListener('abort', onAbort);
            resolve();
          });
        });
      }
    }
    return input.key;
  });
  const finish = broker.task('finish', (key: string) => `${key} done`);
  const alpha = new Pipeline(broker, { id: 'alpha' }).callNext(inc).callNext(inc).withTracking(tracking);
  const beta = new Pipeline(broker, { id: 'beta' }).callNext(inc).callNext(inc).withTracking(tracking);
  const gated = new Pipeline<Script>(broker, { id: 'gated' }).callNext(work).callNext(finish).withTracking(tracking);
  const server = getWebSocketServer({ port: 0, broker, tracking, restRateLimit: false, ...options.server });
  const running: RunHandle<string>[] = [];
  cleanups.push(() => broker.close());
  cleanups.push(() => tracking.close());
  cleanups.push(async () => {
    for (const run of running) await run.cancel('test over').catch(() => undefined);
  });
  cleanups.push(() => server.close());
  await server.startServer();
  return {
    broker,
    tracking,
    server,
    alpha,
    beta,
    gated,
    open: (key, phase) => gate(`${key}:${phase}`).resolve(),
    async startGated(script) {
      const run = await gated.kiq(script);
      running.push(run);
      return run;
    },
    async runToEnd(pipeline, input = 1) {
      const run = await pipeline.kiq(input);
      await run.waitResult({ timeoutMs: 10_000 });
      return run.runId;
    },
    async client(connectOptions = {}) {
      const c = await connect(server.url, connectOptions);
      cleanups.push(() => c.close());
      return c;
    },
    async log(runId) {
      return (await broker.transport.read(runId, { since: 0 })).events;
    },
  };
}

/** Resolves once the run's log holds `n` events (for a run held at a gate). */
export async function logHolds(fixture: Fixture, runId: string, n: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const read = await fixture.broker.transport.read(runId, { since: 0 });
    if (read.last_seq >= n) return;
    if (Date.now() > deadline) throw new Error(`run ${runId}: the log holds ${read.last_seq} events, not ${n}, after ${timeoutMs}ms`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
