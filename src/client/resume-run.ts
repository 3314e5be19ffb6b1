/**
 * `resumeRun()`: continues a FAILED or CANCELLED run through a flowcast server's REST API
 * (`POST /api/runs/{run_id}/resume`), with `fetch`: browsers and Node 20 alike.
 */
import { ErrorCodes, FlowcastError, InvalidArgumentError } from '../core/errors.js';
import { show } from '../core/validate.js';
import { postAction, type RestActionCode, type RestActionError, type RestActionOptions } from './rest-post.js';

/** Options of {@link resumeRun}: where the server is; the token needs the `resume` action on the run's pipeline. */
export type ResumeRunOptions = RestActionOptions;

/** The resumed run, as the server answered (202). */
export interface ResumedRun {
  /** The same run: a resume is a new attempt of it, not a new run. */
  run_id: string;
  pipeline_id: string;
  /** `RUNNING`. */
  status: string;
  /** The attempt that started: 2 for the first resume. */
  attempt: number;
  /** Steps that completed before: their results are kept, they do not run again. */
  kept_steps: string[];
  /** Steps that run in this attempt. */
  pending_steps: string[];
  /** Seq of the run's `PipelineResumeEvent`: follow the run from `seq - 1` to see this attempt. */
  seq: number;
}

/**
 * A resume the server refused: `RUN_NOT_RESUMABLE` (the run is RUNNING or COMPLETED:
 * `runStatus` says which), `ALREADY_RUNNING` (its concurrency group is full: `runId`
 * names the run in the way), `UNAUTHORIZED`, `REQUEST_REJECTED` (unknown run, forbidden:
 * `serverCode` says which), or `CONNECTION_FAILED`.
 */
export class ResumeRunError extends FlowcastError {
  override readonly name = 'ResumeRunError';
  constructor(
    code: RestActionCode,
    message: string,
    /** HTTP status; 0 when the server could not be reached. */
    readonly status: number,
    /** The server's error code (`run_not_resumable`, `already_running`, `run_not_found`, `forbidden`...). */
    readonly serverCode: string | undefined,
    /** With `ALREADY_RUNNING`: a run in flight that holds a slot of the group. */
    readonly runId: string | undefined,
    /** With `RUN_NOT_RESUMABLE`: the run's status (`RUNNING`, `COMPLETED`), `null` when its record expired. */
    readonly runStatus: string | null | undefined,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}

/**
 * Resumes a FAILED or CANCELLED run on a flowcast server: the run (same id) starts a new
 * attempt that keeps the results of the steps that completed and runs the others; its
 * events continue the run's log. Resolves with the run once the attempt started. Rejects
 * with a {@link ResumeRunError}: for a RUNNING or COMPLETED run its code is `RUN_NOT_RESUMABLE`.
 * Retry, by contrast, starts a new run from the beginning.
 *
 * @example
 * import { resumeRun, ErrorCodes } from 'flowcast/client';
 * try {
 *   const run = await resumeRun(runId, { url: 'http://localhost:8765', token });
 *   console.log(`attempt ${run.attempt}: kept ${run.kept_steps.join(', ')}, running ${run.pending_steps.join(', ')}`);
 * } catch (error) {
 *   if (error instanceof ResumeRunError && error.code === ErrorCodes.RUN_NOT_RESUMABLE) console.log('not resumable:', error.runStatus);
 * }
 */
export async function resumeRun(runId: string, options: ResumeRunOptions): Promise<ResumedRun> {
  if (typeof runId !== 'string' || runId === '') throw new InvalidArgumentError(`runId must be a non-empty string, received ${show(runId)}`);
  const fail: RestActionError = (code, message, status, serverCode, error, cause) => {
    const holder = typeof error?.run_id === 'string' ? error.run_id : undefined;
    const runStatus = error === null || !('status' in error) ? undefined : typeof error.status === 'string' ? error.status : null;
    return new ResumeRunError(code, message, status, serverCode, holder, runStatus, cause === undefined ? undefined : { cause });
  };
  const { status, answer } = await postAction(options, `/api/runs/${encodeURIComponent(runId)}/resume`, undefined, fail);
  if (answer === null || typeof answer.run_id !== 'string') {
    throw new ResumeRunError(ErrorCodes.REQUEST_REJECTED, `the server answered ${status} without a run`, status, undefined, undefined, undefined);
  }
  const strings = (v: unknown): string[] => (Array.isArray(v) ? v.filter((s): s is string => typeof s === 'string') : []);
  return {
    run_id: answer.run_id,
    pipeline_id: String(answer.pipeline_id),
    status: String(answer.status),
    attempt: Number(answer.attempt),
    kept_steps: strings(answer.kept_steps),
    pending_steps: strings(answer.pending_steps),
    seq: Number(answer.seq),
  };
}
