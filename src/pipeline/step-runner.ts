/**
 * Running a step job: the transition that starts the call, the call of the task (with its
 * span, abort handle and `ctx.log`/`ctx.progress` sink), and the transition that records
 * its end. With a broker that chains steps, the next step this process may run right away
 * starts in that same transition and runs here, inside the same broker job.
 *
 * Written without async functions: with an in-process store and broker every transition
 * is synchronous, and each promise saved is time saved per step.
 */
import { FlowcastError, ErrorCodes, describeError } from '../core/errors.js';
import { CallControl, executeCall } from '../core/execute.js';
import type { JsonValue } from '../core/json.js';
import type { EventDraft } from '../events/types.js';
import type { StepJob, StepJobFailure } from './broker.js';
import type { LocalCalls } from './local-calls.js';
import type { Transition } from './run-state.js';
import { timeoutJobId, timerOf } from './run-timeout.js';
import type { StartPrimer } from './start-primer.js';
import { StepSink, type SinkHost } from './step-sink.js';
import { startStepSpan } from './tracing.js';
import { andThen, type Done, type TransitionRunner } from './transition-runner.js';
import { NON_RETRYABLE_CODES, jobFailed, jobStarted, jobSucceeded, startEventDraft, type Dispatch, type JobFailure } from './transitions.js';

/** What the end of a call leads to: the jobs to send, and the next call to run here (step chaining). */
interface Chained {
  dispatches: Dispatch[];
  chained: StepJob | null;
}

/** Settles with `failure` once `pending` (if any) settled. */
function failedWith(pending: Promise<unknown> | undefined, failure: StepJobFailure): Promise<StepJobFailure> {
  return pending === undefined ? Promise.resolve(failure) : pending.then(() => failure);
}

/** Runs the step jobs a broker gives this process (see the module comment). */
export class StepRunner {
  readonly #runner: TransitionRunner;
  readonly #calls: LocalCalls;
  readonly #primer: StartPrimer;
  readonly #sinks: SinkHost;

  /** @param sinks where the calls' `ctx.log()` and `ctx.progress()` events are appended (the engine) */
  constructor(runner: TransitionRunner, calls: LocalCalls, primer: StartPrimer, sinks: SinkHost) {
    this.#runner = runner;
    this.#calls = calls;
    this.#primer = primer;
    this.#sinks = sinks;
  }

  /**
   * Processes one step job. `carrier`: the id of the broker job it runs inside. Settles
   * with the call's failure when it failed (the broker may keep the job as failed).
   */
  run(job: StepJob, carrier: string): Promise<StepJobFailure | void> | undefined {
    const runner = this.#runner;
    runner.delivered(job);
    if (!this.#primer.wants(job.pipeline_id, job.run_id)) {
      return andThen(runner.apply(job.run_id, (r) => jobStarted(r, job, Date.now(), carrier)), (started) => this.#execute(job, started, carrier, 0));
    }
    let start: EventDraft | null = null;
    const transition = runner.apply(job.run_id, (r) => {
      start = startEventDraft(r, r.started_at_ms);
      return jobStarted(r, job, Date.now(), carrier);
    });
    return andThen(transition, (started) => {
      if (start !== null && started !== null) this.#primer.prime(job.pipeline_id, job.run_id, start);
      return this.#execute(job, started, carrier, 0);
    });
  }

  /**
   * Runs a started call. `carrier`: the broker job it runs inside; `depth`: how many
   * calls that job ran before this one (step chaining).
   */
  #execute(job: StepJob, started: Done<boolean>, carrier: string, depth: number): Promise<StepJobFailure | void> | undefined {
    if (started === null || !started.value) return undefined;
    const broker = this.#runner.broker;
    const def = broker.getTask(job.task);
    if (def === undefined) {
      const known = broker.taskNames().join(', ') || 'none';
      const failure = { error: `UnknownTaskError: task "${job.task}" is not registered on this worker (registered: ${known})`, retryable: false };
      startStepSpan(job).end(new FlowcastError(ErrorCodes.UNKNOWN_TASK, failure.error));
      return failedWith(this.#finish(job, null, failure, carrier, depth), { step: job.step, attempt: job.attempt, error: failure.error });
    }
    const span = startStepSpan(job);
    const control = new CallControl();
    this.#calls.track(job.run_id, control);
    const sink = new StepSink(this.#sinks, job);
    const info = {
      runId: job.run_id,
      pipelineId: job.pipeline_id,
      stepName: job.step,
      taskId: job.job_id,
      attempt: job.attempt,
      item: job.item ?? null,
      timeoutMs: job.timeout_ms ?? def.options.timeoutMs,
    };
    const finish = (result: JsonValue, failure: JobFailure | null): Promise<StepJobFailure | void> | undefined => {
      this.#calls.untrack(control);
      const pending = sink.pending;
      if (pending === null) return this.#finish(job, result, failure, carrier, depth);
      return pending.then(() => this.#finish(job, result, failure, carrier, depth));
    };
    return span.run(() => executeCall(def, job.input, info, sink, control)).then(
      (result) => {
        span.end();
        return finish(result, null);
      },
      (error: unknown) => {
        span.end(error);
        const code = error instanceof FlowcastError ? error.code : undefined;
        const failure = { error: describeError(error), retryable: code === undefined || !NON_RETRYABLE_CODES.has(code) };
        // No call is chained after a failed one (see #finish): this failure is the job's last word.
        return failedWith(finish(null, failure), { step: job.step, attempt: job.attempt, error: failure.error });
      },
    );
  }

  /**
   * Records the end of a call. With a broker that chains steps, a next step of the run
   * that this process may run right away starts in the same transition (its
   * `StepStartEvent` follows the end in the log) and runs here, inside the same broker
   * job, instead of going through the broker.
   */
  #finish(job: StepJob, result: JsonValue, failure: JobFailure | null, carrier: string, depth: number): Promise<StepJobFailure | void> | undefined {
    let timer: string | null = timeoutJobId(job.run_id);
    const runner = this.#runner;
    const broker = runner.broker;
    // The run state may keep the record it writes (RedisRunState does): the task must not
    // be able to change it later through the object it returned.
    if (typeof result === 'object' && result !== null && broker.enqueueSync === undefined) result = structuredClone(result);
    // Nothing is chained after a failed call: the retry or the next steps go through the
    // broker, so the failed call is the last of its broker job (which the broker may keep as failed).
    const chainable = broker.chainable === undefined || failure !== null ? null : (d: Dispatch): boolean => d.delayMs === 0 && d.job.item === undefined && broker.chainable?.(d.job, depth + 1) === true;
    const done = runner.apply(job.run_id, (r): Transition<Chained> => {
      timer = timerOf(r);
      const now = Date.now();
      const ended = failure === null ? jobSucceeded(r, job, result, now) : jobFailed(r, job, failure, now);
      const next = chainable === null ? -1 : ended.value.findIndex(chainable);
      if (next < 0) return { value: { dispatches: ended.value, chained: null }, events: ended.events };
      const chained = (ended.value[next] as Dispatch).job;
      const started = jobStarted(r, chained, now, carrier);
      if (!started.value) return { value: { dispatches: ended.value, chained: null }, events: ended.events };
      const dispatches = ended.value.filter((_, i) => i !== next);
      return { value: { dispatches, chained }, events: [...ended.events, ...started.events] };
    });
    return andThen(done, (d) => {
      if (d === null) return undefined;
      const after = runner.followUp(job.run_id, d.events, d.value.dispatches, d.delivered, timer);
      const chained = d.value.chained;
      if (chained === null) return after;
      // Its input may be part of the record the run state keeps (a step's result, the run's input): a copy.
      if (typeof chained.input === 'object' && chained.input !== null) chained.input = structuredClone(chained.input);
      const ran = this.#execute(chained, { value: true, events: [], delivered: undefined }, carrier, depth + 1);
      if (after === undefined) return ran;
      if (ran === undefined) return after;
      return Promise.all([after, ran]).then(([, failed]) => failed);
    });
  }
}
