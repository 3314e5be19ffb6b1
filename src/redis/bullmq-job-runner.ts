/**
 * The worker side of {@link BullMQBroker}: the BullMQ workers of a worker process and what
 * they do with each job they take. A task job runs its call here; a step job goes to the
 * run engine (after the checks for a job BullMQ handed out again: a worker that died, an
 * error outside the task); a run's deadline job goes to the engine too. A step job that
 * BullMQ gives up on fails its step, so its run does not wait for it forever; a run that
 * ended elsewhere aborts its calls running here.
 */
import { UnrecoverableError, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { CancelledError, ErrorCodes, FlowcastError, describeError, toError } from '../core/errors.js';
import { executeCall } from '../core/execute.js';
import type { JsonValue } from '../core/json.js';
import type { TaskDefinition } from '../core/task.js';
import type { Broker, BrokerJob, ControlJob, JobProcessor, StepJob, TaskJob } from '../pipeline/broker.js';
import { getEngine } from '../pipeline/engine.js';
import { retryDelay } from '../pipeline/plan.js';
import { NON_RETRYABLE_CODES, jobFailed } from '../pipeline/transitions.js';
import type { RunControl, RunEndedMessage } from './bullmq-control.js';
import { StepFailedError, callOf, isStepJobFailure, stepAttemptedAgain, stepRedelivered, takeHandoff } from './bullmq-jobs.js';
import { openConnection, type ResolvedBrokerOptions } from './bullmq-options.js';
import type { WorkerCounters, WorkerHeartbeat } from './bullmq-status.js';
import { BULLMQ_QUEUES } from './keys.js';
import type { RedisRunState } from './run-state.js';

/** What a {@link BullMQJobRunner} needs of its broker. */
export interface JobRunnerHost {
  /** The broker (its run engine runs the step and deadline jobs). */
  readonly broker: Broker;
  /** The tasks registered on the broker, by name. */
  readonly tasks: ReadonlyMap<string, TaskDefinition>;
  /** The broker's options. */
  readonly options: ResolvedBrokerOptions;
  /** BullMQ's connection (the workers'). */
  readonly bullRedis: Redis;
  /** The run-end announcements this worker listens to. */
  readonly control: RunControl;
  /** The broker's own Redis run state, which step jobs' handoffs prime (`null` when it has none). */
  readonly runState: RedisRunState | null;
  /** This process's job counters (shared with the heartbeat). */
  readonly counters: WorkerCounters;
  /** The worker's heartbeat (`null` for a producer). */
  readonly heartbeat: WorkerHeartbeat | null;
  /** Reports a connection's errors the way the broker does. */
  watch(redis: Redis, what: string): void;
}

/** The BullMQ workers of one broker, and the handling of every job they take. */
export class BullMQJobRunner {
  readonly #host: JobRunnerHost;
  readonly #options: ResolvedBrokerOptions;
  #workers: Worker[] = [];
  #processor: JobProcessor | null = null;

  /** Takes no job until {@link start}. */
  constructor(host: JobRunnerHost) {
    this.#host = host;
    this.#options = host.options;
  }

  /** Attaches the run engine's processor of step and deadline jobs. */
  setProcessor(processor: JobProcessor): void {
    this.#processor = processor;
  }

  /** Creates the workers on BullMQ key prefix `prefix` and resolves once they, the control subscription and the first heartbeat are up. */
  async start(prefix: string): Promise<void> {
    const w = this.#options.worker;
    if (w === null) return;
    const common = {
      connection: this.#host.bullRedis,
      prefix,
      lockDuration: w.lockDurationMs,
      stalledInterval: w.stalledIntervalMs,
      // One more than asked: the delivery after the last allowed recovery fails the step
      // itself (see #runStepJob), so BullMQ never fails a step job for good silently.
      maxStalledCount: w.maxStalledCount + 1,
      ...(this.#options.telemetry !== undefined && { telemetry: this.#options.telemetry }),
    };
    const tasks = new Worker<BrokerJob, JsonValue>(BULLMQ_QUEUES.tasks, (job) => this.#onTaskQueueJob(job), {
      ...common,
      autorun: w.autorun,
      concurrency: w.concurrency,
      settings: { backoffStrategy: (attemptsMade, _type, _error, job) => this.#taskRetryDelay(attemptsMade, job) },
    });
    const control = new Worker<BrokerJob, JsonValue>(BULLMQ_QUEUES.control, (job) => this.#onControlJob(job), {
      ...common,
      autorun: w.autorun,
      concurrency: w.controlConcurrency,
    });
    for (const worker of [tasks, control]) {
      worker.on('error', (error) => this.#options.onError(error, null));
      worker.on('failed', (job, error) => {
        const data = job?.data;
        // A failed call (StepFailedError) is flowcast's own: its run already knows.
        if (data?.kind !== 'step' || job === undefined || error instanceof StepFailedError || job.attemptsMade < (job.opts.attempts ?? 1)) return;
        this.#stepFailedForGood(data, `BrokerError: the job of this step failed in the broker: ${error.message}`).catch((e: unknown) =>
          this.#options.onError(toError(e), data),
        );
      });
    }
    this.#workers = [tasks, control];
    const sub = openConnection(this.#options.connection, 'flowcast-control');
    this.#host.watch(sub, 'control connection');
    await Promise.all([
      tasks.waitUntilReady(),
      control.waitUntilReady(),
      this.#host.control.listen(sub, (m) => this.#onRunEnded(m)),
      this.#host.heartbeat?.start(),
    ]);
  }

  /** Starts the workers not running yet (created with `autorun: false`). */
  run(): void {
    for (const worker of this.#workers) {
      if (!worker.isRunning()) void worker.run().catch((error: unknown) => this.#options.onError(toError(error), null));
    }
  }

  /** Closes the workers: waits for their running jobs unless `force`. Errors go to `report`. */
  async close(force: boolean, report: (error: unknown) => void): Promise<void> {
    await Promise.all(this.#workers.map((w) => w.close(force).catch(report)));
  }

  /**
   * Step chaining (see `BullMQWorkerOptions.chainSteps`): whether a next step may run in
   * the job that ran the previous one: the broker is `open`, knows the step's task, and
   * the job has not run `chainSteps` calls yet. A chained call counts as one more processed.
   */
  chainable(job: StepJob, index: number, open: boolean): boolean {
    const ok = open && index <= (this.#options.worker?.chainSteps ?? 0) && this.#host.tasks.has(job.task);
    // The engine status counts calls: a chained one is one more processed here.
    if (ok) this.#host.counters.processed++;
    return ok;
  }

  async #onTaskQueueJob(job: Job<BrokerJob, JsonValue>): Promise<JsonValue> {
    const counters = this.#host.counters;
    counters.active++;
    if (counters.active === 1) this.#host.heartbeat?.stateChanged();
    try {
      const data = job.data;
      if (data.kind === 'task') return await this.#runTaskJob(data, job);
      if (data.kind === 'step') await this.#runStepJob(data, job);
      else await this.#runControl(data);
      return null;
    } catch (error) {
      counters.failed++;
      throw error;
    } finally {
      counters.active--;
      counters.processed++;
      if (counters.active === 0) this.#host.heartbeat?.stateChanged();
    }
  }

  async #onControlJob(job: Job<BrokerJob, JsonValue>): Promise<JsonValue> {
    const data = job.data;
    if (data.kind === 'step') await this.#runStepJob(data, job);
    else if (data.kind === 'run_timeout') await this.#runControl(data);
    return null;
  }

  async #runStepJob(carried: StepJob, job: Job<BrokerJob, JsonValue>): Promise<void> {
    const data = takeHandoff(carried, this.#host.runState);
    let step: StepJob | null = data;
    const allowed = this.#options.worker?.maxStalledCount ?? 0;
    if (job.stalledCounter > allowed) {
      const error = `WorkerLostError: the worker running this step stopped ${job.stalledCounter} times (maxStalledCount ${allowed}); not running it again`;
      await this.#stepFailedForGood(data, error);
      throw new StepFailedError(data, { step: data.step, attempt: data.attempt, error });
    }
    if (job.stalledCounter > 0) {
      // Delivered again: the worker that ran it stopped (killed, lost its lock).
      const reason = `WorkerLostError: the worker running this step stopped; BullMQ recovered the job (stalled ${job.stalledCounter}x)`;
      // Through the engine, so tracking and hooks in this process see the retry too.
      step = await getEngine(this.#host.broker).applyTransition(data.pipeline_id, data.run_id, (r) => stepRedelivered(r, data, reason, Date.now()));
      if (step === null) return;
    } else if (job.attemptsMade > 0) {
      // BullMQ runs it again after an error outside the task: a chained call it carried goes again too.
      const reason = 'BrokerError: the worker failed to record the end of a step (BullMQ runs the job again)';
      step = await getEngine(this.#host.broker).applyTransition(data.pipeline_id, data.run_id, (r) => stepAttemptedAgain(r, data, reason, Date.now()));
      if (step === null) return;
    }
    const failed = await this.#runProcessor(step, data.job_id);
    // The job's (last) call failed: BullMQ keeps it in its failed set with the error.
    if (isStepJobFailure(failed)) throw new StepFailedError(data, failed);
  }

  /**
   * A step job that BullMQ gave up on (every attempt met an error outside the task, such
   * as Redis unreachable while the step finished), or whose workers kept dying: the step
   * fails, so its run does not wait for it forever.
   */
  async #stepFailedForGood(job: StepJob, error: string): Promise<void> {
    const failure = { error, retryable: false };
    // The call the job stands for: its own, or the chained one it carried when its own had ended.
    await getEngine(this.#host.broker).applyTransition(job.pipeline_id, job.run_id, (r) => jobFailed(r, callOf(r, job), failure, Date.now()), (dispatches) => dispatches);
  }

  async #runControl(data: ControlJob): Promise<void> {
    await this.#runProcessor(data);
  }

  async #runProcessor(job: StepJob | ControlJob, carrier?: string): Promise<unknown> {
    const processor = this.#processor;
    if (processor === null) {
      throw new FlowcastError(ErrorCodes.INVALID_ARGUMENT, `No run engine is attached to this broker for ${job.kind} job ${job.job_id}`);
    }
    try {
      return await processor(job, carrier);
    } catch (error) {
      this.#options.onError(toError(error), job);
      throw error;
    }
  }

  async #runTaskJob(data: TaskJob, job: Job<BrokerJob, JsonValue>): Promise<JsonValue> {
    const def = this.#host.tasks.get(data.task);
    if (def === undefined) {
      throw new UnrecoverableError(`UnknownTaskError: task "${data.task}" is not registered on this worker (registered: ${[...this.#host.tasks.keys()].join(', ') || 'none'})`);
    }
    try {
      return await executeCall(
        def,
        data.input,
        { runId: null, pipelineId: null, stepName: null, taskId: data.job_id, attempt: job.attemptsMade + 1, item: null, timeoutMs: def.options.timeoutMs },
        { log: () => undefined, progress: () => undefined },
      );
    } catch (error) {
      const code = error instanceof FlowcastError ? error.code : undefined;
      const message = describeError(error);
      if (code !== undefined && NON_RETRYABLE_CODES.has(code)) throw new UnrecoverableError(message);
      throw new Error(message);
    }
  }

  #taskRetryDelay(attemptsMade: number, job: { data?: unknown } | undefined): number {
    const data = job?.data as BrokerJob | undefined;
    const def = data?.kind === 'task' ? this.#host.tasks.get(data.task) : undefined;
    if (def === undefined) return 0;
    return retryDelay({ retry_delay_ms: def.options.retryDelayMs ?? 0, backoff: def.options.backoff ?? 'fixed' }, attemptsMade + 1);
  }

  #onRunEnded(m: RunEndedMessage): void {
    const why = m.event === 'PipelineCancelledEvent' ? `was cancelled: ${m.reason}` : `ended (${m.event}) while this step was running`;
    getEngine(this.#host.broker).abortLocal(m.run_id, () => new CancelledError(`Run ${m.run_id} ${why}`));
  }
}
