import { format } from 'node:util';
import { FlowcastError, ErrorCodes, TimeoutError, CancelledError, toError } from './errors.js';
import { assertJson, type JsonValue } from './json.js';
import type { TaskContext, TaskDefinition } from './task.js';

/** Where a call's log lines and progress go. */
export interface CallSink {
  log(lines: string[]): void;
  progress(fraction: number, message: string | undefined): void;
}

export interface CallInfo {
  runId: string | null;
  pipelineId: string | null;
  stepName: string | null;
  taskId: string;
  attempt: number;
  item: number | null;
  timeoutMs: number | undefined;
  /** Aborts the call from outside (run cancelled, run timed out, broker closing). */
  signal?: AbortSignal;
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

/**
 * Runs one call of a task: builds its context, enforces the time limit and the abort
 * signal, and checks the result is JSON. Resolves with the result or rejects with a
 * FlowcastError (TIMEOUT, CANCELLED, NOT_JSON) or the task's own error.
 */
export async function executeCall(def: TaskDefinition, input: JsonValue, info: CallInfo, sink: CallSink): Promise<JsonValue> {
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  let rejectAbort: ((error: Error) => void) | undefined;
  const aborted = new Promise<never>((_, reject) => {
    rejectAbort = reject;
  });
  const abort = (error: Error): void => {
    if (controller.signal.aborted) return;
    controller.abort(error);
    rejectAbort?.(error);
  };
  const onOuterAbort = (): void => {
    const reason: unknown = info.signal?.reason;
    abort(reason instanceof Error ? reason : new CancelledError(`Task "${def.name}" was cancelled`));
  };
  if (info.signal?.aborted) onOuterAbort();
  info.signal?.addEventListener('abort', onOuterAbort, { once: true });
  if (info.timeoutMs !== undefined) {
    const ms = info.timeoutMs;
    timer = setTimeout(() => abort(new TimeoutError(`Task "${def.name}" timed out after ${ms}ms`)), ms);
  }
  const ctx: TaskContext = {
    runId: info.runId,
    pipelineId: info.pipelineId,
    stepName: info.stepName,
    taskId: info.taskId,
    taskName: def.name,
    attempt: info.attempt,
    item: info.item,
    signal: controller.signal,
    log: (...lines: unknown[]) => {
      if (lines.length > 0) sink.log(toLines(lines));
    },
    progress: (fraction: number, message?: string) => {
      if (typeof fraction !== 'number' || !Number.isFinite(fraction) || fraction < 0 || fraction > 1) {
        throw new FlowcastError(ErrorCodes.INVALID_ARGUMENT, `ctx.progress(fraction): fraction must be a number from 0 to 1, received ${String(fraction)}`);
      }
      if (message !== undefined && typeof message !== 'string') {
        throw new FlowcastError(ErrorCodes.INVALID_ARGUMENT, `ctx.progress(fraction, message): message must be a string`);
      }
      sink.progress(fraction, message);
    },
  };
  aborted.catch(() => undefined);
  try {
    if (controller.signal.aborted) throw toError(controller.signal.reason);
    const result = await Promise.race([def.invoke(input, ctx), aborted]);
    if (controller.signal.aborted) throw toError(controller.signal.reason);
    const value = result === undefined ? null : result;
    assertJson(value, `Result of task "${def.name}"`);
    return value;
  } finally {
    if (timer !== undefined) clearTimeout(timer);
    info.signal?.removeEventListener('abort', onOuterAbort);
  }
}
