/**
 * `pipeline.resume(runId)` on the in-memory broker: a FAILED (or CANCELLED) run goes on
 * as a new attempt of the same run. The steps that completed are not called again and
 * their results feed the steps that run; the run's events continue its log with gapless
 * seqs after the terminal event, starting with a `PipelineResumeEvent`; tracking follows.
 * A RUNNING, COMPLETED or unknown run is refused with RUN_NOT_RESUMABLE.
 */
import { mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AlreadyRunningError, ErrorCodes, RunNotResumableError } from '../src/core/errors.js';
import type { FlowcastEvent } from '../src/events/types.js';
import { Pipeline } from '../src/pipeline/pipeline.js';
import { InMemoryPipelineStorage, PipelineTrackingManager } from '../src/tracking/index.js';
import { brokerFactory, deferred, labels, untilAborted } from './helpers/collect.js';
import { calls, resumePipelines } from './fixtures/resume/pipelines.js';

const newBroker = brokerFactory();
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function failingDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'flowcast-resume-'));
  dirs.push(dir);
  writeFileSync(join(dir, 'fail'), '');
  return dir;
}

/** Every event of the run in its log, in seq order. */
async function logOf(broker: ReturnType<typeof newBroker>, runId: string): Promise<FlowcastEvent[]> {
  return (await broker.transport.read(runId, { since: 0 })).events;
}

function expectGapless(events: FlowcastEvent[]): void {
  expect(events.map((e) => e.seq), labels(events).join(', ')).toEqual(events.map((_, i) => i + 1));
}

describe('#resume', () => {
  it('continues a sequential run that failed at step 2 from step 2: step 1 is not called again, the log goes on', async () => {
    const broker = newBroker();
    const tracking = new PipelineTrackingManager().withStorage(new InMemoryPipelineStorage());
    const { sequential } = resumePipelines(broker);
    sequential.withTracking(tracking);
    const dir = failingDir();
    const run = await sequential.kiq({ dir });
    await expect(run.waitResult()).rejects.toMatchObject({ code: ErrorCodes.PIPELINE_FAILED });
    const before = await logOf(broker, run.runId);
    expect(before[before.length - 1]?.type).toBe('PipelineErrorEvent');
    expect(calls(dir, 'rs_fetch')).toBe(1);

    unlinkSync(join(dir, 'fail'));
    const resumed = await sequential.resume(run.runId);
    expect(resumed).toMatchObject({ runId: run.runId, attempt: 2, keptSteps: ['rs_fetch'], pendingSteps: ['rs_flaky', 'rs_save'], seq: before.length + 1 });
    expect(await resumed.waitResult()).toBe('saved 6');
    expect(calls(dir, 'rs_fetch')).toBe(1);
    expect(calls(dir, 'rs_flaky')).toBe(2);
    expect(calls(dir, 'rs_save')).toBe(1);

    const events = await logOf(broker, run.runId);
    expectGapless(events);
    const after = events.slice(before.length);
    expect(after[0]).toMatchObject({ type: 'PipelineResumeEvent', attempt: 2, previous_status: 'FAILED', kept_steps: ['rs_fetch'], pending_steps: ['rs_flaky', 'rs_save'], pipeline_type: 'sequential' });
    expect(labels(after).slice(1)).toEqual([
      'StepStartEvent:rs_flaky',
      'StepCompleteEvent:rs_flaky',
      'StepStartEvent:rs_save',
      'StepCompleteEvent:rs_save',
      'PipelineCompleteEvent',
    ]);
    expect(after.filter((e) => e.type === 'StepStartEvent' && e.step_name === 'rs_fetch')).toHaveLength(0);

    const status = await tracking.getStatus(run.runId);
    expect(status).toMatchObject({ status: 'COMPLETED', result: 'saved 6', last_seq: events.length, error: null, progress: 1 });
    expect(status?.steps.map((s) => s.status)).toEqual(['COMPLETED', 'COMPLETED', 'COMPLETED']);
    expect((await run.getRun())?.attempt).toBe(2);
  });

  it('continues a DAG: completed branches are kept and feed the step that waited for them', async () => {
    const broker = newBroker();
    const { dag } = resumePipelines(broker);
    const dir = failingDir();
    const run = await dag.kiq({ dir });
    await expect(run.waitResult()).rejects.toMatchObject({ code: ErrorCodes.PIPELINE_FAILED });
    expect(calls(dir, 'rs_c')).toBe(1);
    const before = (await logOf(broker, run.runId)).length;
    unlinkSync(join(dir, 'fail'));
    const resumed = await dag.resume(run.runId);
    expect(resumed.keptSteps).toEqual(['a', 'c']);
    expect(resumed.pendingSteps).toEqual(['b', 'd']);
    expect(await resumed.waitResult()).toBe('3 items, sum 6');
    expect(calls(dir, 'rs_a')).toBe(1);
    expect(calls(dir, 'rs_c')).toBe(1);
    expect(calls(dir, 'rs_b')).toBe(2);
    const events = await logOf(broker, run.runId);
    expectGapless(events);
    expect(events[before]).toMatchObject({ type: 'PipelineResumeEvent', seq: before + 1, kept_steps: ['a', 'c'] });
  });

  it('resumes a cancelled run, and a run that fails again can be resumed again (attempt 3)', async () => {
    const broker = newBroker();
    const gate = { open: false };
    const slow = broker.task<number, number>('rs_slow', async (n, ctx) => {
      if (!gate.open) await untilAborted(ctx.signal);
      return n + 1;
    });
    const first = broker.task<number, number>('rs_first', (n) => n * 10);
    let firstCalls = 0;
    const counted = broker.task<number, number>('rs_counted', (n) => {
      firstCalls++;
      return n;
    });
    const p = new Pipeline(broker, { id: 'resume_cancel' }).callNext(counted).callNext(first).callNext(slow);
    const run = await p.kiq(4);
    for (let i = 0; i < 200 && (await run.getRun())?.steps.rs_slow?.started_at_ms == null; i++) await new Promise((r) => setTimeout(r, 5));
    expect(await run.cancel('stop')).toBe(true);
    await expect(run.waitResult()).rejects.toMatchObject({ code: ErrorCodes.CANCELLED });
    const again = await p.resume(run.runId);
    expect(again).toMatchObject({ attempt: 2, keptSteps: ['rs_counted', 'rs_first'], pendingSteps: ['rs_slow'] });
    expect(await again.cancel('stop again')).toBe(true);
    gate.open = true;
    const third = await p.resume(run.runId);
    expect(third.attempt).toBe(3);
    expect(await third.waitResult()).toBe(41);
    expect(firstCalls).toBe(1);
    const events = await logOf(broker, run.runId);
    expectGapless(events);
    expect(events.filter((e) => e.type === 'PipelineResumeEvent').map((e) => (e as { previous_status: string }).previous_status)).toEqual(['CANCELLED', 'CANCELLED']);
  });

  it('refuses a RUNNING, a COMPLETED and an unknown run with RUN_NOT_RESUMABLE, and a run of another pipeline', async () => {
    const broker = newBroker();
    const hold = broker.task<null, string>('rs_hold', async (_input, ctx) => untilAborted(ctx.signal));
    const quick = broker.task<null, string>('rs_quick', () => 'ok');
    const holding = new Pipeline(broker, { id: 'resume_hold' }).callNext(hold);
    const done = new Pipeline(broker, { id: 'resume_done' }).callNext(quick);
    const running = await holding.kiq(null);
    const completed = await done.kiq(null);
    await completed.waitResult();
    await expect(holding.resume(running.runId)).rejects.toMatchObject({ code: ErrorCodes.RUN_NOT_RESUMABLE, status: 'RUNNING' });
    await expect(done.resume(completed.runId)).rejects.toMatchObject({ code: ErrorCodes.RUN_NOT_RESUMABLE, status: 'COMPLETED' });
    await expect(done.resume('no-such-run')).rejects.toBeInstanceOf(RunNotResumableError);
    await running.cancel();
    await expect(done.resume(running.runId)).rejects.toMatchObject({ code: ErrorCodes.RUN_NOT_RESUMABLE, message: expect.stringContaining('resume_hold') as unknown });
  });

  it('applies the concurrency policy to a resume like to a start, and frees the slot at the end again', async () => {
    const broker = newBroker();
    const release = deferred();
    const gate = { fail: true, wait: false };
    const step = broker.task<number, number>('rs_gated', async (n, ctx) => {
      if (n === 0) await untilAborted(ctx.signal);
      if (gate.wait) await release.promise;
      if (gate.fail) throw new Error('fail');
      return n;
    });
    const p = new Pipeline(broker, { id: 'resume_guarded', concurrency: { limit: 1 } }).callNext(step);
    const failed = await p.kiq(1);
    await expect(failed.waitResult()).rejects.toBeDefined();
    const holder = await p.kiq(0);
    await expect(p.resume(failed.runId)).rejects.toBeInstanceOf(AlreadyRunningError);
    await expect(p.resume(failed.runId)).rejects.toMatchObject({ runId: holder.runId });
    await holder.cancel();
    gate.fail = false;
    gate.wait = true;
    const resumed = await p.resume(failed.runId);
    // The resumed run holds the slot: a start is refused naming it.
    await expect(p.kiq(5)).rejects.toMatchObject({ runId: failed.runId });
    gate.wait = false;
    release.resolve();
    expect(await resumed.waitResult()).toBe(1);
    const next = await p.kiq(2);
    expect(await next.waitResult()).toBe(2);
  });
});
