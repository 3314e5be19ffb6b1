/**
 * The argument checks every `EventTransport` makes, in one place: the same mistake gets the
 * same `InvalidArgumentError`, with the same message, from the in-memory and the Redis
 * transport (the conformance suite checks it).
 */
import { InvalidArgumentError } from '../core/errors.js';
import { checkId, checkNonNegativeNumber, checkPositiveInt, show } from '../core/validate.js';
import type { Channel, EventListener } from './transport.js';

/** `listener` of `subscribe(channel, listener)`. */
export function checkListener(listener: unknown): EventListener {
  if (typeof listener !== 'function') throw new InvalidArgumentError(`subscribe(channel, listener): listener must be a function, received ${show(listener)}`);
  return listener as EventListener;
}

/** `channel` of `subscribe(channel, listener)`: `"*"`, `{ runId }` or `{ pipelineId }` with a valid id. */
export function checkChannel(channel: unknown): Channel {
  if (channel === '*') return channel;
  if (typeof channel === 'object' && channel !== null) {
    if ('runId' in channel) return { runId: checkId(channel.runId, 'subscribe(channel): runId') };
    if ('pipelineId' in channel) return { pipelineId: checkId(channel.pipelineId, 'subscribe(channel): pipelineId') };
  }
  throw new InvalidArgumentError(`subscribe(channel): channel must be "*", { runId } or { pipelineId }, received ${show(channel)}`);
}

/** The options of `read(runId, options)`: `since` ≥ 0 (whole: a fraction is rounded down), `limit` ≥ 1 or none. */
export function checkReadOptions(options: { since?: unknown; limit?: unknown }): { since: number; limit: number | undefined } {
  const since = Math.floor(checkNonNegativeNumber(options.since ?? 0, 'read(runId, options): since'));
  const limit = options.limit === undefined ? undefined : checkPositiveInt(options.limit, 'read(runId, options): limit');
  return { since, limit };
}
