/**
 * Tracking fed by the real engine (in-memory broker): the snapshot must match the run's
 * own event log, so a late joiner can follow the log from `last_seq + 1`.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { InMemoryBroker } from '../src/pipeline/memory-broker.js';
import type { JsonValue } from '../src/core/json.js';
import { DataflowPipeline } from '../src/pipeline/dataflow.js';
import { Pipeline } from '../src/pipeline/pipeline.js';
import { PipelineTrackingManager } from '../src/tracking/manager.js';
import type { PipelineStatus } from '../src/tracking/models.js';
import { reduce } from './helpers/events.js';

const brokers: InMemoryBroker[] = [];
afterEach(async () => {
  await Promise.all(brokers.splice(0).map((b) => b.close()));
});

function makeBroker(): InMemoryBroker {
  const b = new InMemoryBroker({ onError: () => undefined });
  brokers.push(b);
  return b;
}

async function logOf(broker: InMemoryBroker, runId: string): Promise<PipelineStatus | null> {
  const read = await broker.transport.read(runId);
  expect(read.complete).toBe(true);
  return reduce(read.events);
}

describe('tracking a real run', () => {
  it('tracks a sequential run with logs, progress, a retry and a map step, in step with the event log', async () => {
    const broker = makeBroker();
    let calls = 0;
    const fetch = broker.task('fetch', (n: number, ctx) => {
      ctx.log('fetching', 'done');
      ctx.progress(0.5, 'half');
      return [n, n + 1, n + 2];
    });
    const flaky = broker.task('flaky', (xs: JsonValue) => {
      if (++calls === 1) throw new Error('first try fails');
      return xs;
    });
    const double = broker.task('double', (x: number) => x * 2);
    const tracking = new PipelineTrackingManager().withAutoStorage(broker);
    const completed: string[] = [];
    tracking.addListener({ onPipelineComplete: (_p, s) => void completed.push(s.status) });
    const p = new Pipeline(broker, { id: 'seq_track' }).callNext(fetch).callNext(flaky, { retries: 1 }).map(double).withTracking(tracking);

    const run = await p.kiq(1);
    expect(await run.waitResult()).toEqual([2, 4, 6]);
    const status = await tracking.getStatus(run.runId);
    expect(status).toMatchObject({ pipeline_id: 'seq_track', run_id: run.runId, status: 'COMPLETED', result: [2, 4, 6], input: 1, progress: 1 });
    expect(status?.steps.map((s) => [s.step_name, s.kind, s.status, s.attempts])).toEqual([
      ['fetch', 'call', 'COMPLETED', 1],
      ['flaky', 'call', 'COMPLETED', 2],
      ['double', 'map', 'COMPLETED', 1],
    ]);
    expect(status?.steps[0]).toMatchObject({ log_lines: 2, message: 'half', progress: 1 });
    expect(status).toEqual(await logOf(broker, run.runId));
    expect(status?.last_seq).toBe((await broker.transport.read(run.runId)).last_seq);
    expect(completed).toEqual(['COMPLETED']);
    expect(await tracking.getStatus('seq_track')).toEqual(status);
  });

  it('tracks a failing dataflow run with its dag and skipped steps', async () => {
    const broker = makeBroker();
    const ok = broker.task('ok', () => 1);
    const boom = broker.task('boom', () => {
      throw new TypeError('bad input');
    });
    const tracking = new PipelineTrackingManager().withAutoStorage(broker);
    const errors: string[] = [];
    tracking.addListener({ onPipelineError: (_p, error) => void errors.push(error) });
    const p = new DataflowPipeline(broker, { id: 'df_track' })
      .step('a', ok)
      .step('b', boom, { dependsOn: ['a'] })
      .step('c', ok, { dependsOn: ['b'] })
      .withTracking(tracking);
    const run = await p.kiq(null);
    await expect(run.waitResult()).rejects.toThrow();
    const status = await tracking.getStatus(run.runId);
    expect(status?.status).toBe('FAILED');
    expect(status?.dag).toEqual({ nodes: ['a', 'b', 'c'], edges: [['a', 'b'], ['b', 'c']] });
    expect(status?.steps.map((s) => s.status)).toEqual(['COMPLETED', 'FAILED', 'SKIPPED']);
    expect(status?.steps[1]?.error).toContain('bad input');
    expect(errors).toEqual([status?.error]);
    expect(status).toEqual(await logOf(broker, run.runId));
  });

  it('tracks a cancelled run: the running step becomes CANCELLED', async () => {
    const broker = makeBroker();
    let started!: () => void;
    const isStarted = new Promise<void>((r) => (started = r));
    const slow = broker.task('slow', (_: JsonValue, ctx) => {
      started();
      return new Promise<JsonValue>((_resolve, reject) => ctx.signal.addEventListener('abort', () => reject(new Error('aborted')), { once: true }));
    });
    const after = broker.task('after', () => 1);
    const tracking = new PipelineTrackingManager().withAutoStorage(broker);
    const p = new Pipeline(broker, { id: 'cancel_track' }).callNext(slow).callNext(after).withTracking(tracking);
    const run = await p.kiq(null);
    await isStarted;
    expect((await tracking.getStatus(run.runId))?.current_step).toBe('slow');
    await run.cancel('stop');
    await expect(run.waitResult()).rejects.toThrow();
    const status = await tracking.getStatus(run.runId);
    expect(status).toMatchObject({ status: 'CANCELLED', error: 'stop', current_step: null });
    expect(status?.steps.map((s) => s.status)).toEqual(['CANCELLED', 'SKIPPED']);
  });
});
