import { randomUUID } from 'node:crypto';
import { defaultLogger, type Logger } from '../core/logger.js';
import { logError } from '../core/log-throttle.js';
import { FlowcastError, ErrorCodes, CancelledError, InvalidArgumentError, RunNotResumableError, describeError, toError } from '../core/errors.js';
import { show } from '../core/validate.js';
import { assertJson, type JsonValue } from '../core/json.js';
import type { Broker, BrokerJob, ControlJob, StepJob, StepJobFailure } from './broker.js';
import { CallControl, executeCall } from '../core/execute.js';
import { EVENT_SCHEMA_VERSION, isTerminalEvent, type EventDraft, type FlowcastEvent } from '../events/types.js';
import type { PipelinePlan } from './plan.js';
import type { RunRecord, Transition } from './run-state.js';
import { EventDelivery, type EventDispatcher, type EventRecorder } from './delivery.js';
import { waitForRun } from './run-wait.js';
import { SeqOrder } from './seq-order.js';
import { StepSink } from './step-sink.js';
import { SlotWatch, settleSlot } from './slot-watch.js';
import { RunSpans, startStepSpan } from './tracing.js';
import { claimResumeSlot } from './run-guard.js';
import { NON_RETRYABLE_CODES, beginRun, cancelRun, jobFailed, jobStarted, jobSucceeded, newRunRecord, startEventDraft, timeoutRun, type Dispatch, type JobFailure } from './transitions.js';
import { registerQueueStarter } from './run-queue.js';
import { notResumable, resumeRun, type ResumeOutcome, type ResumedRun } from './resume.js';

export type { EventDispatcher, EventRecorder } from './delivery.js';

const engines = new WeakMap<Broker, RunEngine>();

/** The run engine of a broker (created on first use; it installs itself as the broker's run processor). */
export function getEngine(broker: Broker): RunEngine {
  let engine = engines.get(broker);
  if (engine === undefined) {
    engine = new RunEngine(broker);
    engines.set(broker, engine);
  }
  return engine;
}

/** The run engine of a broker when it has one (none is created). */
export function existingEngine(broker: Broker): RunEngine | undefined {
  return engines.get(broker);
}

/** The id of the run's pending `run_timeout` job (sent when its attempt began), or `null` when its plan has no run timeout. */
function timerOf(r: RunRecord): string | null {
  return r.plan.timeout_ms === undefined ? null : timeoutJobId(r.run_id, r.attempt);
}

/** Runs remembered as primed (see `EventRecorder.primeStart`). */
const PRIMED_RUNS = 10_000;

/** One per attempt of the run: a resumed run's deadline counts from its resume. */
function timeoutJobId(runId: string, attempt = 1): string {
  return attempt === 1 ? `run-timeout:${runId}` : `run-timeout:${runId}:${attempt}`;
}

/**
 * Advances runs. Holds no run in a closure: every step is a broker job with JSON input,
 * every change of a run is an atomic transition of its record in the broker's
 * `runState`, whose events land in the run's log in the same step. This process only
 * keeps what is local by nature: the abort handles of the calls it is running, and the
 * per-run order in which it hands events to tracking, hooks and live subscribers.
 */
export class RunEngine {
  readonly broker: Broker;
  /** Calls running in this process, and their run: at most the broker's concurrency. */
  readonly #calls = new Map<CallControl, string>();
  /** Puts each run's events in seq order before they are handed on, when the calls that gave their seqs ran at once. */
  /** Hands each run's events to tracking, hooks and live subscribers, in seq order (delivery.ts). */
  readonly #delivery: EventDelivery;
  readonly #order = new SeqOrder((events) => this.#delivery.deliver((events[0] as FlowcastEvent).pipeline_id, (events[0] as FlowcastEvent).run_id, events));
  /** Runs this process did not start whose rebuilt start its recorders were given (bounded, oldest out first). */
  readonly #primed = new Set<string>();
  /** Delayed jobs (retries) this process sent and that were not delivered yet, per run: dropped when the run ends. */
  readonly #delayed = new Map<string, Set<string>>();
  #onError: (error: Error, where: string) => void = (error, where) =>
    logError((this.broker as { logger?: Logger }).logger ?? defaultLogger(), error, `run engine: ${where}`);
  /** Spans of the runs this process started (OpenTelemetry, see tracing.ts). */
  readonly #runSpans: RunSpans;

  constructor(broker: Broker) {
    this.broker = broker;
    this.#delivery = new EventDelivery(broker.transport, (error, where) => this.#onError(error, where));
    this.#runSpans = new RunSpans(broker.transport, (error, where) => this.#onError(error, where));
    broker.setRunProcessor((job, carrier) => this.process(job, carrier));
    registerQueueStarter(broker, (plan, input, runId, slot, cancelled) => this.startRun(plan, input, runId, slot, cancelled));
  }

  /** Where engine-level failures (a recorder that throws, a broker that refuses a job) are reported. */
  set onError(handler: (error: Error, where: string) => void) {
    this.#onError = handler;
  }

  /** Attaches tracking (recorders) and hooks (dispatchers) to every run of `pipelineId` in this process. */
  bind(pipelineId: string, recorders: Iterable<EventRecorder>, dispatchers: Iterable<EventDispatcher>): void {
    this.#delivery.bind(pipelineId, recorders, dispatchers);
  }

  /**
   * Starts a run of `plan`; resolves with its id once the run is stored and its first steps are sent.
   * `cancelled`: a queued start cancelled before it ran (./run-queue.ts): the run is created
   * already CANCELLED with this reason, and no step is sent.
   */
  async startRun(plan: PipelinePlan, input: JsonValue, runId: string = randomUUID(), slot?: RunRecord['slot'], cancelled?: string): Promise<string> {
    assertJson(input, `Input of pipeline "${plan.pipeline_id}"`);
    const now = Date.now();
    const rec = newRunRecord(runId, plan, input, now);
    if (slot !== undefined) rec.slot = slot;
    const traced = this.#runSpans.open(plan.pipeline_id, plan.pipeline_type, runId);
    const carrier = traced instanceof Promise ? await traced : traced;
    if (carrier !== undefined) rec.trace = carrier;
    const { value: dispatches, events: drafts } = beginRun(rec, now);
    if (cancelled !== undefined) {
      dispatches.length = 0;
      drafts.push(...cancelRun(rec, cancelled, now).events);
    }
    let created: { result: FlowcastEvent[]; delivered: Promise<void> | undefined };
    try {
      created = await this.#order.run(runId, () => this.broker.runState.create(rec, drafts), (e) => e);
    } catch (error) {
      this.#runSpans.failed(runId, error);
      throw error;
    }
    const { result: events, delivered } = created;
    if (slot !== undefined && rec.status !== 'RUNNING') settleSlot(this.broker, runId, slot, true, this.#onError);
    if (plan.timeout_ms !== undefined && cancelled === undefined) {
      const job: ControlJob = { kind: 'run_timeout', job_id: timeoutJobId(runId), run_id: runId };
      await this.broker.enqueue(job, { delayMs: plan.timeout_ms });
    }
    await this.#after(runId, events, dispatches, delivered, plan.timeout_ms === undefined || cancelled !== undefined ? null : timeoutJobId(runId));
    return runId;
  }

  /**
   * Ends the spans of the runs this process started and still follows, as `RUNNING`
   * (a broker that closes calls it: their end will not reach this process).
   */
  endRunSpans(): void {
    this.#runSpans.closeAll();
  }

  /**
   * Resumes a FAILED or CANCELLED run as a new attempt of the same run: the steps that
   * completed keep their results and are not run again, the others run from the first
   * that did not finish; a `PipelineResumeEvent` continues the run's log (next seq). A
   * run under a concurrency policy takes a slot of its group again, as a start does
   * (`limit`: the policy's, @default the one recorded when the run started).
   *
   * Throws a `RunNotResumableError` for a run that is RUNNING or COMPLETED, unknown, or
   * whose record or log is gone, and an `AlreadyRunningError` when its concurrency group is full.
   */
  async resume(runId: string, options: { limit?: number; pipelineId?: string } = {}): Promise<ResumedRun> {
    if (typeof runId !== 'string' || runId === '') throw new InvalidArgumentError(`resume(runId): runId must be a non-empty string, received ${show(runId)}`);
    const store = this.broker.runState;
    const rec = await store.get(runId);
    if (rec === null) throw new RunNotResumableError(`Run "${runId}" cannot be resumed: no such run (or its record expired)`, runId, null);
    if (options.pipelineId !== undefined && rec.pipeline_id !== options.pipelineId) {
      throw new RunNotResumableError(`Run "${runId}" cannot be resumed by pipeline "${options.pipelineId}": it is a run of "${rec.pipeline_id}"`, runId, rec.status);
    }
    if (rec.status !== 'FAILED' && rec.status !== 'CANCELLED') throw notResumable(runId, rec.status);
    if (store.reopen === undefined) throw new RunNotResumableError(`Run "${runId}" cannot be resumed: the run state of this broker (${this.broker.kind}) cannot reopen runs`, runId, rec.status);
    const slot = rec.slot;
    if (slot !== undefined) await claimResumeSlot(this.broker, slot, runId, rec.pipeline_id, options.limit ?? slot.limit ?? 1);
    const release = async (): Promise<void> => {
      if (slot !== undefined) await this.broker.slots?.release(slot.group, runId);
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
      done = await this.#order.run(runId, () => reopen<ResumeOutcome>(runId, transition), (d) => d.events);
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
    if (slot !== undefined) settleSlot(this.broker, runId, slot, status !== 'RUNNING', this.#onError);
    if (timer !== null && status === 'RUNNING') {
      const job: ControlJob = { kind: 'run_timeout', job_id: timer, run_id: runId };
      await this.broker.enqueue(job, { delayMs: rec.plan.timeout_ms as number });
    }
    await this.#after(runId, result.events, outcome.dispatches, delivered, timer);
    const resumed = result.events.find((e) => e.type === 'PipelineResumeEvent');
    return { runId, pipelineId: rec.pipeline_id, attempt: outcome.attempt, keptSteps: outcome.kept, pendingSteps: outcome.pending, seq: resumed?.seq ?? 0 };
  }

  /** Cancels a run: running calls see their signal aborted, the run ends as CANCELLED. `false` when it had ended. */
  async cancel(runId: string, reason = 'cancelled by request'): Promise<boolean> {
    if (typeof reason !== 'string') throw new TypeError('cancel(reason): reason must be a string');
    let timer: string | null = timeoutJobId(runId);
    const seen = new SlotWatch();
    const transition = seen.wrap((r: RunRecord): Transition<boolean> => {
      timer = timerOf(r);
      return cancelRun(r, reason, Date.now());
    });
    const { result, delivered } = await this.#order.run(runId, () => this.broker.runState.transition(runId, transition), (d) => d.events);
    seen.settle(this.broker, runId, this.#onError);
    if (result.value && result.events.length > 0) await this.#after(runId, result.events, [], delivered, timer);
    else await delivered;
    return result.value;
  }

  /**
   * Processes one `step` or `run_timeout` job (installed as the broker's run processor).
   * `carrier`: the id of the broker job this step job runs inside, when it is not the
   * step job's own (a chained call a broker retries, see `Broker.chainable`).
   */
  process(job: BrokerJob, carrier?: string): Promise<StepJobFailure | void> | undefined {
    if (job.kind === 'step') return this.#runStep(job, carrier ?? job.job_id);
    if (job.kind === 'run_timeout') return this.#runTimeout(job);
    return undefined;
  }

  /**
   * Resolves with the run's result once it completed; rejects when it failed, was
   * cancelled, or after `timeoutMs`. Works for runs started anywhere: it listens to the
   * transport and reads the stored state.
   */
  waitForRun(runId: string, timeoutMs?: number): Promise<JsonValue> {
    return waitForRun(this.broker, (id) => this.flushed(id), runId, timeoutMs);
  }


  /**
   * Applies a transition a broker decided on (a step job delivered again after its
   * worker died, a job the broker gave up on) and hands its events on like the engine's
   * own: tracking, hooks and live subscribers in the run's order, then the jobs that
   * `dispatchesOf` returns. Resolves with the transition's value, `null` for an unknown run.
   */
  async applyTransition<T>(
    pipelineId: string,
    runId: string,
    fn: (r: RunRecord) => Transition<T>,
    dispatchesOf: (value: T) => Dispatch[] = () => [],
  ): Promise<T | null> {
    let timer: string | null = timeoutJobId(runId);
    const done = await this.#transition(runId, (r) => {
      timer = timerOf(r);
      return fn(r);
    });
    if (done === null) return null;
    await this.#after(runId, done.events, dispatchesOf(done.value), done.delivered, timer);
    return done.value;
  }

  /** A copy of a run's record (status, steps, result), or `null`. */
  getRun(runId: string): Promise<RunRecord | null> {
    return this.broker.runState.get(runId);
  }

  /** Resolves once this process has handed every event of the run on (tracking, hooks, subscribers). */
  async flushed(runId: string): Promise<void> {
    await this.#order.settled(runId);
    await this.#delivery.settled(runId);
  }

  #runTimeout(job: ControlJob): Promise<void> | undefined {
    // The deadline of an earlier attempt (a resumed run) is no longer the run's.
    const transition = (r: RunRecord): Transition<boolean> => (timerOf(r) === job.job_id ? timeoutRun(r, Date.now()) : { value: false, events: [] });
    return then(this.#transition(job.run_id, transition), (done) => {
      if (done === null) return undefined;
      if (!done.value || done.events.length === 0) return done.delivered;
      return this.#after(job.run_id, done.events, [], done.delivered, job.job_id);
    });
  }

  // The step path is written without async functions: with an in-process store and
  // broker every transition is synchronous, and each promise saved is time saved per step.
  #runStep(job: StepJob, carrier: string): Promise<StepJobFailure | void> | undefined {
    if (this.#delayed.size !== 0) this.#delivered(job);
    if (!this.#wantsStart(job.pipeline_id, job.run_id)) {
      return then(this.#transition(job.run_id, (r) => jobStarted(r, job, Date.now(), carrier)), (started) => this.#execute(job, started, carrier, 0));
    }
    let start: EventDraft | null = null;
    const transition = this.#transition(job.run_id, (r) => {
      start = startEventDraft(r, r.started_at_ms);
      return jobStarted(r, job, Date.now(), carrier);
    });
    return then(transition, (started) => {
      if (start !== null && started !== null) this.#primeStart(job.pipeline_id, job.run_id, start);
      return this.#execute(job, started, carrier, 0);
    });
  }

  /** `true` when recorders of the pipeline take a rebuilt start event and this process has not given them one for the run. */
  #wantsStart(pipelineId: string, runId: string): boolean {
    if (this.broker.enqueueSync !== undefined || this.#primed.has(runId)) return false;
    return this.#delivery.recorders(pipelineId).some((r) => r.primeStart !== undefined);
  }

  #primeStart(pipelineId: string, runId: string, draft: EventDraft): void {
    this.#primed.add(runId);
    if (this.#primed.size > PRIMED_RUNS) this.#primed.delete(this.#primed.values().next().value as string);
    const start = { ...draft, v: EVENT_SCHEMA_VERSION, event_id: '', seq: 1 } as FlowcastEvent;
    for (const r of this.#delivery.recorders(pipelineId)) {
      try {
        r.primeStart?.(start);
      } catch (error) {
        this.#onError(toError(error), `tracking of the start of run ${runId}`);
      }
    }
  }

  #delivered(job: StepJob): void {
    const ids = this.#delayed.get(job.run_id);
    if (ids === undefined || !ids.delete(job.job_id)) return;
    if (ids.size === 0) this.#delayed.delete(job.run_id);
  }

  /**
   * Runs a started call. `carrier`: the broker job it runs inside; `depth`: how many
   * calls that job ran before this one (step chaining).
   */
  #execute(job: StepJob, started: Done<boolean>, carrier: string, depth: number): Promise<StepJobFailure | void> | undefined {
    if (started === null || !started.value) return undefined;
    const def = this.broker.getTask(job.task);
    if (def === undefined) {
      const known = this.broker.taskNames().join(', ') || 'none';
      const failure = { error: `UnknownTaskError: task "${job.task}" is not registered on this worker (registered: ${known})`, retryable: false };
      startStepSpan(job).end(new FlowcastError(ErrorCodes.UNKNOWN_TASK, failure.error));
      return failedWith(this.#finishStep(job, null, failure, carrier, depth), { step: job.step, attempt: job.attempt, error: failure.error });
    }
    const span = startStepSpan(job);
    const control = new CallControl();
    this.#track(job.run_id, control);
    const sink = new StepSink(this, job);
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
      this.#untrack(job.run_id, control);
      const pending = sink.pending;
      if (pending === null) return this.#finishStep(job, result, failure, carrier, depth);
      return pending.then(() => this.#finishStep(job, result, failure, carrier, depth));
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
        // No call is chained after a failed one (see #finishStep): this failure is the job's last word.
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
  #finishStep(job: StepJob, result: JsonValue, failure: JobFailure | null, carrier: string, depth: number): Promise<StepJobFailure | void> | undefined {
    let timer: string | null = timeoutJobId(job.run_id);
    const broker = this.broker;
    // The run state may keep the record it writes (RedisRunState does): the task must not
    // be able to change it later through the object it returned.
    if (typeof result === 'object' && result !== null && broker.enqueueSync === undefined) result = structuredClone(result);
    // Nothing is chained after a failed call: the retry or the next steps go through the
    // broker, so the failed call is the last of its broker job (which the broker may keep as failed).
    const chainable = broker.chainable === undefined || failure !== null ? null : (d: Dispatch): boolean => d.delayMs === 0 && d.job.item === undefined && broker.chainable?.(d.job, depth + 1) === true;
    const done = this.#transition(job.run_id, (r): Transition<Chained> => {
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
    return then(done, (d) => {
      if (d === null) return undefined;
      const after = this.#after(job.run_id, d.events, d.value.dispatches, d.delivered, timer);
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

  /**
   * Appends an event outside a state transition (log lines, progress) and hands it on.
   * With an in-process log ({@link appendsSync}) the append happens before this returns.
   */
  appendLoose(draft: EventDraft): Promise<void> | undefined {
    const transport = this.broker.transport;
    if (transport.appendSync === undefined) {
      return this.#order.run(draft.run_id, () => transport.append(draft), (event) => (event === null ? [] : [event])).then(({ delivered }) => delivered);
    }
    const event = transport.appendSync(draft);
    return event === null ? undefined : this.#order.now(draft.run_id, [event]);
  }

  /** `true` when the broker's event log appends synchronously (in process). */
  get appendsSync(): boolean {
    return this.broker.transport.appendSync !== undefined;
  }

  reportError(error: unknown, where: string): void {
    this.#onError(toError(error), where);
  }

  /** Applies a transition and hands its events on (in seq order, see {@link SeqOrder}); `null` for an unknown run. */
  #transition<T>(runId: string, transition: (r: RunRecord) => Transition<T>): Done<T> | Promise<Done<T>> {
    const store = this.broker.runState;
    const seen = new SlotWatch();
    const fn = seen.wrap(transition);
    if (store.transitionSync !== undefined) {
      let done: { value: T; events: FlowcastEvent[] };
      try {
        done = store.transitionSync(runId, fn);
      } catch (error) {
        if (error instanceof FlowcastError && error.code === ErrorCodes.NOT_FOUND) return null;
        throw error;
      }
      seen.settle(this.broker, runId, this.#onError);
      return { value: done.value, events: done.events, delivered: this.#order.now(runId, done.events) };
    }
    return this.#order.run(runId, () => store.transition(runId, fn), (d) => d.events).then(
      ({ result, delivered }) => {
        seen.settle(this.broker, runId, this.#onError);
        return { value: result.value, events: result.events, delivered };
      },
      (error: unknown) => {
        if (error instanceof FlowcastError && error.code === ErrorCodes.NOT_FOUND) return null;
        throw error;
      },
    );
  }

  /**
   * After a transition whose `events` are being handed on (`delivered`): sends the next
   * jobs, and cleans up when the run ended. `timer`: the id of the delayed `run_timeout`
   * job that may be pending for the run's attempt (`null` when its plan has no run
   * timeout: spares the broker a removal of a job that was never sent). Settles once the
   * events are handed on and the jobs sent.
   */
  #after(runId: string, events: FlowcastEvent[], dispatches: Dispatch[], delivered: Promise<void> | undefined, timer: string | null = timeoutJobId(runId)): Promise<void> | undefined {
    let waits: Promise<void>[] | null = null;
    const broker = this.broker;
    for (const d of dispatches) {
      const options = d.delayMs > 0 ? { delayMs: d.delayMs } : undefined;
      if (options !== undefined) {
        const ids = this.#delayed.get(runId) ?? new Set<string>();
        ids.add(d.job.job_id);
        this.#delayed.set(runId, ids);
      }
      const where = `sending job for step "${d.job.step}" of run ${runId}`;
      if (broker.enqueueSync !== undefined) {
        try {
          broker.enqueueSync(d.job, options);
        } catch (error) {
          this.#onError(toError(error), where);
        }
      } else {
        (waits ??= []).push(broker.enqueue(d.job, options).catch((error: unknown) => this.#onError(toError(error), where)));
      }
    }
    const last = events[events.length - 1];
    if (last !== undefined && isTerminalEvent(last)) {
      this.#primed.delete(runId);
      this.#abortLocal(runId, last);
      if (timer !== null) (waits ??= []).push(broker.removeDelayed(timer));
      // A pending retry of an ended run would only be dropped when delivered; until then
      // its timer would keep the process alive.
      const ids = this.#delayed.get(runId);
      if (ids !== undefined) {
        this.#delayed.delete(runId);
        for (const id of ids) (waits ??= []).push(broker.removeDelayed(id));
      }
    }
    if (waits === null) return delivered;
    if (delivered !== undefined) waits.push(delivered);
    return Promise.all(waits).then(() => undefined);
  }

  #track(runId: string, control: CallControl): void {
    this.#calls.set(control, runId);
  }

  #untrack(_runId: string, control: CallControl): void {
    this.#calls.delete(control);
  }

  /** Aborts the calls of an ended run that run in this process. */
  abortLocal(runId: string, reason: Error | (() => Error)): void {
    let error: Error | null = null;
    for (const [control, id] of this.#calls) {
      if (id !== runId) continue;
      this.#calls.delete(control);
      error ??= typeof reason === 'function' ? reason() : reason;
      control.abort(error);
    }
  }

  #abortLocal(runId: string, terminal: FlowcastEvent): void {
    // A completed run has no call left: it completes only once every job ended.
    if (this.#calls.size === 0 || terminal.type === 'PipelineCompleteEvent') return;
    this.abortLocal(runId, () =>
      terminal.type === 'PipelineCancelledEvent'
        ? new CancelledError(`Run ${runId} was cancelled: ${terminal.reason}`)
        : new CancelledError(`Run ${runId} ended (${terminal.type}) while this step was running`),
    );
  }
}

/** A transition's outcome; `delivered` settles once its events are handed on (`undefined`: they were, synchronously). */
type Done<T> = { value: T; events: FlowcastEvent[]; delivered: Promise<void> | undefined } | null;

/** What the end of a call leads to: the jobs to send, and the next call to run here (step chaining). */
interface Chained {
  dispatches: Dispatch[];
  chained: StepJob | null;
}

/** Continues with `fn` at once for a plain value, or after the promise. */
function then<T, R>(value: T | Promise<T>, fn: (v: T) => Promise<R> | undefined): Promise<R | undefined> | undefined {
  return value instanceof Promise ? value.then(fn) : fn(value);
}

/** Settles with `failure` once `pending` (if any) settled. */
function failedWith(pending: Promise<unknown> | undefined, failure: StepJobFailure): Promise<StepJobFailure> {
  return pending === undefined ? Promise.resolve(failure) : pending.then(() => failure);
}
