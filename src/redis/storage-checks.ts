/** Input checks of {@link RedisPipelineStorage}: each throws an InvalidArgumentError naming the argument and the value received. */
import { InvalidArgumentError } from '../core/errors.js';
import { checkNonEmptyString, checkNonNegativeInt, checkObject, checkOneOf, checkPositiveInt, show } from '../core/validate.js';
import type { FlowcastEvent } from '../events/types.js';
import { PIPELINE_STATUSES, type PipelineStatus } from '../tracking/models.js';
import type { RedisClient } from './storage-lua.js';

/**
 * `true` for an ioredis `Redis` or `Cluster` client (duck-typed on the commands the
 * storage uses, so that modules outside src/redis need not import ioredis to check).
 */
export function isRedisClient(value: unknown): value is RedisClient {
  if (typeof value !== 'object' || value === null) return false;
  const r = value as Record<string, unknown>;
  return ['evalsha', 'eval', 'hget', 'zadd', 'zrevrangebyscore'].every((m) => typeof r[m] === 'function');
}

/** `status` if it looks like a PipelineStatus a storage can keep. */
export function checkStatusObject(status: unknown): PipelineStatus {
  const s = checkObject(status, 'saveStatus(status)');
  checkNonEmptyString(s.run_id, 'saveStatus(status): status.run_id');
  checkNonEmptyString(s.pipeline_id, 'saveStatus(status): status.pipeline_id');
  checkOneOf(s.status, PIPELINE_STATUSES, 'saveStatus(status): status.status');
  checkNonNegativeInt(s.last_seq, 'saveStatus(status): status.last_seq');
  if (!Array.isArray(s.steps)) throw new InvalidArgumentError(`saveStatus(status): status.steps must be an array, received ${show(s.steps)}`);
  return status as PipelineStatus;
}

/** `event` if it looks like a FlowcastEvent a storage can apply. */
export function checkEvent(event: unknown): FlowcastEvent {
  const e = checkObject(event, 'applyEvent(event)');
  checkNonEmptyString(e.type, 'applyEvent(event): event.type');
  checkNonEmptyString(e.run_id, 'applyEvent(event): event.run_id');
  checkNonEmptyString(e.pipeline_id, 'applyEvent(event): event.pipeline_id');
  checkPositiveInt(e.seq, 'applyEvent(event): event.seq');
  return event as FlowcastEvent;
}

/** `value` if it is a valid Date. */
export function checkDate(value: unknown, name: string): Date {
  if (!(value instanceof Date) || Number.isNaN(value.getTime())) throw new InvalidArgumentError(`${name} must be a valid Date, received ${show(value)}`);
  return value;
}

/** Newest `started_at` first, runs that never started last (the order of every list query). */
export function newestStartedFirst(a: PipelineStatus, b: PipelineStatus): number {
  if (a.started_at === b.started_at) return 0;
  if (a.started_at === null) return 1;
  if (b.started_at === null) return -1;
  return Date.parse(b.started_at) - Date.parse(a.started_at);
}
