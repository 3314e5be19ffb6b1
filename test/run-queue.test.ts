/**
 * Queued starts on the in-memory broker (`concurrency.onLimit: "queue"`): starts over the
 * limit get their run id at once and wait FIFO; each end of a run (success, failure,
 * cancel) starts the oldest waiting one; a cancelled queued run never runs and ends
 * CANCELLED; the queue is bounded and the option is checked.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { InMemoryBroker } from '../src/pipeline/memory-broker.js';
import { Pipeline } from '../src/pipeline/pipeline.js';
import { getEngine } from '../src/pipeline/engine.js';
import { AlreadyRunningError, CancelledError, InvalidArgumentError } from '../src/core/errors.js';
import type { JsonValue } from '../src/core/json.js';
import { InMemoryPipelineStorage, PipelineTrackingManager } from '../src/tracking/index.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

type GateInput = { name: string; fail?: boolean } & { [key: string]: JsonValue };

/** A pipeline whose runs each wait for the test to open their gate; `ran` lists the runs that started their step, in order. */
function gated(options: { limit?: number; maxQueued?: number } = {}) {
  const broker = new InMemoryBroker({ onError: () => undefined });
  cleanups.push(() => broker.close());
  const ran: string[] = [];
  const gates = new Map<string, () => void>();
  const task = broker.task<GateInput, string>('gate', async (input) => {
    ran.push(input.name);
    await new Promise<void>((resolve) => gates.set(input.name, resolve));
    if (input.fail === true) throw new Error(`${input.name} asked to fail`);
    return input.name;
  });
  const concurrency = { limit: options.limit ?? 1, onLimit: 'queue' as const, ...(options.maxQueued === undefined ? {} : { maxQueued: options.maxQueued }) };
  const pipeline = new Pipeline<GateInput, string>(broker, { id: 'queued', concurrency }).callNext(task);
  /** Waits (bounded) until run `name` started its step, then lets it end. */
  const open = async (name: string): Promise<void> => {
    for (let i = 0; i < 400 && !gates.has(name); i++) await new Promise((r) => setTimeout(r, 10));
    const gate = gates.get(name);
    if (gate === undefined) throw new Error(`run ${name} never started (ran: ${ran.join(', ')})`);
    gate();
  };
  return { broker, pipeline, ran, open };
}

describe('concurrency.onLimit "queue" (in-memory broker)', () => {
  it('queues three starts behind a limit of 1 and runs them one at a time, first in first out', async () => {
    const { broker, pipeline, ran, open } = gated();
    const first = await pipeline.kiq({ name: 'a' });
    expect(first.queued).toBeUndefined();
    const queued = [await pipeline.kiq({ name: 'b' }), await pipeline.kiq({ name: 'c' }), await pipeline.kiq({ name: 'd' })];
    expect(queued.map((h) => h.queued?.position)).toEqual([1, 2, 3]);
    for (const h of queued) expect(h.queued?.waitingFor).toEqual([first.runId]);
    // A queued run has its id but no run yet.
    expect(await queued[0]?.getRun()).toBeNull();
    const results = queued.map((h) => h.waitResult());
    const names = ['a', 'b', 'c', 'd'];
    for (const [i, name] of names.entries()) {
      // One at a time: the next starts only once this one's gate opened.
      await open(name);
      for (let n = 0; n < 400 && i + 1 < names.length && ran.length === i + 1; n++) await new Promise((r) => setTimeout(r, 10));
      expect(ran).toEqual(names.slice(0, Math.min(i + 2, names.length)));
    }
    expect(await Promise.all(results)).toEqual(['b', 'c', 'd']);
    expect(ran).toEqual(['a', 'b', 'c', 'd']);
    expect(await first.waitResult()).toBe('a');
    expect(await broker.slots.queue.groups()).toEqual([]);
  });

  it('a queued run that is cancelled never runs and ends CANCELLED; the others keep their order', async () => {
    const { pipeline, ran, open } = gated();
    const tracking = new PipelineTrackingManager().withStorage(new InMemoryPipelineStorage());
    cleanups.push(() => tracking.close());
    pipeline.withTracking(tracking);
    const a = await pipeline.kiq({ name: 'a' });
    const b = await pipeline.kiq({ name: 'b' });
    const c = await pipeline.kiq({ name: 'c' });
    const bEnd = b.waitResult();
    expect(await b.cancel('not needed')).toBe(true);
    await expect(bEnd).rejects.toBeInstanceOf(CancelledError);
    expect((await b.getRun())?.status).toBe('CANCELLED');
    await getEngine(pipeline.broker).flushed(b.runId);
    expect(await tracking.getStatus(b.runId)).toMatchObject({ status: 'CANCELLED', error: 'not needed' });
    // Cancelling it again: it has ended.
    expect(await b.cancel()).toBe(false);
    await open('a');
    await open('c');
    expect(await c.waitResult()).toBe('c');
    expect(await a.waitResult()).toBe('a');
    expect(ran).toEqual(['a', 'c']);
  });

  it('a failing run frees its slot for the next queued run, and a cancelled running one too', async () => {
    const { pipeline, ran, open } = gated();
    const a = await pipeline.kiq({ name: 'a', fail: true });
    const b = await pipeline.kiq({ name: 'b' });
    const c = await pipeline.kiq({ name: 'c' });
    const aEnd = a.waitResult();
    await open('a');
    await expect(aEnd).rejects.toThrow('asked to fail');
    for (let i = 0; i < 400 && ran.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
    expect(ran).toEqual(['a', 'b']);
    expect(await b.cancel('stop b')).toBe(true);
    await open('c');
    expect(await c.waitResult()).toBe('c');
    expect(ran).toEqual(['a', 'b', 'c']);
  });

  it('a new start queues behind the waiting ones even when a slot is free for a moment (no overtaking)', async () => {
    const { pipeline, ran, open } = gated({ limit: 2 });
    const a = await pipeline.kiq({ name: 'a' });
    const b = await pipeline.kiq({ name: 'b' });
    const c = await pipeline.kiq({ name: 'c' });
    const d = await pipeline.kiq({ name: 'd' });
    expect([a.queued, b.queued, c.queued?.position, d.queued?.position]).toEqual([undefined, undefined, 1, 2]);
    await open('a');
    expect(await a.waitResult()).toBe('a');
    for (let i = 0; i < 400 && ran.length < 3; i++) await new Promise((r) => setTimeout(r, 10));
    expect(ran).toEqual(['a', 'b', 'c']);
    const e = await pipeline.kiq({ name: 'e' });
    expect(e.queued?.position).toBe(2);
    for (const name of ['b', 'c', 'd', 'e']) await open(name);
    expect(await e.waitResult()).toBe('e');
    expect(ran).toEqual(['a', 'b', 'c', 'd', 'e']);
  });

  it('refuses a start when maxQueued starts wait already, naming a run in the way', async () => {
    const { pipeline, open } = gated({ maxQueued: 1 });
    const a = await pipeline.kiq({ name: 'a' });
    const b = await pipeline.kiq({ name: 'b' });
    const refused = pipeline.kiq({ name: 'c' });
    await expect(refused).rejects.toBeInstanceOf(AlreadyRunningError);
    await expect(refused).rejects.toMatchObject({ runId: a.runId, message: expect.stringContaining('maxQueued 1') as unknown });
    await open('a');
    await open('b');
    expect(await b.waitResult()).toBe('b');
  });

  it('answers the queued run for a repeated idempotency key', async () => {
    const { pipeline, open } = gated();
    const a = await pipeline.kiq({ name: 'a' });
    const b = await pipeline.kiq({ name: 'b' }, { idempotencyKey: 'k1' });
    const again = await pipeline.kiq({ name: 'b' }, { idempotencyKey: 'k1' });
    expect(again).toMatchObject({ runId: b.runId, deduplicated: true });
    await open('a');
    await open('b');
    expect(await again.waitResult()).toBe('b');
    expect(await a.waitResult()).toBe('a');
  });

  it('checks the option', () => {
    const broker = new InMemoryBroker();
    cleanups.push(() => broker.close());
    expect(() => new Pipeline(broker, { concurrency: { limit: 1, onLimit: 'wait' as 'queue' } })).toThrow(InvalidArgumentError);
    expect(() => new Pipeline(broker, { concurrency: { limit: 1, onLimit: 'wait' as 'queue' } })).toThrow('concurrency.onLimit must be "reject" or "queue", received "wait"');
    expect(() => new Pipeline(broker, { concurrency: { limit: 1, maxQueued: 5 } })).toThrow('concurrency.maxQueued needs concurrency.onLimit "queue"');
    expect(() => new Pipeline(broker, { concurrency: { limit: 1, onLimit: 'queue', maxQueued: 0 } })).toThrow('concurrency.maxQueued');
    expect(new Pipeline(broker, { concurrency: { limit: 1 } }).concurrency?.onLimit).toBe('reject');
    expect(new Pipeline(broker, { concurrency: { limit: 1, onLimit: 'queue' } }).concurrency?.onLimit).toBe('queue');
  });
});
