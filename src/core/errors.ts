/**
 * Every error flowcast throws is a {@link FlowcastError} with a literal `code`
 * from this catalogue, so callers can branch on `err.code` instead of on messages.
 */
export const ErrorCodes = {
  /** An argument or option has the wrong type or value. */
  INVALID_ARGUMENT: 'FLOWCAST_ERR_INVALID_ARGUMENT',
  /** An optional peer package that the feature needs (server, Redis) is not installed. */
  MISSING_PACKAGE: 'FLOWCAST_ERR_MISSING_PACKAGE',
  /** A value that must travel as JSON is not JSON (function, undefined, NaN, class instance, cycle...). */
  NOT_JSON: 'FLOWCAST_ERR_NOT_JSON',
  /** A job names a task that is not registered on the broker. */
  UNKNOWN_TASK: 'FLOWCAST_ERR_UNKNOWN_TASK',
  /** A task with this name is already registered. */
  DUPLICATE_TASK: 'FLOWCAST_ERR_DUPLICATE_TASK',
  /** A dataflow graph has a cycle. */
  DAG_CYCLE: 'FLOWCAST_ERR_DAG_CYCLE',
  /** A dataflow step depends on a step that does not exist. */
  DAG_UNKNOWN_DEPENDENCY: 'FLOWCAST_ERR_DAG_UNKNOWN_DEPENDENCY',
  /** Two steps of one pipeline share a name. */
  DUPLICATE_STEP: 'FLOWCAST_ERR_DUPLICATE_STEP',
  /**
   * No longer thrown: a pipeline without steps completes at once (see docs/pipelines.md).
   * @deprecated kept so that code comparing against it still compiles.
   */
  EMPTY_PIPELINE: 'FLOWCAST_ERR_EMPTY_PIPELINE',
  /** A step or a whole run exceeded its time limit. */
  TIMEOUT: 'FLOWCAST_ERR_TIMEOUT',
  /** Waiting for a result took longer than the caller allowed. */
  WAIT_TIMEOUT: 'FLOWCAST_ERR_WAIT_TIMEOUT',
  /** The run was cancelled. */
  CANCELLED: 'FLOWCAST_ERR_CANCELLED',
  /** A call was stopped by the AbortSignal it was given (its error's `name` is `"AbortError"`). */
  ABORTED: 'FLOWCAST_ERR_ABORTED',
  /** A task threw, or a run failed because a step failed. */
  TASK_FAILED: 'FLOWCAST_ERR_TASK_FAILED',
  /** The run failed. `cause` holds the step's error. */
  PIPELINE_FAILED: 'FLOWCAST_ERR_PIPELINE_FAILED',
  /** A map or filter step received something that is not an array. */
  NOT_AN_ARRAY: 'FLOWCAST_ERR_NOT_AN_ARRAY',
  /** Tracking was used before a storage was configured. */
  NO_STORAGE: 'FLOWCAST_ERR_NO_STORAGE',
  /** A cron expression or schedule could not be parsed. */
  BAD_SCHEDULE: 'FLOWCAST_ERR_BAD_SCHEDULE',
  /** A run, schedule or record was not found. */
  NOT_FOUND: 'FLOWCAST_ERR_NOT_FOUND',
  /** The component was closed. */
  CLOSED: 'FLOWCAST_ERR_CLOSED',
  /** The server rejected the token (WebSocket close code 4001). */
  UNAUTHORIZED: 'FLOWCAST_ERR_UNAUTHORIZED',
  /** A connection could not be opened, or was lost and could not be opened again. */
  CONNECTION_FAILED: 'FLOWCAST_ERR_CONNECTION_FAILED',
  /** The server answered a request with an `error` message (its code is in `serverCode`). */
  REQUEST_REJECTED: 'FLOWCAST_ERR_REQUEST_REJECTED',
  /** A bounded buffer overflowed: its consumer fell too far behind. */
  OVERFLOW: 'FLOWCAST_ERR_OVERFLOW',
  /** An optimistic update lost to concurrent writers more times than allowed. */
  CONFLICT: 'FLOWCAST_ERR_CONFLICT',
  /** The store of the event history (Redis) lost its data: seqs and offsets from before mean nothing now. */
  DATA_LOST: 'FLOWCAST_ERR_DATA_LOST',
  /** A start was refused by the pipeline's concurrency policy: as many runs as it allows are in flight. */
  ALREADY_RUNNING: 'FLOWCAST_ERR_ALREADY_RUNNING',
  /** A resume was refused: the run is running or completed, unknown, or its record or log is gone. */
  RUN_NOT_RESUMABLE: 'FLOWCAST_ERR_RUN_NOT_RESUMABLE',
  /** A run or step move the state machine does not allow (pipeline/state-machine.ts): a bug in flowcast. */
  INVALID_STATE: 'FLOWCAST_ERR_INVALID_STATE',
} as const;

/** The `code` of a {@link FlowcastError}: one of {@link ErrorCodes}. */
export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

/** The base class of every error flowcast throws. */
export class FlowcastError extends Error {
  override readonly name: string = 'FlowcastError';
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/** Thrown when an argument or option is invalid. Also a `TypeError`-like FlowcastError. */
export class InvalidArgumentError extends FlowcastError {
  override readonly name = 'InvalidArgumentError';
  constructor(message: string) {
    super(ErrorCodes.INVALID_ARGUMENT, message);
  }
}

/** Thrown when a value that must be JSON is not. `path` points at the offending part. */
export class NotJsonError extends FlowcastError {
  override readonly name = 'NotJsonError';
  readonly path: string;
  constructor(what: string, path: string, reason: string) {
    super(ErrorCodes.NOT_JSON, `${what} must be JSON: ${path} ${reason}`);
    this.path = path;
  }
}

/** A step or run exceeded its time limit. */
export class TimeoutError extends FlowcastError {
  override readonly name = 'TimeoutError';
  constructor(message: string) {
    super(ErrorCodes.TIMEOUT, message);
  }
}

/** The run was cancelled; waiting callers reject with this. */
export class CancelledError extends FlowcastError {
  override readonly name = 'CancelledError';
  constructor(message: string) {
    super(ErrorCodes.CANCELLED, message);
  }
}

/**
 * A call was stopped by the `AbortSignal` it was given. Its `name` is `"AbortError"`, as
 * for the platform's own aborts (`fetch`, timers), its `code` is `ABORTED`, and `cause` is
 * the signal's `reason`.
 */
export class AbortedError extends FlowcastError {
  override readonly name = 'AbortError';
  constructor(message: string, reason?: unknown) {
    super(ErrorCodes.ABORTED, message, { cause: reason });
  }
}

/**
 * A start refused by the pipeline's concurrency policy (`concurrency.limit` runs of the
 * same key are in flight). `runId` is a run in the way.
 */
export class AlreadyRunningError extends FlowcastError {
  override readonly name = 'AlreadyRunningError';
  constructor(
    message: string,
    /** A run holding a slot of the key: the one in the way. */
    readonly runId: string,
    /** The concurrency key (`""` for the pipeline-wide limit). */
    readonly concurrencyKey: string,
  ) {
    super(ErrorCodes.ALREADY_RUNNING, message);
  }
}

/**
 * A resume refused: only a FAILED or CANCELLED run whose record and event log are still
 * held can continue. `status` is the run's status (`null`: unknown run, or its record or
 * log expired).
 */
export class RunNotResumableError extends FlowcastError {
  override readonly name = 'RunNotResumableError';
  constructor(
    message: string,
    /** The run. */
    readonly runId: string,
    /** Its status when the resume was refused, `null` when the run is unknown or its record or log is gone. */
    readonly status: 'RUNNING' | 'COMPLETED' | 'FAILED' | 'CANCELLED' | null,
  ) {
    super(ErrorCodes.RUN_NOT_RESUMABLE, message);
  }
}

/** Formats any thrown value as the `error` string of an event: `"Name: message"`. */
export function describeError(err: unknown): string {
  if (err instanceof Error) {
    const name = err.name && err.name !== 'Error' ? err.name : 'Error';
    return `${name}: ${err.message}`;
  }
  if (typeof err === 'string') return err;
  try {
    return `Non-error thrown: ${JSON.stringify(err)}`;
  } catch {
    return `Non-error thrown: ${String(err)}`;
  }
}

/** Wraps a thrown non-Error so that nothing but Errors ever travels on. */
export function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(describeError(err));
}
