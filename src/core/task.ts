import type { JsonValue } from './json.js';

/** How the delay between retries grows. */
export type Backoff = 'fixed' | 'linear' | 'exponential';

/**
 * The single argument every task receives besides its input.
 * For a task started on its own with `task.kiq()`, `runId`, `pipelineId` and `stepName` are `null`.
 */
export interface TaskContext {
  /** The run this step belongs to. */
  readonly runId: string | null;
  /** The pipeline (definition) of the run. */
  readonly pipelineId: string | null;
  /** The step of the pipeline that runs this task. */
  readonly stepName: string | null;
  /** Id of the broker job executing this call. */
  readonly taskId: string;
  /** Name of the task. */
  readonly taskName: string;
  /** 1 for the first try, 2 for the first retry... */
  readonly attempt: number;
  /** For map/filter/group steps: index of the item (or grouped task) this call handles. */
  readonly item: number | null;
  /** Aborted when the run is cancelled or the step times out: pass it on to fetch, streams, child processes. */
  readonly signal: AbortSignal;
  /** Appends lines to the run's log (a `StepLogEvent`). Non-strings are formatted; multi-line strings are split. */
  log(...lines: unknown[]): void;
  /** Reports progress between 0 and 1, with an optional message (a `StepProgressEvent`). */
  progress(fraction: number, message?: string): void;
}

/** A task body: JSON in, JSON (or a promise of it) out. */
export type TaskFn<I extends JsonValue = JsonValue, O extends JsonValue = JsonValue> = (
  input: I,
  ctx: TaskContext,
) => O | Promise<O>;

/** A task that runs in a worker thread: a module and the name of its exported function. */
export interface ThreadTaskSource {
  /** The module file (absolute path or `file:` URL) that exports the task function. */
  module: string | URL;
  /**
   * Name of the exported function.
   * @default "default"
   */
  export?: string;
}

/** Defaults for every call of a task; a pipeline step can override each. */
export interface TaskOptions {
  /**
   * How many times a failed call is retried.
   * @default 0
   */
  retries?: number;
  /**
   * Delay before the first retry, in milliseconds.
   * @default 0
   */
  retryDelayMs?: number;
  /**
   * How the delay grows from retry to retry.
   * @default "fixed"
   */
  backoff?: Backoff;
  /** Time limit of one call, in milliseconds. No limit when unset. */
  timeoutMs?: number;
}

/** A registered task as the broker keeps it. */
export interface TaskDefinition {
  readonly name: string;
  readonly options: Readonly<TaskOptions>;
  /** `true` when calls run in the broker's worker-thread pool. */
  readonly threaded: boolean;
  /** Runs one call. The broker decides where (this thread or a worker thread). */
  invoke(input: JsonValue, ctx: TaskContext): Promise<JsonValue>;
}

/** Waits for a standalone task call. */
export interface TaskHandle<O extends JsonValue = JsonValue> {
  readonly taskId: string;
  readonly taskName: string;
  /** Resolves with the task's result, rejects with its error or after `timeoutMs`. */
  waitResult(options?: { timeoutMs?: number }): Promise<O>;
}

/**
 * A typed task: what `broker.task()` returns. Its input and output types flow into
 * pipelines and `kiq()`.
 */
export interface Task<I extends JsonValue = JsonValue, O extends JsonValue = JsonValue> {
  readonly taskName: string;
  readonly options: Readonly<TaskOptions>;
  /** Sends one call of the task to the broker. The input must be JSON. */
  kiq(input: I): Promise<TaskHandle<O>>;
  /** Phantom fields that carry the types; never set at run time. */
  readonly __input?: I;
  readonly __output?: O;
}

/** The input type of a task handle. */
export type TaskInput<T> = T extends Task<infer I, JsonValue> ? I : never;
/** The result type of a task handle. */
export type TaskOutput<T> = T extends Task<JsonValue, infer O> ? O : never;
