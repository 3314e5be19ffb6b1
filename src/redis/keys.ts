/**
 * Every Redis key and channel name flowcast uses, in one place.
 *
 * Keys that belong to one run carry the run id as a hash tag (`{<run_id>}`), so all of a
 * run's keys live in one Redis Cluster slot and a Lua script may touch them together.
 * Keys shared by many runs (indexes, engine status) have no run tag: a script never
 * touches them together with a run's keys, so the layout is Cluster-safe.
 *
 * Each part (run state, event transport, tracking, broker) has its own section below.
 */
import { InvalidArgumentError } from '../core/errors.js';
import { show } from '../core/validate.js';

/** The prefix used when none is given. */
export const DEFAULT_KEY_PREFIX = 'flowcast:';

/** Checks a key prefix: 1-100 printable characters without spaces or braces (braces would break the hash tags). */
export function checkKeyPrefix(prefix: unknown, name = 'keyPrefix'): string {
  if (typeof prefix !== 'string' || !/^[\x21-\x7a\x7c\x7e]{1,100}$/.test(prefix)) {
    throw new InvalidArgumentError(`${name} must be 1-100 printable characters without spaces or { }, received ${show(prefix)}`);
  }
  return prefix;
}

/** `{<run_id>}`: the hash tag that keeps a run's keys in one Cluster slot. */
export function runTag(runId: string): string {
  return `{${runId}}`;
}
