/**
 * The run-state machine (src/pipeline/state-machine.ts), table-driven: every row moves as
 * it says, every (state, move) pair the table lacks is refused, docs/events.md prints the
 * same tables row by row, and real runs on the in-memory broker take the run rows with the
 * events they name.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ErrorCodes } from '../src/core/errors.js';
import type { FlowcastEvent } from '../src/events/types.js';
import { InMemoryBroker } from '../src/pipeline/memory-broker.js';
import { Pipeline } from '../src/pipeline/pipeline.js';
import type { RunStatus, StepPhase } from '../src/pipeline/run-state.js';
import {
  RUN_TRANSITIONS,
  STEP_TRANSITIONS,
  moveRun,
  moveStep,
  nextRunStatus,
  nextStepPhase,
  runFailureText,
  skipReasonText,
  type RunMove,
  type StepMove,
  type TransitionRow,
} from '../src/pipeline/state-machine.js';

const PHASES: StepPhase[] = ['PENDING', 'READY', 'ACTIVE', 'COMPLETED', 'FAILED', 'SKIPPED', 'CANCELLED'];
const STEP_MOVES: StepMove[] = ['ready', 'activate', 'complete', 'fail', 'skip', 'stop', 'reset'];
const STATUSES: RunStatus[] = ['RUNNING', 'COMPLETED', 'FAILED', 'CANCELLED'];
const RUN_MOVES: RunMove[] = ['complete', 'fail', 'cancel', 'resume'];

/** The rows of the markdown table that follows `heading` in docs/events.md. */
function docTable(heading: string): string[][] {
  const text = readFileSync(new URL('../docs/events.md', import.meta.url), 'utf8');
  const from = text.indexOf(heading);
  expect(from, heading).toBeGreaterThan(-1);
  const lines = text.slice(from).split('\n');
  const start = lines.findIndex((l) => l.startsWith('| from |'));
  const rows: string[][] = [];
  for (const line of lines.slice(start + 2)) {
    if (!line.startsWith('|')) break;
    rows.push(line.split('|').slice(1, -1).map((c) => c.trim()));
  }
  return rows;
}

function asDoc(rows: readonly TransitionRow<string, string>[]): string[][] {
  return rows.map((r) => [r.from, r.on, r.to, r.emits ?? '-']);
}

describe('state machine tables', () => {
  it.each(STEP_TRANSITIONS.map((r) => [r.from, r.on, r.to] as const))('step %s --%s--> %s', (from, on, to) => {
    const step = { phase: from };
    moveStep(step, on, 's');
    expect(step.phase).toBe(to);
  });

  it.each(RUN_TRANSITIONS.map((r) => [r.from, r.on, r.to] as const))('run %s --%s--> %s', (from, on, to) => {
    const run = { status: from, run_id: 'r' };
    moveRun(run, on);
    expect(run.status).toBe(to);
  });

  it('refuses every step move the table lacks, and every run move', () => {
    for (const phase of PHASES) {
      for (const move of STEP_MOVES) {
        if (nextStepPhase(phase, move) !== null) continue;
        const step = { phase };
        expect(() => moveStep(step, move, 's'), `${phase} ${move}`).toThrow(expect.objectContaining({ code: ErrorCodes.INVALID_STATE }) as Error);
        expect(step.phase).toBe(phase);
      }
    }
    for (const status of STATUSES) {
      for (const move of RUN_MOVES) {
        if (nextRunStatus(status, move) !== null) continue;
        expect(() => moveRun({ status, run_id: 'r' }, move), `${status} ${move}`).toThrow(/no move/);
      }
    }
    // Ended phases and statuses only leave by a resume.
    for (const phase of ['COMPLETED', 'FAILED', 'SKIPPED', 'CANCELLED'] as const) {
      expect(STEP_MOVES.filter((m) => nextStepPhase(phase, m) !== null).every((m) => m === 'reset')).toBe(true);
    }
    expect(STEP_MOVES.filter((m) => nextStepPhase('COMPLETED', m) !== null)).toEqual([]);
  });

  it('docs/events.md prints the same tables, row by row', () => {
    expect(docTable('Runs:')).toEqual(asDoc(RUN_TRANSITIONS));
    expect(docTable('Steps (`ready`')).toEqual(asDoc(STEP_TRANSITIONS));
  });

  it.each([
    [{ kind: 'dependency_failed', step: 'fetch' } as const, 'dependency "fetch" failed'],
    [{ kind: 'dependency_skipped', step: 'fetch' } as const, 'dependency "fetch" was skipped'],
    [{ kind: 'run_failed_at', step: 'fetch' } as const, 'pipeline failed at step "fetch"'],
    [{ kind: 'run_cancelled' } as const, 'run cancelled'],
    [{ kind: 'run_timed_out' } as const, 'pipeline timed out'],
  ])('skip reason %o reads %s', (reason, text) => {
    expect(skipReasonText(reason)).toBe(text);
  });

  it('run failures read as the taskiq-flow guide prints them', () => {
    expect(runFailureText({ kind: 'step_failed', step: 'validate', error: 'ValueError: bad' })).toBe("Pipeline failed at step 'validate': ValueError: bad");
    expect(runFailureText({ kind: 'steps_failed', steps: [{ step: 'a', error: 'E: 1' }, { step: 'b', error: 'E: 2' }] })).toBe("Pipeline failed at steps 'a': E: 1; 'b': E: 2");
    expect(runFailureText({ kind: 'timed_out', pipelineId: 'etl', afterMs: 5000 })).toBe('TimeoutError: pipeline "etl" timed out after 5000ms');
  });
});

describe('real runs take the run rows', () => {
  async function terminal(broker: InMemoryBroker, runId: string): Promise<FlowcastEvent[]> {
    return (await broker.transport.read(runId, { since: 0 })).events.filter((e) => e.type.startsWith('Pipeline'));
  }

  it('complete, fail (a step, a timeout), cancel and resume emit the events the table names', async () => {
    const broker = new InMemoryBroker();
    try {
      let failing = true;
      const ok = broker.task('sm_ok', (n: number) => n + 1);
      const flaky = broker.task('sm_flaky', (n: number) => {
        if (failing) throw new Error('boom');
        return n;
      });
      const slow = broker.task('sm_slow', (_n: number, ctx) => new Promise<number>((_, reject) => ctx.signal.addEventListener('abort', () => reject(new Error('aborted')))));
      const done = await new Pipeline(broker, { id: 'sm_done' }).callNext(ok).kiq(1);
      expect(await done.waitResult()).toBe(2);
      const failed = await new Pipeline(broker, { id: 'sm_failed' }).callNext(ok).callNext(flaky).kiq(1);
      await expect(failed.waitResult()).rejects.toMatchObject({ code: ErrorCodes.PIPELINE_FAILED });
      const timed = await new Pipeline(broker, { id: 'sm_timed', timeoutMs: 50 }).callNext(slow).kiq(1);
      await expect(timed.waitResult()).rejects.toBeDefined();
      const cancelled = await new Pipeline(broker, { id: 'sm_cancelled' }).callNext(slow).kiq(1);
      await cancelled.cancel('stop');
      await expect(cancelled.waitResult()).rejects.toMatchObject({ code: ErrorCodes.CANCELLED });

      expect((await terminal(broker, done.runId)).map((e) => e.type)).toEqual(['PipelineStartEvent', 'PipelineCompleteEvent']);
      const fail = await terminal(broker, failed.runId);
      expect(fail.map((e) => e.type)).toEqual(['PipelineStartEvent', 'PipelineErrorEvent']);
      expect(fail[1]).toMatchObject({ error: "Pipeline failed at step 'sm_flaky': Error: boom", step_name: 'sm_flaky' });
      expect((await terminal(broker, timed.runId))[1]).toMatchObject({ type: 'PipelineErrorEvent', error: 'TimeoutError: pipeline "sm_timed" timed out after 50ms' });
      expect((await terminal(broker, cancelled.runId))[1]).toMatchObject({ type: 'PipelineCancelledEvent', reason: 'stop' });

      failing = false;
      const resumed = await new Pipeline(broker, { id: 'sm_failed' }).callNext(ok).callNext(flaky).resume(failed.runId);
      expect(await resumed.waitResult()).toBe(2);
      expect((await terminal(broker, failed.runId)).map((e) => e.type)).toEqual(['PipelineStartEvent', 'PipelineErrorEvent', 'PipelineResumeEvent', 'PipelineCompleteEvent']);
    } finally {
      await broker.close();
    }
  });
});
