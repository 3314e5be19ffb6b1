/**
 * What a caller does to a run as a whole: start it, resume it after it failed or was
 * cancelled, cancel it. Each is one transition of the run's record (`transitions.ts`,
 * `resume.ts`) applied through the {@link TransitionRunner}, with what goes around it:
 * the run's span, its concurrency slot and its timeout job.
 */
import { randomUUID } from 'node:crypto';
import { FlowcastError, ErrorCodes, InvalidArgumentError, RunNotResumableError } from '../core/errors.js';
import { assertJson, type JsonValue } from '../core/json.js';
import { show } from '../core/validate.js';
import type { FlowcastEvent } from '../events/types.js';
import type { PipelinePlan } from './plan.js';
import { notResumable, resumeRun, type ResumeOutcome, type ResumedRun } from './resume.js';
import { claimResumeSlot } from './run-guard.js';
import type { RunRecord, Transition } from './run-state.js';
import { sendRunTimeout, timeoutJobId, timerOf } from './run-timeout.js';
import { SlotWatch, settleSlot } from './slot-watch.js';
import type { RunSpans } from './tracing.js';
import type { TransitionRunner } from './transition-runner.js';
import { beginRun, cancelRun, newRunRecord } from './transitions.js';

/** Starts, resumes and cancels runs (see the module comment); the engine's `startRun`, `resume` and `cancel`. */
export class RunControl {
  readonly #runner: TransitionRunner;
  readonly #spans: RunSpans;

  /** @param spans the spans of the runs this process starts */
  constructor(runner: TransitionRunner, spans: RunSpans) {
    this.#runner = runner;
    this.#spans = spans;
  }

  /**
   * Starts a run of `plan`; resolves with its id once the run is stored and its first steps are sent. See `RunEngine.startRun`.
   * `cancelled`: a queued start cancelled before it ran (./run-queue.ts): the run is created
   * already CANCELLED with this reason, and no step is sent.
   */
  async start(plan: PipelinePlan, input: JsonValue, runId: string = randomUUID(), slot?: RunRecord['slot'], cancelled?: string): Promise<string> {
    assertJson(input, `Input of pipeline "${plan.pipeline_id}"`);
    const runner = this.#runner;
    const broker = runner.broker;
    const now = Date.now();
    const rec = newRunRecord(runId, plan, input, now);
    if (slot !== undefined) rec.slot = slot;
    const traced = this.#spans.open(plan.pipeline_id, plan.pipeline_type, runId);
    const carrier = traced instanceof Promise ? await traced : traced;
    if (carrier !== undefined) rec.trace = carrier;
    const { value: dispatches, events: drafts } = beginRun(rec, now);
    if (cancelled !== undefined) {
      dispatches.length = 0;
      drafts.push(...cancelRun(rec, cancelled, now).events);
    }
    let created: { result: FlowcastEvent[]; delivered: Promise<void> | undefined };
    try {
      created = await runner.order.run(runId, () => broker.runState.create(rec, drafts), (e) => e);
    } catch (error) {
      this.#spans.failed(runId, error);
      throw error;
    }
    const { result: events, delivered } = created;
    if (slot !== undefined && rec.status !== 'RUNNING') settleSlot(broker, runId, slot, true, (e, where) => runner.report(e, where));
    const timed = plan.timeout_ms !== undefined && cancelled === undefined;
    if (timed) await sendRunTimeout(runner, timeoutJobId(runId), runId, plan.timeout_ms as number);
    await runner.followUp(runId, events, dispatches, delivered, timed ? timeoutJobId(runId) : null);
    return runId;
  }

  /** Resumes a FAILED or CANCELLED run as a new attempt of the same run. See `RunEngine.resume`. */
  async resume(runId: string, options: { limit?: number; pipelineId?: string } = {}): Promise<ResumedRun> {
    if (typeof runId !== 'string' || runId === '') throw new InvalidArgumentError(`resume(runId): runId must be a non-empty string, received ${show(runId)}`);
    const runner = this.#runner;
    const broker = runner.broker;
    const store = broker.runState;
    const rec = await store.get(runId);
    if (rec === null) throw new RunNotResumableError(`Run "${runId}" cannot be resumed: no such run (or its record expired)`, runId, null);
    if (options.pipelineId !== undefined && rec.pipeline_id !== options.pipelineId) {
      throw new RunNotResumableError(`Run "${runId}" cannot be resumed by pipeline "${options.pipelineId}": it is a run of "${rec.pipeline_id}"`, runId, rec.status);
    }
    if (rec.status !== 'FAILED' && rec.status !== 'CANCELLED') throw notResumable(runId, rec.status);
    if (store.reopen === undefined) throw new RunNotResumableError(`Run "${runId}" cannot be resumed: the run state of this broker (${broker.kind}) cannot reopen runs`, runId, rec.status);
    const slot = rec.slot;
    if (slot !== undefined) await claimResumeSlot(broker, slot, runId, rec.pipeline_id, options.limit ?? slot.limit ?? 1);
    const release = async (): Promise<void> => {
      if (slot !== undefined) await broker.slots?.release(slot.group, runId);
    };
    let timer: string | null = null;
    let status: RunRecord['status'] = 'RUNNING';
    const transition = (r: RunRecord): Transition<ResumeOutcome> => {
      const t = resumeRun(r, Date.now());
      timer = timerOf(r);
      status = r.status;
      return t;
    };
    let done: { result: { value: ResumeOutcome; events: FlowcastEvent[] }; delivered: Promise<void> | undefined };
    try {
      const reopen = store.reopen.bind(store);
      done = await runner.order.run(runId, () => reopen<ResumeOutcome>(runId, transition), (d) => d.events);
    } catch (error) {
      await release();
      if (error instanceof FlowcastError && error.code === ErrorCodes.NOT_FOUND) throw new RunNotResumableError(`Run "${runId}" cannot be resumed: its record expired`, runId, null);
      throw error;
    }
    const { result, delivered } = done;
    const outcome = result.value;
    if (outcome.refused !== null) {
      // Another process resumed it first (or it changed meanwhile).
      await release();
      await delivered;
      throw notResumable(runId, outcome.refused);
    }
    if (slot !== undefined) settleSlot(broker, runId, slot, status !== 'RUNNING', (e, where) => runner.report(e, where));
    if (timer !== null && status === 'RUNNING') await sendRunTimeout(runner, timer, runId, rec.plan.timeout_ms as number);
    await runner.followUp(runId, result.events, outcome.dispatches, delivered, timer);
    const resumed = result.events.find((e) => e.type === 'PipelineResumeEvent');
    return { runId, pipelineId: rec.pipeline_id, attempt: outcome.attempt, keptSteps: outcome.kept, pendingSteps: outcome.pending, seq: resumed?.seq ?? 0 };
  }

  /** Cancels a run; `false` when it had ended. See `RunEngine.cancel`. */
  async cancel(runId: string, reason = 'cancelled by request'): Promise<boolean> {
    if (typeof reason !== 'string') throw new TypeError('cancel(reason): reason must be a string');
    const runner = this.#runner;
    let timer: string | null = timeoutJobId(runId);
    const seen = new SlotWatch();
    const transition = seen.wrap((r: RunRecord): Transition<boolean> => {
      timer = timerOf(r);
      return cancelRun(r, reason, Date.now());
    });
    const { result, delivered } = await runner.order.run(runId, () => runner.broker.runState.transition(runId, transition), (d) => d.events);
    seen.settle(runner.broker, runId, (e, where) => runner.report(e, where));
    if (result.value && result.events.length > 0) await runner.followUp(runId, result.events, [], delivered, timer);
    else await delivered;
    return result.value;
  }
}
