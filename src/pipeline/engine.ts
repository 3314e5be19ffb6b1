/**
 * The run engine of a broker: the one object through which a process starts, resumes,
 * cancels and waits for runs, and through which the broker hands it the jobs to process.
 * It wires the parts that do the work:
 *
 * - `run-control.ts` starts, resumes and cancels runs;
 * - `step-runner.ts` runs step jobs (and chains steps on brokers that allow it);
 * - `run-timeout.ts` keeps each run's deadline;
 * - `transition-runner.ts` applies each change of a run and follows it up (jobs to send,
 *   what an ended run leaves behind);
 * - `seq-order.ts` and `delivery.ts` hand each run's events to tracking, hooks and live
 *   subscribers, in seq order;
 * - `local-calls.ts` aborts the calls running here when their run ends;
 * - `start-primer.ts` gives recorders the start of runs this process did not start.
 */
import { defaultLogger, type Logger } from '../core/logger.js';
import { logError } from '../core/log-throttle.js';
import { toError } from '../core/errors.js';
import type { JsonValue } from '../core/json.js';
import type { Broker, BrokerJob, StepJobFailure } from './broker.js';
import type { EventDraft, FlowcastEvent } from '../events/types.js';
import type { PipelinePlan } from './plan.js';
import type { RunRecord, Transition } from './run-state.js';
import { EventDelivery, type EventDispatcher, type EventRecorder } from './delivery.js';
import { waitForRun } from './run-wait.js';
import { SeqOrder } from './seq-order.js';
import { RunSpans } from './tracing.js';
import type { Dispatch } from './transitions.js';
import type { ResumedRun } from './resume.js';
import { LocalCalls } from './local-calls.js';
import { RunControl } from './run-control.js';
import { processRunTimeout, timeoutJobId, timerOf } from './run-timeout.js';
import { StartPrimer } from './start-primer.js';
import { StepRunner } from './step-runner.js';
import { TransitionRunner } from './transition-runner.js';
import { registerQueueStarter } from './run-queue.js';

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

/**
 * Advances runs. Holds no run in a closure: every step is a broker job with JSON input,
 * every change of a run is an atomic transition of its record in the broker's
 * `runState`, whose events land in the run's log in the same step. This process only
 * keeps what is local by nature: the abort handles of the calls it is running, and the
 * per-run order in which it hands events to tracking, hooks and live subscribers.
 */
export class RunEngine {
  /** The broker this engine processes the run jobs of. */
  readonly broker: Broker;
  /** Hands each run's events to tracking, hooks and live subscribers, in seq order (delivery.ts). */
  readonly #delivery: EventDelivery;
  /** Puts each run's events in seq order before they are handed on, when the calls that gave their seqs ran at once. */
  readonly #order: SeqOrder;
  /** Calls running in this process, and their run: at most the broker's concurrency. */
  readonly #calls = new LocalCalls();
  readonly #primer: StartPrimer;
  readonly #runner: TransitionRunner;
  readonly #control: RunControl;
  readonly #steps: StepRunner;
  /** Spans of the runs this process started (OpenTelemetry, see tracing.ts). */
  readonly #runSpans: RunSpans;
  #onError: (error: Error, where: string) => void = (error, where) =>
    logError((this.broker as { logger?: Logger }).logger ?? defaultLogger(), error, `run engine: ${where}`);

  /** Creates the engine of `broker` and installs it as the broker's run processor; use {@link getEngine}. */
  constructor(broker: Broker) {
    this.broker = broker;
    const report = (error: Error, where: string): void => this.#onError(error, where);
    this.#delivery = new EventDelivery(broker.transport, report);
    this.#order = new SeqOrder((events) => this.#delivery.deliver((events[0] as FlowcastEvent).pipeline_id, (events[0] as FlowcastEvent).run_id, events));
    this.#runSpans = new RunSpans(broker.transport, report);
    this.#primer = new StartPrimer(broker, this.#delivery, report);
    this.#runner = new TransitionRunner(broker, this.#order, report, (runId, terminal) => {
      this.#primer.forget(runId);
      this.#calls.abortEnded(runId, terminal);
    });
    this.#control = new RunControl(this.#runner, this.#runSpans);
    this.#steps = new StepRunner(this.#runner, this.#calls, this.#primer, this);
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
  startRun(plan: PipelinePlan, input: JsonValue, runId?: string, slot?: RunRecord['slot'], cancelled?: string): Promise<string> {
    return this.#control.start(plan, input, runId, slot, cancelled);
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
  resume(runId: string, options: { limit?: number; pipelineId?: string } = {}): Promise<ResumedRun> {
    return this.#control.resume(runId, options);
  }

  /** Cancels a run: running calls see their signal aborted, the run ends as CANCELLED. `false` when it had ended. */
  cancel(runId: string, reason = 'cancelled by request'): Promise<boolean> {
    return this.#control.cancel(runId, reason);
  }

  /**
   * Processes one `step` or `run_timeout` job (installed as the broker's run processor).
   * `carrier`: the id of the broker job this step job runs inside, when it is not the
   * step job's own (a chained call a broker retries, see `Broker.chainable`).
   */
  process(job: BrokerJob, carrier?: string): Promise<StepJobFailure | void> | undefined {
    if (job.kind === 'step') return this.#steps.run(job, carrier ?? job.job_id);
    if (job.kind === 'run_timeout') return processRunTimeout(this.#runner, job);
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
    const done = await this.#runner.apply(runId, (r) => {
      timer = timerOf(r);
      return fn(r);
    });
    if (done === null) return null;
    await this.#runner.followUp(runId, done.events, dispatchesOf(done.value), done.delivered, timer);
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

  /** Reports a failure that must not stop the engine (see {@link onError}). */
  reportError(error: unknown, where: string): void {
    this.#onError(toError(error), where);
  }

  /** Aborts the calls of an ended run that run in this process. */
  abortLocal(runId: string, reason: Error | (() => Error)): void {
    this.#calls.abort(runId, reason);
  }
}
