import { format } from 'node:util';
import { FlowcastError, ErrorCodes, TimeoutError, toError } from './errors.js';
import { assertJson, type JsonValue } from './json.js';
import type { TaskContext, TaskDefinition } from './task.js';

/** Where a call's log lines and progress go. */
export interface CallSink {
  log(lines: string[]): void;
  progress(fraction: number, message: string | undefined): void;
}

/** Who a call is: its task, job and, for a pipeline step, run and step (the `ctx` fields). */
export interface CallInfo {
  runId: string | null;
  pipelineId: string | null;
  stepName: string | null;
  taskId: string;
  attempt: number;
  item: number | null;
  timeoutMs: number | undefined;
}

/**
 * The handle to abort one call from outside (run cancelled, run timed out). The call's
 * `ctx.signal` is created on first use only: most tasks never read it.
 */
export class CallControl {
  #controller: AbortController | null = null;
  #reason: Error | null = null;
  #reject: ((error: Error) => void) | null = null;

  get signal(): AbortSignal {
    if (this.#controller === null) {
      this.#controller = new AbortController();
      if (this.#reason !== null) this.#controller.abort(this.#reason);
    }
    return this.#controller.signal;
  }

  get aborted(): boolean {
    return this.#reason !== null;
  }

  get reason(): Error | null {
    return this.#reason;
  }

  /** Aborts the call: its signal fires and its promise rejects with `reason` at once. */
  abort(reason: Error): void {
    if (this.#reason !== null) return;
    this.#reason = reason;
    this.#controller?.abort(reason);
    this.#reject?.(reason);
  }

  /** @internal */
  bind(reject: (error: Error) => void): void {
    this.#reject = reject;
  }
}

/** Splits what `ctx.log(...)` received into lines. */
export function toLines(args: unknown[]): string[] {
  const out: string[] = [];
  for (const arg of args) {
    const text = typeof arg === 'string' ? arg : format('%O', arg);
    for (const line of text.split(/\r?\n/)) out.push(line);
  }
  return out;
}

function checkProgress(fraction: unknown, message: unknown): void {
  if (typeof fraction !== 'number' || !Number.isFinite(fraction) || fraction < 0 || fraction > 1) {
    throw new FlowcastError(ErrorCodes.INVALID_ARGUMENT, `ctx.progress(fraction): fraction must be a number from 0 to 1, received ${String(fraction)}`);
  }
  if (message !== undefined && typeof message !== 'string') {
    throw new FlowcastError(ErrorCodes.INVALID_ARGUMENT, `ctx.progress(fraction, message): message must be a string, received ${typeof message}`);
  }
}

/**
 * Runs one call of a task: builds its context, enforces the time limit and aborts,
 * and checks that the result is JSON (`undefined` becomes `null`). Rejects with a
 * FlowcastError (TIMEOUT, CANCELLED, NOT_JSON) or the task's own error.
 */
export function executeCall(
  def: TaskDefinition,
  input: JsonValue,
  info: CallInfo,
  sink: CallSink,
  control: CallControl = new CallControl(),
): Promise<JsonValue> {
  const ctx: TaskContext = {
    runId: info.runId,
    pipelineId: info.pipelineId,
    stepName: info.stepName,
    taskId: info.taskId,
    taskName: def.name,
    attempt: info.attempt,
    item: info.item,
    get signal() {
      return control.signal;
    },
    log: (...lines: unknown[]) => {
      if (lines.length > 0) sink.log(toLines(lines));
    },
    progress: (fraction: number, message?: string) => {
      checkProgress(fraction, message);
      sink.progress(fraction, message);
    },
  };
  return new Promise<JsonValue>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const fail = (error: Error): void => {
      if (timer !== undefined) clearTimeout(timer);
      reject(error);
    };
    control.bind(fail);
    if (control.aborted) {
      fail(control.reason ?? new Error('aborted'));
      return;
    }
    if (info.timeoutMs !== undefined) {
      const ms = info.timeoutMs;
      timer = setTimeout(() => control.abort(new TimeoutError(`Task "${def.name}" timed out after ${ms}ms`)), ms);
    }
    def.invoke(input, ctx).then(
      (result) => {
        if (timer !== undefined) clearTimeout(timer);
        if (control.aborted) {
          reject(control.reason ?? new Error('aborted'));
          return;
        }
        const value = result === undefined ? null : result;
        try {
          assertJson(value, `Result of task "${def.name}"`);
        } catch (error) {
          reject(toError(error));
          return;
        }
        resolve(value);
      },
      (error: unknown) => fail(toError(error)),
    );
  });
}
