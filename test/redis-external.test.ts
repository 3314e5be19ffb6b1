import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ErrorCodes } from '../src/core/errors.js';
import type { FlowcastEvent } from '../src/events/types.js';
import { InMemoryBroker, Pipeline } from '../src/index.js';
import type { PipelinePlan } from '../src/pipeline/plan.js';
import { beginRun, cancelRun, newRunRecord } from '../src/pipeline/transitions.js';
import { ExternalEventIngestor, parseIngestEntry, type ExternalEventIngestorOptions, type IngestEntry } from '../src/redis/external-ingestor.js';
import { ingestKey, ingestLockKey } from '../src/redis/keys.js';
import { RedisRunState } from '../src/redis/run-state.js';
import { RedisPubSubTransport } from '../src/redis/transport.js';
import { getWebSocketServer } from '../src/server/index.js';
import { onCleanup } from './helpers/server-fixture.js';
import { useRedisServer } from './helpers/redis.js';
import { connect, isEvent } from './helpers/ws-client.js';

const run = promisify(execFile);
const redis = useRedisServer();
const examples = fileURLToPath(new URL('../examples/external', import.meta.url));

const plan: PipelinePlan = {
  pipeline_id: 'builds',
  pipeline_type: 'sequential',
  failure_policy: 'fail_fast',
  steps: [
    { name: 'build', index: 0, kind: 'call', tasks: ['make'], depends_on: [], retries: 0, retry_delay_ms: 0, backoff: 'fixed' },
    { name: 'deploy', index: 1, kind: 'call', tasks: ['ship'], depends_on: ['build'], retries: 0, retry_delay_ms: 0, backoff: 'fixed' },
  ],
};

interface Setup {
  transport: RedisPubSubTransport;
  runState: RedisRunState;
  refused: { entry: IngestEntry; reason: string }[];
  errors: string[];
  ingestor(options?: Partial<ExternalEventIngestorOptions>): Promise<ExternalEventIngestor>;
  startRun(runId: string): Promise<void>;
}

function setup(): Setup {
  const client = redis.connect();
  const transport = new RedisPubSubTransport(client, { keyPrefix: redis.prefix() });
  const runState = new RedisRunState(client, { transport });
  const refused: { entry: IngestEntry; reason: string }[] = [];
  const errors: string[] = [];
  onCleanup(() => transport.close());
  return {
    transport,
    runState,
    refused,
    errors,
    async ingestor(options = {}) {
      const ingestor = new ExternalEventIngestor({
        transport,
        runState,
        blockMs: 100,
        onInvalid: (entry, reason) => refused.push({ entry, reason }),
        onError: (error) => errors.push(String(error)),
        ...options,
      });
      onCleanup(() => ingestor.close());
      await ingestor.start();
      return ingestor;
    },
    async startRun(runId) {
      const rec = newRunRecord(runId, plan, null, Date.now());
      await runState.create(rec, beginRun(rec, Date.now()).events);
    },
  };
}

async function until(condition: () => boolean | Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`${what}: not reached within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function describeEvent(e: FlowcastEvent): string {
  if (e.type === 'StepLogEvent') return `log ${e.step_name}: ${e.lines.join(' | ')}`;
  if (e.type === 'StepProgressEvent') return `progress ${e.step_name}: ${e.progress}${e.message === undefined ? '' : ` ${e.message}`}`;
  return e.type;
}

describe('ExternalEventIngestor', () => {
  it('brings lines from a shell script, redis-cli and a Python job to a WebSocket client of the run, in order', async () => {
    const s = setup();
    await s.startRun('run-ext');
    // As the engine does when the step's job starts (here its second attempt).
    await s.runState.transition('run-ext', (r) => {
      Object.assign(r.steps.build!, { task_id: 'job-42', attempt: 2, phase: 'ACTIVE' });
      return { value: null, events: [] };
    });
    await s.ingestor();
    const server = getWebSocketServer({ port: 0, transport: s.transport, heartbeatMs: 0 });
    const { url } = await server.startServer();
    onCleanup(() => server.close());
    const ws = await connect(url);
    onCleanup(() => ws.close());
    await ws.subscribe({ run_id: 'run-ext' });
    const env = { ...process.env, RUN_ID: 'run-ext', STEP: 'build', REDIS_URL: redis.url, FLOWCAST_PREFIX: redis.prefix() };

    // A shell script wrapping a command (docs/redis.md: examples/external/tail-to-flowcast.sh).
    await run('sh', [`${examples}tail-to-flowcast.sh`, 'printf', 'compiling\\nlinking\\n'], { env });
    // The documented one-liner.
    await run('redis-cli', ['-u', redis.url, 'XADD', ingestKey(redis.prefix()), '*', 'run_id', 'run-ext', 'step', 'build', 'type', 'log', 'message', 'from redis-cli']);
    // A Python job: standard input as log lines, then the module's progress call.
    const py = execFile('python3', [`${examples}flowcast_ingest.py`, 'run-ext', 'build', '--url', redis.url, '--prefix', redis.prefix()]);
    py.stdin?.end('py line 1\npy line 2\n');
    await new Promise((resolve, reject) => py.on('exit', (code) => (code === 0 ? resolve(code) : reject(new Error(`python3 exited with ${code}`)))));
    await run('python3', ['-c', `import flowcast_ingest as f; o = f.FlowcastIngest("run-ext", "build", url=${JSON.stringify(redis.url)}, prefix=${JSON.stringify(redis.prefix())}); o.progress(0.5, "half way"); o.close()`], { cwd: examples });

    const expected = [
      'log build: compiling',
      'log build: linking',
      'progress build: 1 exit 0: printf compiling\\nlinking\\n',
      'log build: from redis-cli',
      'log build: py line 1',
      'log build: py line 2',
      'progress build: 0.5 half way',
    ];
    await ws.waitUntil(() => ws.messages.filter(isEvent).length >= expected.length, 'every external event');
    const events = ws.messages.filter(isEvent) as unknown as FlowcastEvent[];
    expect(events.map(describeEvent)).toEqual(expected);
    expect(events.map((e) => e.seq)).toEqual(expected.map((_, i) => i + 2));
    for (const e of events) expect(e).toMatchObject({ pipeline_id: 'builds', run_id: 'run-ext', step_index: 0, task_id: 'job-42', attempt: 2, v: 1 });
    expect(s.refused).toEqual([]);
    // The log holds them too (a late joiner replays them), and the stream was emptied.
    expect((await s.transport.read('run-ext', { since: 1 })).events.map(describeEvent)).toEqual(expected);
    expect(await s.transport.redis.xlen(ingestKey(redis.prefix()))).toBe(0);
  });

  it('a task of a running pipeline hands its step to a shell script; the browser-side client sees its lines inside the step', async () => {
    const s = setup();
    await s.ingestor();
    const broker = new InMemoryBroker();
    Object.assign(broker, { runState: s.runState, transport: s.transport });
    onCleanup(() => broker.close());
    const build = broker.task('build', async (_input: null, ctx) => {
      const env = { ...process.env, RUN_ID: ctx.runId ?? '', STEP: ctx.stepName ?? '', REDIS_URL: redis.url, FLOWCAST_PREFIX: redis.prefix() };
      await run('sh', [`${examples}tail-to-flowcast.sh`, 'printf', 'step one\\nstep two\\n'], { env });
      // The ingestor appends asynchronously: the step ends once its output is in the log.
      await until(async () => (await s.transport.read(ctx.runId ?? '')).events.some((e) => e.type === 'StepProgressEvent'), 'output ingested');
      return 'built';
    });
    const pipeline = new Pipeline(broker, { id: 'ext-demo' }).callNext(build);
    const server = getWebSocketServer({ port: 0, transport: s.transport, heartbeatMs: 0 });
    const { url } = await server.startServer();
    onCleanup(() => server.close());
    const ws = await connect(url);
    onCleanup(() => ws.close());
    await ws.subscribe({ pipeline_id: 'ext-demo' });
    const handle = await pipeline.kiq(null);
    await expect(handle.waitResult()).resolves.toBe('built');
    await ws.waitForEnd(handle.runId);
    const events = ws.messages.filter(isEvent) as unknown as FlowcastEvent[];
    expect(events.map((e) => (e.type === 'StepLogEvent' || e.type === 'StepProgressEvent' ? describeEvent(e) : e.type))).toEqual([
      'PipelineStartEvent',
      'StepStartEvent',
      'log build: step one',
      'log build: step two',
      'progress build: 1 exit 0: printf step one\\nstep two\\n',
      'StepCompleteEvent',
      'PipelineCompleteEvent',
    ]);
    expect(events.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6, 7]);
  });

  it('acknowledges and reports invalid entries, and keeps going', async () => {
    const s = setup();
    await s.startRun('run-ok');
    await s.startRun('run-over');
    await s.runState.transition('run-over', (r) => cancelRun(r, 'stop', Date.now()));
    const ingestor = await s.ingestor();
    const key = ingestKey(redis.prefix());
    const bad: string[][] = [
      ['step', 'build', 'type', 'log', 'message', 'no run'],
      ['run_id', 'nobody', 'step', 'build', 'type', 'log', 'message', 'unknown run'],
      ['run_id', 'run-ok', 'step', 'nope', 'type', 'log', 'message', 'unknown step'],
      ['run_id', 'run-ok', 'step', 'build', 'type', 'shout', 'message', 'bad type'],
      ['run_id', 'run-ok', 'step', 'build', 'type', 'progress', 'progress', '150'],
      ['run_id', 'run-ok', 'step', 'build', 'type', 'log'],
      ['run_id', 'run-over', 'step', 'build', 'type', 'log', 'message', 'too late'],
    ];
    for (const fields of bad) await s.transport.redis.xadd(key, '*', ...fields);
    await s.transport.redis.xadd(key, '*', 'run_id', 'run-ok', 'step', 'deploy', 'type', 'log', 'message', 'fine');
    await until(() => ingestor.stats.ingested + ingestor.stats.refused === 8, 'every entry handled');
    expect(ingestor.stats).toEqual({ ingested: 1, refused: 7 });
    expect(s.refused.map((r) => r.reason)).toEqual([
      expect.stringContaining('run_id must be'),
      'unknown run "nobody"',
      'run "run-ok" has no step "nope"',
      expect.stringContaining('type must be "log" or "progress"'),
      expect.stringContaining('progress must be a number from 0 to 1, received "150"'),
      'a log entry needs a message',
      'run "run-over" has ended (CANCELLED)',
    ]);
    const log = await s.transport.read('run-ok', { since: 1 });
    expect(log.events.map(describeEvent)).toEqual(['log deploy: fine']);
    const pending = (await s.transport.redis.xpending(key, ingestor.group)) as [number, ...unknown[]];
    expect(pending[0]).toBe(0);
    expect(await s.transport.redis.xlen(key)).toBe(0);
    expect(s.errors).toEqual([]);
  });

  it('with two ingestors, one consumes at a time: a burst of lines lands once each, in the order written', async () => {
    const s = setup();
    await s.startRun('run-burst');
    const a = await s.ingestor({ batchSize: 7 });
    const b = await s.ingestor({ batchSize: 7 });
    const key = ingestKey(redis.prefix());
    const pipe = s.transport.redis.pipeline();
    for (let i = 0; i < 200; i++) pipe.xadd(key, '*', 'run_id', 'run-burst', 'step', 'build', 'type', 'log', 'message', `line ${i}`);
    await pipe.exec();
    await until(() => a.stats.ingested + b.stats.ingested === 200, 'every entry ingested');
    expect(a.stats.ingested === 0 || b.stats.ingested === 0).toBe(true);
    const log = await s.transport.read('run-burst', { since: 1 });
    expect(log.events.map((e) => (e.type === 'StepLogEvent' ? e.lines[0] : ''))).toEqual(Array.from({ length: 200 }, (_, i) => `line ${i}`));
  });

  it('with exclusive: false, ingestors share the stream: each entry lands in the log exactly once', async () => {
    const s = setup();
    await s.startRun('run-shared');
    const a = await s.ingestor({ batchSize: 7, exclusive: false });
    const b = await s.ingestor({ batchSize: 7, exclusive: false });
    const key = ingestKey(redis.prefix());
    const pipe = s.transport.redis.pipeline();
    for (let i = 0; i < 200; i++) pipe.xadd(key, '*', 'run_id', 'run-shared', 'step', 'build', 'type', 'log', 'message', `line ${i}`);
    await pipe.exec();
    await until(() => a.stats.ingested + b.stats.ingested === 200, 'every entry ingested');
    const log = await s.transport.read('run-shared', { since: 1 });
    const lines = log.events.map((e) => (e.type === 'StepLogEvent' ? e.lines[0] : '')).sort();
    expect(lines).toEqual(Array.from({ length: 200 }, (_, i) => `line ${i}`).sort());
    expect(log.events.map((e) => e.seq)).toEqual(Array.from({ length: 200 }, (_, i) => i + 2));
  });

  it('takes over entries an ingestor read and never acknowledged (it died)', async () => {
    for (const exclusive of [false, true]) {
      const s = setup();
      const runId = `run-claim-${exclusive}`;
      await s.startRun(runId);
      const key = ingestKey(redis.prefix());
      const r = s.transport.redis;
      await r.xgroup('CREATE', key, 'flowcast', '0', 'MKSTREAM').catch(() => undefined);
      for (let i = 0; i < 3; i++) await r.xadd(key, '*', 'run_id', runId, 'step', 'build', 'type', 'log', 'message', `orphan ${i}`);
      const taken = (await r.xreadgroup('GROUP', 'flowcast', `dead-${exclusive}`, 'COUNT', 10, 'STREAMS', key, '>')) as [string, unknown[]][];
      expect(taken[0]?.[1]).toHaveLength(3);
      await r.xadd(key, '*', 'run_id', runId, 'step', 'build', 'type', 'log', 'message', 'fresh');
      const ingestor = await s.ingestor({ claimIdleMs: 50, exclusive });
      await until(() => ingestor.stats.ingested === 4, 'orphans ingested');
      await ingestor.close();
      const log = await s.transport.read(runId, { since: 1 });
      const lines = log.events.map(describeEvent);
      // The exclusive ingestor takes the orphans first, so the order holds.
      if (exclusive) expect(lines).toEqual(['log build: orphan 0', 'log build: orphan 1', 'log build: orphan 2', 'log build: fresh']);
      else expect([...lines].sort()).toEqual(['log build: fresh', 'log build: orphan 0', 'log build: orphan 1', 'log build: orphan 2']);
    }
  });

  it('hands the stream over when the exclusive ingestor closes, and after its lease expired when it died', async () => {
    const s = setup();
    await s.startRun('run-lease');
    const key = ingestKey(redis.prefix());
    const r = s.transport.redis;
    const line = (text: string) => r.xadd(key, '*', 'run_id', 'run-lease', 'step', 'build', 'type', 'log', 'message', text);
    // A dead holder's lease: nobody consumes until it runs out.
    await r.set(ingestLockKey(redis.prefix()), 'dead-holder', 'PX', 300);
    const a = await s.ingestor({ leaseMs: 60_000 });
    await line('after the dead holder');
    await until(() => a.stats.ingested === 1, 'a took over after the lease ran out');
    const b = await s.ingestor({ leaseMs: 60_000 });
    await line('from a');
    await until(() => a.stats.ingested === 2, 'a consumes');
    expect(b.stats.ingested).toBe(0);
    // a's lease would last a minute: b consumes within the wait only because close() released it.
    await a.close();
    await line('from b');
    await until(() => b.stats.ingested === 1, 'b took over');
    expect((await s.transport.read('run-lease', { since: 1 })).events.map(describeEvent)).toEqual(['log build: after the dead holder', 'log build: from a', 'log build: from b']);
  });

  it('without a run state, takes the step from the run\'s PipelineStartEvent', async () => {
    const s = setup();
    await s.startRun('run-nostate');
    const ingestor = await s.ingestor({ runState: undefined as never });
    await s.transport.redis.xadd(ingestKey(redis.prefix()), '*', 'run_id', 'run-nostate', 'step', 'deploy', 'type', 'progress', 'progress', '0.25');
    await until(() => ingestor.stats.ingested === 1, 'entry ingested');
    const [event] = (await s.transport.read('run-nostate', { since: 1 })).events;
    expect(event).toMatchObject({ type: 'StepProgressEvent', step_name: 'deploy', step_index: 1, task_id: 'external', progress: 0.25 });
  });

  describe('validation', () => {
    it('refuses to start again once closed', async () => {
      const s = setup();
      const ingestor = await s.ingestor();
      await ingestor.close();
      await ingestor.close();
      await expect(ingestor.start()).rejects.toMatchObject({ code: ErrorCodes.CLOSED });
    });

    it('rejects bad options and parses entries strictly', () => {
      const s = setup();
      expect(() => new ExternalEventIngestor({} as never)).toThrow(/transport must be a RedisPubSubTransport/);
      expect(() => new ExternalEventIngestor({ transport: s.transport, batchSize: 0 })).toThrow(/batchSize must be an integer >= 1/);
      expect(() => new ExternalEventIngestor({ transport: s.transport, group: 'a b' })).toThrow(/group must be/);
      expect(() => new ExternalEventIngestor({ transport: s.transport, onInvalid: 1 as never })).toThrow(/onInvalid must be a function/);
      expect(() => new ExternalEventIngestor({ transport: s.transport, stream: 'x' } as never)).toThrow(/unknown option "stream"/);
      expect(() => new ExternalEventIngestor({ transport: s.transport, leaseMs: 500, blockMs: 1000 })).toThrow(/leaseMs \(500\) must be more than blockMs \(1000\)/);
      expect(() => new ExternalEventIngestor({ transport: s.transport, exclusive: 'yes' as never })).toThrow(/exclusive must be a boolean/);
      expect(parseIngestEntry({ run_id: 'r', step: 's', type: 'log', message: 'a\nb\n' })).toMatchObject({ kind: 'log', lines: ['a', 'b'] });
      expect(parseIngestEntry({ run_id: 'r', step_name: 's', type: 'StepProgressEvent', progress: '0' })).toMatchObject({ kind: 'progress', progress: 0, message: null });
      expect(() => parseIngestEntry({ run_id: 'r', step: 's', type: 'progress', progress: '' })).toThrow(/progress must be/);
      expect(() => parseIngestEntry({ run_id: 'r', step: 's', type: 'log', message: 'x', item: '-1' })).toThrow(/item must be/);
    });
  });
});
