/**
 * Engine throughput: N runs of a no-op 5-step sequential pipeline on the in-memory
 * broker, bare and with hooks + tracking attached, in one process, beside a floor: the
 * same steps as plain awaited calls that emit the same events (same types, fields and
 * count: a start, a start and an end per step, an end) to one listener, with no engine.
 * Prints steps/s of each arm and the ratios (issue 18, goal 3).
 * Usage: npm run bench:engine -- [runs=20000] [inflight=100] [rounds=3]
 */
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { InMemoryBroker, Pipeline, HookManager } from '../src/index.js';
import { PipelineTrackingManager, InMemoryPipelineStorage } from '../src/index.js';

const RUNS = Number(process.argv[2] ?? 20_000);
const INFLIGHT = Number(process.argv[3] ?? 100);
const ROUNDS = Number(process.argv[4] ?? 3);
const STEPS = 5;

async function measure(withObservers: boolean): Promise<{ stepsPerSec: number; events: number }> {
  const broker = new InMemoryBroker({ concurrency: 1024, transport: { maxRuns: 1000 } });
  const noop = broker.task('noop', (n: number) => n);
  let p = new Pipeline(broker, { id: withObservers ? 'bench_tracked' : 'bench_bare' });
  for (let i = 0; i < STEPS; i++) p = p.callNext(noop);
  let events = 0;
  if (withObservers) {
    const hooks = new HookManager();
    hooks.on('*', () => {
      events++;
    });
    const tracking = new PipelineTrackingManager().withStorage(new InMemoryPipelineStorage({ maxRuns: 5000 }));
    p.withHooks(hooks).withTracking(tracking);
  }
  const start = process.hrtime.bigint();
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < RUNS) {
      next++;
      const run = await p.kiq(1);
      await run.waitResult();
    }
  };
  await Promise.all(Array.from({ length: INFLIGHT }, worker));
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  await broker.close();
  return { stepsPerSec: (RUNS * STEPS) / seconds, events };
}

/** The floor: each run's steps as awaited calls, each event built as the engine builds it and handed to a listener. */
async function floor(): Promise<{ stepsPerSec: number; events: number }> {
  const bus = new EventEmitter();
  let events = 0;
  bus.on('event', () => {
    events++;
  });
  const noop = (n: number): Promise<number> => Promise.resolve(n);
  const emit = (runId: string, seq: number, type: string, extra: Record<string, unknown>): void => {
    bus.emit('event', { v: 1, type, event_id: randomUUID(), run_id: runId, pipeline_id: 'bench_floor', seq, timestamp: new Date().toISOString(), ...extra });
  };
  const runOne = async (): Promise<void> => {
    const runId = randomUUID();
    let seq = 0;
    emit(runId, ++seq, 'PipelineStartEvent', { pipeline_type: 'sequential', input: 1, steps: STEPS });
    let value = 1;
    for (let i = 0; i < STEPS; i++) {
      const started = Date.now();
      const taskId = randomUUID();
      emit(runId, ++seq, 'StepStartEvent', { step_name: 'noop', step_index: i, task_id: taskId, attempt: 1 });
      value = await noop(value);
      emit(runId, ++seq, 'StepCompleteEvent', { step_name: 'noop', step_index: i, task_id: taskId, result: value, duration_ms: Date.now() - started });
    }
    emit(runId, ++seq, 'PipelineCompleteEvent', { result: value, duration_ms: 0 });
  };
  const start = process.hrtime.bigint();
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < RUNS) {
      next++;
      await runOne();
    }
  };
  await Promise.all(Array.from({ length: INFLIGHT }, worker));
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  return { stepsPerSec: (RUNS * STEPS) / seconds, events };
}

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');
console.log(`flowcast engine bench: ${RUNS} runs x ${STEPS} no-op steps, ${INFLIGHT} runs in flight, ${ROUNDS} rounds, node ${process.version}`);
await measure(false); // warm-up
await measure(true);
await floor();
const bare: number[] = [];
const tracked: number[] = [];
const floors: number[] = [];
for (let r = 0; r < ROUNDS; r++) {
  const f = await floor();
  floors.push(f.stepsPerSec);
  if (f.events !== RUNS * (STEPS * 2 + 2)) throw new Error(`the floor emitted ${f.events} events, expected ${RUNS * (STEPS * 2 + 2)}`);
  bare.push((await measure(false)).stepsPerSec);
  const t = await measure(true);
  tracked.push(t.stepsPerSec);
  if (t.events !== RUNS * (STEPS * 2 + 2)) throw new Error(`hooks saw ${t.events} events, expected ${RUNS * (STEPS * 2 + 2)}`);
}
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const b = median(bare);
const t = median(tracked);
const f = median(floors);
console.log(`floor (awaited calls + the same events to a listener): ${fmt(f)} steps/s   (rounds: ${floors.map(fmt).join(', ')})`);
console.log(`bare engine:              ${fmt(b)} steps/s   (rounds: ${bare.map(fmt).join(', ')})`);
console.log(`with hooks + tracking:    ${fmt(t)} steps/s   (rounds: ${tracked.map(fmt).join(', ')})`);
console.log(`floor / bare engine: ${(f / b).toFixed(2)}x; floor / tracked: ${(f / t).toFixed(2)}x (lower is closer to the floor)`);
console.log(`cost of hooks + tracking: ${(b / t).toFixed(2)}x (issue 18 target <= 1.2x: ${b / t <= 1.2 ? 'met' : 'NOT met'}); tracked target >= 100,000 steps/s: ${t >= 100_000 ? 'met' : 'NOT met'}`);
