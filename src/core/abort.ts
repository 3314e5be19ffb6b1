/**
 * AbortSignal support of long-running calls (tracking cleanup, deletes, prune passes):
 * the option is checked like any other, and the call checks the signal between its
 * round trips, so it stops within the one in flight.
 */
import { AbortedError, InvalidArgumentError } from './errors.js';
import { show } from './validate.js';

/** `value` as an AbortSignal, `undefined` when not given; throws an InvalidArgumentError naming `name` otherwise. */
export function checkSignal(value: unknown, name: string): AbortSignal | undefined {
  if (value === undefined) return undefined;
  if (!(value instanceof AbortSignal)) throw new InvalidArgumentError(`${name} must be an AbortSignal, received ${show(value)}`);
  return value;
}

/**
 * Throws an {@link AbortedError} when `signal` is aborted: `what` names the call, `done`
 * (when given) says how far it got, e.g. `"deleting 1000 runs"`.
 */
export function throwIfAborted(signal: AbortSignal | undefined, what: string, done?: string): void {
  if (signal === undefined || !signal.aborted) return;
  const reason: unknown = signal.reason;
  const why = reason instanceof Error ? `: ${reason.message}` : typeof reason === 'string' ? `: ${reason}` : '';
  throw new AbortedError(`${what} was aborted${done === undefined ? '' : ` after ${done}`}${why}`, reason);
}
