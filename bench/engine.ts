/**
 * Engine throughput: N runs of a no-op 5-step sequential pipeline on the in-memory
 * broker, bare and with hooks + tracking attached, in one process. Prints steps/s and
 * the ratio. Usage: npm run bench:engine -- [runs=20000] [inflight=100] [rounds=3]
 */
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

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');
console.log(`flowcast engine bench: ${RUNS} runs x ${STEPS} no-op steps, ${INFLIGHT} runs in flight, ${ROUNDS} rounds, node ${process.version}`);
await measure(false); // warm-up
await measure(true);
const bare: number[] = [];
const tracked: number[] = [];
for (let r = 0; r < ROUNDS; r++) {
  bare.push((await measure(false)).stepsPerSec);
  const t = await measure(true);
  tracked.push(t.stepsPerSec);
  if (t.events !== RUNS * (STEPS * 2 + 2)) throw new Error(`hooks saw ${t.events} events, expected ${RUNS * (STEPS * 2 + 2)}`);
}
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const b = median(bare);
const t = median(tracked);
console.log(`bare engine:              ${fmt(b)} steps/s   (rounds: ${bare.map(fmt).join(', ')})`);
console.log(`with hooks + tracking:    ${fmt(t)} steps/s   (rounds: ${tracked.map(fmt).join(', ')})`);
console.log(`cost of hooks + tracking: ${(b / t).toFixed(2)}x (target <= 1.5x); tracked target >= 100,000 steps/s: ${t >= 100_000 ? 'met' : 'NOT met'}`);
