import { randomBytes } from 'node:crypto';
import { FlowcastError, ErrorCodes, InvalidArgumentError } from '../core/errors.js';
import { assertJson, type JsonValue } from '../core/json.js';
import type { Broker } from './broker.js';
import type { Task } from '../core/task.js';
import { normalizeTaskOptions } from '../core/task-options.js';
import { checkId, checkNonNegativeNumber, checkPositiveNumber, show } from '../core/validate.js';
import { getEngine, type EventDispatcher, type EventRecorder, type RunEngine } from './engine.js';
import type { PipelinePlan, PlanStep } from './plan.js';
import type { RunRecord } from './run-state.js';
import { cancelRunOrQueued } from './run-queue.js';
import type { TSchema } from '@sinclair/typebox';
import type { SlotHolder } from '../core/run-slots.js';
import {
  DEFAULT_IDEMPOTENCY_WINDOW_MS,
  checkConcurrency,
  checkInputSchema,
  checkStartOptions,
  concurrencyGroup,
  guardedStart,
  runsInTheWay,
  validateInput,
  type CheckedConcurrency,
  type ConcurrencyPolicy,
  type StartOptions,
} from './run-guard.js';

/** Retry and timeout options of one step; each overrides the task's own default. */
export interface StepOptions {
  /** Name of the step, unique in the pipeline. Defaults to the task name (suffixed `_2`, `_3`... when repeated). */
  name?: string;
  /** Retries after a failed call. @default the task's, else 0 */
  retries?: number;
  /** Delay before the first retry, in milliseconds. @default the task's, else 0 */
  retryDelayMs?: number;
  /** How the retry delay grows. @default the task's, else "fixed" */
  backoff?: 'fixed' | 'linear' | 'exponential';
  /** Time limit of one call, in milliseconds. @default the task's, else none */
  timeoutMs?: number;
}

/** Options of a step that passes the previous result on. */
export interface CallOptions extends StepOptions {
  /** Pass the input as `{ ...args, [paramName]: input }` instead of as is. */
  paramName?: string;
  /** Fixed fields merged into the input (needs `paramName`). */
  args?: { [key: string]: JsonValue };
}

/** Options every pipeline takes. */
export interface PipelineOptions {
  /** The pipeline id events and tracking carry. @default `pipeline-` and 8 random hex digits */
  id?: string;
  /** Time limit of a whole run, in milliseconds. @default none */
  timeoutMs?: number;
  /** At most this many jobs (steps, or items of map/filter/group) of one run at a time. @default unlimited */
  maxParallel?: number;
  /**
   * The input a run takes, as a TypeBox schema (`Type.Object({ ... })`): `kiq()` and the
   * REST start refuse an input that does not match it, and OpenAPI shows it.
   * @default any JSON
   */
  inputSchema?: TSchema;
  /**
   * At most `limit` runs in flight at once, per key (see {@link ConcurrencyPolicy}); a
   * start over the limit throws an `AlreadyRunningError` naming a run in the way, or,
   * with `onLimit: "queue"`, waits its turn (`RunHandle.queued`).
   * @default no limit
   */
  concurrency?: ConcurrencyPolicy;
  /** How long an `idempotencyKey` of `kiq()` answers the run it started, in ms. @default 86400000 (24 hours) */
  idempotencyWindowMs?: number;
  /** One line saying what the pipeline does, shown by `GET /api/pipelines` and the dashboard. @default none */
  description?: string;
}

/** What {@link BasePipeline.concurrency} shows of a pipeline's policy. */
export interface ConcurrencyInfo {
  /** Runs of one key in flight at once. */
  readonly limit: number;
  /** `"pipeline"`: one key for every run; `"input"`: a key computed from each run's input (or given at the start). */
  readonly key: 'pipeline' | 'input';
  /** Safety expiry of a run's slot, in ms. */
  readonly slotTtlMs: number;
  /** What a start over the limit does: `"reject"` (an `AlreadyRunningError`) or `"queue"` (it waits its turn). @default "reject" */
  readonly onLimit?: 'reject' | 'queue';
}

/** The option names every pipeline takes. */
export const PIPELINE_OPTION_KEYS = ['id', 'timeoutMs', 'maxParallel', 'inputSchema', 'concurrency', 'idempotencyWindowMs', 'description'] as const;

/** A started run. */
export interface RunHandle<O extends JsonValue = JsonValue> {
  readonly runId: string;
  readonly pipelineId: string;
  /** `true` when `kiq()` started nothing: its `idempotencyKey` had started this run within the window. */
  readonly deduplicated: boolean;
  /**
   * Set when the start waits its turn (a policy with `onLimit: "queue"` over its limit):
   * its place when it queued (1: next) and the runs in the way. The run starts, under this
   * id, when a slot frees; `waitResult()` waits for it, `cancel()` takes it out of the queue.
   */
  readonly queued?: { readonly position: number; readonly waitingFor: string[] };
  /** Resolves with the run's result; rejects with the run's error, on cancel, or after `timeoutMs`. */
  waitResult(options?: { timeoutMs?: number }): Promise<O>;
  /** Cancels the run: the running step's `ctx.signal` is aborted and the run ends CANCELLED. `false` if it had ended. */
  cancel(reason?: string): Promise<boolean>;
  /** The engine's record of the run (status, steps, result), or `null` once evicted. */
  getRun(): Promise<RunRecord | null>;
}

/** A resumed run (`pipeline.resume()`): its handle, and what the new attempt keeps and runs again. */
export interface ResumedRunHandle<O extends JsonValue = JsonValue> extends RunHandle<O> {
  /** The attempt that started (2 for the first resume). */
  readonly attempt: number;
  /** Steps that completed before: their results are kept, they do not run again. */
  readonly keptSteps: string[];
  /** Steps that run in this attempt. */
  readonly pendingSteps: string[];
  /** The seq of the run's `PipelineResumeEvent`. */
  readonly seq: number;
}

/** The options a step takes (anything else is refused). */
export const STEP_OPTION_KEYS = ['name', 'retries', 'retryDelayMs', 'backoff', 'timeoutMs'] as const;

/** What sequential and dataflow pipelines share: id, hooks, tracking, `kiq()`. */
export abstract class BasePipeline<I extends JsonValue, O extends JsonValue> {
  readonly broker: Broker;
  readonly #engine: RunEngine;
  #pipelineId: string;
  #timeoutMs: number | undefined;
  #maxParallel: number | undefined;
  readonly #inputSchema: TSchema | undefined;
  readonly #concurrency: CheckedConcurrency | undefined;
  readonly #idempotencyWindowMs: number;
  readonly #description: string | undefined;
  readonly #hooks = new Set<EventDispatcher>();
  readonly #tracking = new Set<EventRecorder>();
  #plan: PipelinePlan | null = null;

  constructor(broker: Broker, options: PipelineOptions) {
    if (typeof broker !== 'object' || broker === null || typeof (broker as Partial<Broker>).enqueue !== 'function') {
      throw new InvalidArgumentError(`Pipeline(broker): broker must be a Broker such as new InMemoryBroker(), received ${show(broker)}`);
    }
    this.broker = broker;
    this.#engine = getEngine(broker);
    this.#pipelineId = checkId(options.id ?? `pipeline-${randomBytes(4).toString('hex')}`, 'pipeline id');
    if (options.timeoutMs !== undefined) this.#timeoutMs = checkPositiveNumber(options.timeoutMs, 'timeoutMs');
    if (options.maxParallel !== undefined) {
      const n = options.maxParallel;
      if (typeof n !== 'number' || !Number.isInteger(n) || n < 1) {
        throw new InvalidArgumentError(`maxParallel must be an integer >= 1, received ${show(n)}`);
      }
      this.#maxParallel = n;
    }
    this.#inputSchema = options.inputSchema === undefined ? undefined : checkInputSchema(options.inputSchema);
    this.#concurrency = options.concurrency === undefined ? undefined : checkConcurrency(options.concurrency);
    this.#idempotencyWindowMs = options.idempotencyWindowMs === undefined ? DEFAULT_IDEMPOTENCY_WINDOW_MS : checkPositiveNumber(options.idempotencyWindowMs, 'idempotencyWindowMs');
    if (options.description !== undefined) {
      const d = options.description;
      if (typeof d !== 'string' || d.length > 500) throw new InvalidArgumentError(`description must be a string of at most 500 characters, received ${show(d)}`);
      this.#description = d;
    }
  }

  /** The `description` option, or `undefined`. */
  get description(): string | undefined {
    return this.#description;
  }

  /** The pipeline's concurrency policy (the `concurrency` option), or `undefined` when it has none. */
  get concurrency(): ConcurrencyInfo | undefined {
    const c = this.#concurrency;
    return c === undefined ? undefined : { limit: c.limit, key: c.key === undefined ? 'pipeline' : 'input', slotTtlMs: c.slotTtlMs, onLimit: c.onLimit };
  }

  /**
   * The runs in flight that would make a start answer `AlreadyRunningError` now: `[]`
   * when a start would pass the concurrency policy (or the pipeline has none). A policy
   * keyed on the input needs the key (`concurrencyKey`), else `[]`. Reads only.
   *
   * @example
   * const [holder] = await pipeline.startBlockedBy();
   * if (holder !== undefined) console.log(`busy with run ${holder.run_id}`);
   */
  async startBlockedBy(options: { concurrencyKey?: string } = {}): Promise<SlotHolder[]> {
    const c = this.#concurrency;
    if (c === undefined) return [];
    const key = options.concurrencyKey ?? (c.key === undefined ? '' : undefined);
    if (key === undefined) return [];
    return runsInTheWay(this.broker, concurrencyGroup(this.#pipelineId, key), c.limit);
  }

  /** The schema a run's input must match (the `inputSchema` option), or `undefined`. */
  get inputSchema(): TSchema | undefined {
    return this.#inputSchema;
  }

  /** The id every event and tracking record of this pipeline's runs carries. */
  get pipelineId(): string {
    return this.#pipelineId;
  }

  set pipelineId(id: string) {
    this.#pipelineId = checkId(id, 'pipeline id');
    this.invalidatePlan();
  }

  /** Subclasses call this whenever the definition changes. */
  protected invalidatePlan(): void {
    this.#plan = null;
  }

  /** Sends every event of this pipeline's runs to `hooks`. */
  withHooks(hooks: EventDispatcher): this {
    if (typeof hooks !== 'object' || hooks === null || typeof hooks.dispatch !== 'function') {
      throw new InvalidArgumentError('withHooks(hooks): hooks must be a HookManager');
    }
    this.#hooks.add(hooks);
    // Bound now, not only at kiq(): a worker process that defines the pipeline but never
    // starts a run still dispatches the events of the runs it progresses.
    this.#engine.bind(this.#pipelineId, [], [hooks]);
    return this;
  }

  /** Records every run of this pipeline in `tracking` (a PipelineTrackingManager). */
  withTracking(tracking: EventRecorder): this {
    if (typeof tracking !== 'object' || tracking === null || typeof tracking.record !== 'function') {
      throw new InvalidArgumentError('withTracking(tracking): tracking must be a PipelineTrackingManager');
    }
    this.#tracking.add(tracking);
    // As in withHooks(): a worker records the runs it progresses, started anywhere.
    this.#engine.bind(this.#pipelineId, [tracking], []);
    return this;
  }

  /** Time limit of a whole run in ms, or `undefined`. */
  get timeoutMs(): number | undefined {
    return this.#timeoutMs;
  }

  set timeoutMs(ms: number | undefined) {
    this.#timeoutMs = ms === undefined ? undefined : checkPositiveNumber(ms, 'timeoutMs');
    this.invalidatePlan();
  }

  /** The plan the engine runs: plain JSON, stored with each run. */
  abstract toPlan(): PipelinePlan;

  protected planBase(): Pick<PipelinePlan, 'pipeline_id' | 'timeout_ms' | 'max_parallel'> {
    const base: Pick<PipelinePlan, 'pipeline_id' | 'timeout_ms' | 'max_parallel'> = { pipeline_id: this.#pipelineId };
    if (this.#timeoutMs !== undefined) base.timeout_ms = this.#timeoutMs;
    if (this.#maxParallel !== undefined) base.max_parallel = this.#maxParallel;
    return base;
  }

  /**
   * Starts a run. Resolves once the run is stored and its first steps are sent, with a
   * handle to wait for or cancel it. The input must be JSON. A pipeline with no steps
   * completes at once (a `PipelineStartEvent`, then a `PipelineCompleteEvent` with result
   * `null`): seed 001's health check runs one.
   *
   * `options.idempotencyKey` answers the run the same key started within the window
   * (`deduplicated: true`) instead of starting another; `options.concurrencyKey` is the
   * key of the pipeline's `concurrency` policy. Throws an `InvalidArgumentError` when the
   * input does not match `inputSchema`, an `AlreadyRunningError` over the policy's limit.
   */
  async kiq(input: I, options?: StartOptions): Promise<RunHandle<O>> {
    const start = options === undefined ? {} : checkStartOptions(options);
    // The plan is shared by runs and never mutated by the engine: build it once per definition.
    const plan = (this.#plan ??= this.toPlan());
    if (this.#inputSchema !== undefined) validateInput(this.#inputSchema, input, plan.pipeline_id);
    this.#engine.bind(plan.pipeline_id, this.#tracking, this.#hooks);
    if (start.idempotencyKey === undefined && this.#concurrency === undefined) {
      const runId = await this.#engine.startRun(plan, input);
      return runHandle<O>(this.#engine, runId, plan.pipeline_id);
    }
    const { runId, deduplicated, queued } = await guardedStart({
      broker: this.broker,
      pipelineId: plan.pipeline_id,
      plan,
      input,
      options: start,
      concurrency: this.#concurrency,
      idempotencyWindowMs: this.#idempotencyWindowMs,
      start: (id, slot) => this.#engine.startRun(plan, input, id, slot),
    });
    const handle = runHandle<O>(this.#engine, runId, plan.pipeline_id, deduplicated);
    return queued === undefined ? handle : { ...handle, queued: { position: queued.position, waitingFor: queued.holders.map((h) => h.run_id) } };
  }

  /**
   * Resumes a FAILED or CANCELLED run of this pipeline as a new attempt of the same run
   * (same run id, same log): the steps that completed keep their results and are not run
   * again; the others run from the first that did not finish, their inputs built from the
   * kept results. Its events continue the run's log after its terminal event, starting
   * with a `PipelineResumeEvent`. Unlike a retry (a new run from the start, `kiq()` again),
   * nothing that completed is redone. The pipeline's concurrency policy applies as to a start.
   *
   * Throws a `RunNotResumableError` (code `FLOWCAST_ERR_RUN_NOT_RESUMABLE`) for a run that
   * is RUNNING or COMPLETED, unknown, of another pipeline, or whose record or log expired;
   * an `AlreadyRunningError` when the concurrency policy has no free slot.
   *
   * @example
   * const run = await pipeline.kiq(input);
   * await run.waitResult().catch(() => undefined); // failed at step 2
   * const again = await pipeline.resume(run.runId);
   * const result = await again.waitResult();      // step 1 did not run again
   */
  async resume(runId: string): Promise<ResumedRunHandle<O>> {
    const plan = (this.#plan ??= this.toPlan());
    this.#engine.bind(plan.pipeline_id, this.#tracking, this.#hooks);
    const options: { pipelineId: string; limit?: number } = { pipelineId: plan.pipeline_id };
    if (this.#concurrency !== undefined) options.limit = this.#concurrency.limit;
    const resumed = await this.#engine.resume(runId, options);
    return { ...runHandle<O>(this.#engine, runId, plan.pipeline_id), attempt: resumed.attempt, keptSteps: resumed.keptSteps, pendingSteps: resumed.pendingSteps, seq: resumed.seq };
  }

  /** Checks that `task` is registered on this pipeline's broker. */
  protected checkTask(task: Task<never, JsonValue> | Task, where: string): string {
    if (typeof task !== 'object' || task === null || typeof task.taskName !== 'string') {
      throw new InvalidArgumentError(`${where}: expected a task created with broker.task(), received ${show(task)}`);
    }
    if (this.broker.getTask(task.taskName) === undefined) {
      throw new FlowcastError(ErrorCodes.UNKNOWN_TASK, `${where}: task "${task.taskName}" is not registered on this pipeline's broker`);
    }
    return task.taskName;
  }

  /** Builds a plan step from options, the task's defaults and the call site's extras. */
  protected planStep(
    name: string,
    index: number,
    kind: PlanStep['kind'],
    tasks: (Task<never, JsonValue> | Task)[],
    options: CallOptions,
    dependsOn: string[],
  ): PlanStep {
    const where = `step "${name}"`;
    const { name: _name, paramName, args, ...rest } = options;
    const own = normalizeTaskOptions(rest, `${where} options`);
    const defaults = tasks[0]?.options ?? {};
    const step: PlanStep = {
      name,
      index,
      kind,
      tasks: tasks.map((t) => t.taskName),
      depends_on: dependsOn,
      retries: own.retries ?? defaults.retries ?? 0,
      retry_delay_ms: own.retryDelayMs ?? defaults.retryDelayMs ?? 0,
      backoff: own.backoff ?? defaults.backoff ?? 'fixed',
    };
    const timeout = own.timeoutMs ?? defaults.timeoutMs;
    if (timeout !== undefined) step.timeout_ms = timeout;
    if (paramName !== undefined) {
      if (typeof paramName !== 'string' || paramName.length === 0) {
        throw new InvalidArgumentError(`${where}: paramName must be a non-empty string, received ${show(paramName)}`);
      }
      step.param_name = paramName;
    }
    if (args !== undefined) {
      if (typeof args !== 'object' || args === null || Array.isArray(args)) {
        throw new InvalidArgumentError(`${where}: args must be an object, received ${show(args)}`);
      }
      if (paramName === undefined && kind !== 'after') {
        throw new InvalidArgumentError(`${where}: args needs paramName (the field that receives the previous result)`);
      }
      assertJson(args, `${where}: args`);
      step.args = structuredClone(args);
    }
    return step;
  }
}

/** A handle for a run that any process can build from its id. */
export function runHandle<O extends JsonValue>(engine: RunEngine, runId: string, pipelineId: string, deduplicated = false): RunHandle<O> {
  return {
    runId,
    pipelineId,
    deduplicated,
    waitResult: async (options: { timeoutMs?: number } = {}) => {
      if (options.timeoutMs !== undefined) checkNonNegativeNumber(options.timeoutMs, 'timeoutMs');
      return (await engine.waitForRun(runId, options.timeoutMs)) as O;
    },
    cancel: (reason?: string) => cancelRunOrQueued(engine, runId, reason),
    getRun: () => engine.getRun(runId),
  };
}
