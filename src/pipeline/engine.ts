import { randomUUID } from 'node:crypto';
import { FlowcastError, ErrorCodes, CancelledError, describeError, toError } from '../core/errors.js';
import { assertJson, type JsonValue } from '../core/json.js';
import type { Broker, BrokerJob, ControlJob, StepJob } from '../core/broker.js';
import { executeCall } from '../core/execute.js';
import { isTerminalEvent, type EventDraft, type FlowcastEvent } from '../events/types.js';
import type { PipelinePlan } from './plan.js';
import type { RunRecord, Transition } from './run-state.js';
import {
  NON_RETRYABLE_CODES,
  beginRun,
  cancelRun,
  jobFailed,
  jobStarted,
  jobSucceeded,
  newRunRecord,
  timeoutRun,
  type Dispatch,
} from './transitions.js';

/** Something that records every event of a run, in seq order, before it is published (tracking). */
export interface EventRecorder {
  record(event: FlowcastEvent): void | Promise<void>;
}

/** Something that is handed every event and must not block (hooks). */
export interface EventDispatcher {
  dispatch(event: FlowcastEvent): void;
}

interface Binding {
  recorders: Set<EventRecorder>;
  dispatchers: Set<EventDispatcher>;
}

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

function timeoutJobId(runId: string): string {
  return `run-timeout:${runId}`;
}

/**
 * Advances runs. Holds no run in a closure: every step is a broker job with JSON input,
 * every change of a run is an atomic transition of its record in the broker's
 * `runState`, whose events land in the run's log in the same step. This process only
 * keeps what is local by nature: abort controllers of the calls it is running, and the
 * per-run order in which it hands events to tracking, hooks and live subscribers.
 */
export class RunEngine {
  readonly broker: Broker;
  readonly #bindings = new Map<string, Binding>();
  readonly #controllers = new Map<string, Set<AbortController>>();
  readonly #chains = new Map<string, Promise<void>>();
  #onError: (error: Error, where: string) => void = (error, where) =>
    console.error(`flowcast: ${where}: ${describeError(error)}`);

  constructor(broker: Broker) {
    this.broker = broker;
    broker.setRunProcessor((job) => this.process(job));
  }

  /** Where engine-level failures (a recorder that throws, a broker that refuses a job) are reported. */
  set onError(handler: (error: Error, where: string) => void) {
    this.#onError = handler;
  }

  /** Attaches tracking (recorders) and hooks (dispatchers) to every run of `pipelineId` in this process. */
  bind(pipelineId: string, recorders: Iterable<EventRecorder>, dispatchers: Iterable<EventDispatcher>): void {
    let b = this.#bindings.get(pipelineId);
    if (b === undefined) {
      b = { recorders: new Set(), dispatchers: new Set() };
      this.#bindings.set(pipelineId, b);
    }
    for (const r of recorders) b.recorders.add(r);
    for (const d of dispatchers) b.dispatchers.add(d);
  }

  /** Starts a run of `plan`; resolves with its id once the run is stored and its first steps are sent. */
  async startRun(plan: PipelinePlan, input: JsonValue, runId: string = randomUUID()): Promise<string> {
    assertJson(input, `Input of pipeline "${plan.pipeline_id}"`);
    const now = Date.now();
    const rec = newRunRecord(runId, plan, input, now);
    const { value: dispatches, events: drafts } = beginRun(rec, now);
    const events = await this.broker.runState.create(rec, drafts);
    if (plan.timeout_ms !== undefined) {
      const job: ControlJob = { kind: 'run_timeout', job_id: timeoutJobId(runId), run_id: runId };
      await this.broker.enqueue(job, { delayMs: plan.timeout_ms });
    }
    await this.#after(rec.pipeline_id, runId, events, dispatches);
    return runId;
  }

  /** Cancels a run: running calls see their signal aborted, the run ends as CANCELLED. `false` when it had ended. */
  async cancel(runId: string, reason = 'cancelled by request'): Promise<boolean> {
    const { value, events } = await this.broker.runState.transition(runId, (r) => cancelRun(r, reason, Date.now()));
    if (value) {
      const rec = await this.broker.runState.get(runId);
      await this.#after(rec?.pipeline_id ?? '', runId, events, []);
    }
    return value;
  }

  /** Processes one `step` or `run_timeout` job (installed as the broker's run processor). */
  async process(job: BrokerJob): Promise<JsonValue> {
    if (job.kind === 'step') await this.#runStep(job);
    else if (job.kind === 'run_timeout') await this.#runTimeout(job);
    return null;
  }

  /**
   * Resolves with the run's result once it completed; rejects when it failed, was
   * cancelled, or after `timeoutMs`. Works for runs started anywhere: it listens to the
   * transport and reads the stored state.
   */
  waitForRun(runId: string, timeoutMs?: number): Promise<JsonValue> {
    return new Promise<JsonValue>((resolve, reject) => {
      let settled = false;
      let timer: NodeJS.Timeout | undefined;
      const finish = (fn: () => void): void => {
        if (settled) return;
        settled = true;
        off();
        if (timer !== undefined) clearTimeout(timer);
        fn();
      };
      const fromEvent = (e: FlowcastEvent): void => {
        if (e.type === 'PipelineCompleteEvent') finish(() => resolve(e.result));
        else if (e.type === 'PipelineErrorEvent') finish(() => reject(runFailed(runId, e.pipeline_id, e.error)));
        else if (e.type === 'PipelineCancelledEvent') finish(() => reject(new CancelledError(`Run ${runId} of pipeline "${e.pipeline_id}" was cancelled: ${e.reason}`)));
      };
      const off = this.broker.transport.subscribe({ runId }, fromEvent);
      if (timeoutMs !== undefined) {
        timer = setTimeout(
          () => finish(() => reject(new FlowcastError(ErrorCodes.WAIT_TIMEOUT, `Run ${runId} did not end within ${timeoutMs}ms`))),
          timeoutMs,
        );
      }
      this.broker.runState.get(runId).then(
        async (rec) => {
          if (rec === null) {
            finish(() => reject(new FlowcastError(ErrorCodes.NOT_FOUND, `Unknown run "${runId}"`)));
            return;
          }
          if (rec.status === 'RUNNING') return;
          // Ended already: let this process finish handing its events on first.
          await this.#chains.get(runId);
          finish(() => settleFromRecord(rec, resolve, reject));
        },
        (error: unknown) => finish(() => reject(toError(error))),
      );
    });
  }

  /** A copy of a run's record (status, steps, result), or `null`. */
  getRun(runId: string): Promise<RunRecord | null> {
    return this.broker.runState.get(runId);
  }

  async #runTimeout(job: ControlJob): Promise<void> {
    const rec = await this.broker.runState.get(job.run_id);
    if (rec === null) return;
    const { value, events } = await this.broker.runState.transition(job.run_id, (r) => timeoutRun(r, Date.now()));
    if (value) await this.#after(rec.pipeline_id, job.run_id, events, []);
  }

  async #runStep(job: StepJob): Promise<void> {
    const started = await this.#transition(job, (r) => jobStarted(r, job, Date.now()));
    if (started === null || !started.value) return;
    void this.#deliver(job.pipeline_id, job.run_id, started.events);

    const def = this.broker.getTask(job.task);
    let result: JsonValue = null;
    let failure: { error: string; retryable: boolean } | null = null;
    if (def === undefined) {
      failure = {
        error: `UnknownTaskError: task "${job.task}" is not registered on this worker (registered: ${this.broker.taskNames().join(', ') || 'none'})`,
        retryable: false,
      };
    } else {
      const controller = new AbortController();
      this.#track(job.run_id, controller);
      let pending: Promise<void> = Promise.resolve();
      const emitLoose = (draft: EventDraft): void => {
        pending = pending.then(async () => {
          const event = await this.broker.transport.append(draft);
          if (event !== null) await this.#deliver(job.pipeline_id, job.run_id, [event]);
        }).catch((error: unknown) => this.#onError(toError(error), `event of run ${job.run_id}`));
      };
      const stepFields = { pipeline_id: job.pipeline_id, run_id: job.run_id, step_name: job.step, step_index: job.step_index, task_id: job.job_id, attempt: job.attempt };
      try {
        result = await executeCall(
          def,
          job.input,
          {
            runId: job.run_id,
            pipelineId: job.pipeline_id,
            stepName: job.step,
            taskId: job.job_id,
            attempt: job.attempt,
            item: job.item ?? null,
            timeoutMs: job.timeout_ms ?? def.options.timeoutMs,
            signal: controller.signal,
          },
          {
            log: (lines) => {
              const draft: EventDraft = { type: 'StepLogEvent', ...stepFields, timestamp: new Date().toISOString(), lines };
              if (job.item !== undefined) draft.item = job.item;
              emitLoose(draft);
            },
            progress: (progress, message) => {
              const draft: EventDraft = { type: 'StepProgressEvent', ...stepFields, timestamp: new Date().toISOString(), progress };
              if (message !== undefined) draft.message = message;
              emitLoose(draft);
            },
          },
        );
      } catch (error) {
        const code = error instanceof FlowcastError ? error.code : undefined;
        failure = { error: describeError(error), retryable: code === undefined || !NON_RETRYABLE_CODES.has(code) };
      } finally {
        this.#untrack(job.run_id, controller);
      }
      await pending;
    }
    const done = await this.#transition(job, (r) =>
      failure === null ? jobSucceeded(r, job, result, Date.now()) : jobFailed(r, job, failure, Date.now()),
    );
    if (done === null) return;
    await this.#after(job.pipeline_id, job.run_id, done.events, done.value);
  }

  async #transition<T>(job: StepJob, fn: (r: RunRecord) => Transition<T>): Promise<{ value: T; events: FlowcastEvent[] } | null> {
    try {
      return await this.broker.runState.transition(job.run_id, fn);
    } catch (error) {
      if (error instanceof FlowcastError && error.code === ErrorCodes.NOT_FOUND) return null;
      throw error;
    }
  }

  /** Hands events on, sends the next jobs, and cleans up when the run ended. */
  async #after(pipelineId: string, runId: string, events: FlowcastEvent[], dispatches: Dispatch[]): Promise<void> {
    const delivered = this.#deliver(pipelineId, runId, events);
    for (const d of dispatches) {
      try {
        await this.broker.enqueue(d.job, d.delayMs > 0 ? { delayMs: d.delayMs } : {});
      } catch (error) {
        this.#onError(toError(error), `sending job for step "${d.job.step}" of run ${runId}`);
      }
    }
    const last = events[events.length - 1];
    if (last !== undefined && isTerminalEvent(last)) {
      this.#abortLocal(runId, last.type === 'PipelineCancelledEvent' ? new CancelledError(`Run ${runId} was cancelled`) : new CancelledError(`Run ${runId} ended: ${last.type}`));
      await this.broker.removeDelayed(timeoutJobId(runId));
    }
    await delivered;
  }

  /**
   * Hands events to tracking (awaited), then hooks, then live subscribers, one run at a
   * time in seq order within this process.
   */
  #deliver(pipelineId: string, runId: string, events: FlowcastEvent[]): Promise<void> {
    if (events.length === 0) return this.#chains.get(runId) ?? Promise.resolve();
    const prev = this.#chains.get(runId);
    const run = async (): Promise<void> => {
      const b = this.#bindings.get(pipelineId);
      for (const event of events) {
        if (b !== undefined) {
          for (const r of b.recorders) {
            try {
              const p = r.record(event);
              if (p !== undefined) await p;
            } catch (error) {
              this.#onError(toError(error), `tracking of ${event.type} (run ${runId}, seq ${event.seq})`);
            }
          }
          for (const d of b.dispatchers) d.dispatch(event);
        }
        try {
          await this.broker.transport.publish(event);
        } catch (error) {
          this.#onError(toError(error), `publishing ${event.type} (run ${runId}, seq ${event.seq})`);
        }
      }
    };
    const next = prev === undefined ? run() : prev.then(run);
    this.#chains.set(runId, next);
    const last = events[events.length - 1] as FlowcastEvent;
    if (isTerminalEvent(last)) {
      void next.then(() => {
        if (this.#chains.get(runId) === next) this.#chains.delete(runId);
      });
    }
    return next;
  }

  #track(runId: string, controller: AbortController): void {
    let set = this.#controllers.get(runId);
    if (set === undefined) {
      set = new Set();
      this.#controllers.set(runId, set);
    }
    set.add(controller);
  }

  #untrack(runId: string, controller: AbortController): void {
    const set = this.#controllers.get(runId);
    if (set === undefined) return;
    set.delete(controller);
    if (set.size === 0) this.#controllers.delete(runId);
  }

  #abortLocal(runId: string, reason: Error): void {
    const set = this.#controllers.get(runId);
    if (set === undefined) return;
    this.#controllers.delete(runId);
    for (const c of set) c.abort(reason);
  }
}

function runFailed(runId: string, pipelineId: string, error: string): FlowcastError {
  return new FlowcastError(ErrorCodes.PIPELINE_FAILED, `Run ${runId} of pipeline "${pipelineId}" failed: ${error}`);
}

function settleFromRecord(rec: RunRecord, resolve: (v: JsonValue) => void, reject: (e: Error) => void): void {
  if (rec.status === 'COMPLETED') resolve(rec.result);
  else if (rec.status === 'CANCELLED') reject(new CancelledError(`Run ${rec.run_id} of pipeline "${rec.pipeline_id}" was cancelled: ${rec.error ?? ''}`));
  else reject(runFailed(rec.run_id, rec.pipeline_id, rec.error ?? 'unknown error'));
}
