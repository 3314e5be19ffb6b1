import { afterEach, describe, expect, it } from 'vitest';
import { InMemoryBroker } from '../src/pipeline/memory-broker.js';
import { getEngine } from '../src/pipeline/engine.js';
import { Pipeline } from '../src/index.js';

/** A real in-memory broker that also notes the delayed jobs the engine asks it to remove. */
class NotingBroker extends InMemoryBroker {
  readonly removed: string[] = [];

  override removeDelayed(jobId: string): Promise<void> {
    this.removed.push(jobId);
    return super.removeDelayed(jobId);
  }
}

const open: NotingBroker[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((b) => b.close()));
});

function newBroker(): NotingBroker {
  const broker = new NotingBroker();
  open.push(broker);
  return broker;
}

describe('clean-up at the end of a run', () => {
  it('removes no run_timeout job for a run whose plan has no run timeout', async () => {
    const broker = newBroker();
    const double = broker.task('double', (n: number) => n * 2);
    const pipeline = new Pipeline(broker, { id: 'untimed' }).callNext(double).callNext(double);
    const run = await pipeline.kiq(3);
    await expect(run.waitResult()).resolves.toBe(12);
    await getEngine(broker).flushed(run.runId);
    expect(broker.removed).toEqual([]);
  });

  it('removes the run_timeout job of a run with a run timeout once it ends', async () => {
    const broker = newBroker();
    const double = broker.task('double', (n: number) => n * 2);
    const pipeline = new Pipeline(broker, { id: 'timed', timeoutMs: 60_000 }).callNext(double);
    const run = await pipeline.kiq(4);
    await expect(run.waitResult()).resolves.toBe(8);
    await getEngine(broker).flushed(run.runId);
    expect(broker.removed).toEqual([`run-timeout:${run.runId}`]);
  });

  it('removes the run_timeout job of a cancelled run with a run timeout, and none without one', async () => {
    const broker = newBroker();
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const wait = broker.task('wait', async (n: number, ctx) => {
      await Promise.race([gate, new Promise((resolve) => ctx.signal.addEventListener('abort', resolve, { once: true }))]);
      return n;
    });
    const timed = await new Pipeline(broker, { id: 'timed_cancel', timeoutMs: 60_000 }).callNext(wait).kiq(1);
    const untimed = await new Pipeline(broker, { id: 'untimed_cancel' }).callNext(wait).kiq(2);
    await expect(timed.cancel()).resolves.toBe(true);
    await expect(untimed.cancel()).resolves.toBe(true);
    release();
    await getEngine(broker).flushed(timed.runId);
    await getEngine(broker).flushed(untimed.runId);
    expect(broker.removed).toEqual([`run-timeout:${timed.runId}`]);
  });
});
