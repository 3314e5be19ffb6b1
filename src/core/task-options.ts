import type { TaskOptions } from './task.js';
import { checkKnownKeys, checkNonNegativeInt, checkNonNegativeNumber, checkObject, checkOneOf, checkPositiveNumber } from './validate.js';

const BACKOFFS = ['fixed', 'linear', 'exponential'] as const;

/** Validates task/step retry and timeout options; errors name the option and the value. */
export function normalizeTaskOptions(options: unknown, where: string, extraKeys: readonly string[] = []): TaskOptions {
  const o = checkObject(options, where);
  checkKnownKeys(o, ['retries', 'retryDelayMs', 'backoff', 'timeoutMs', ...extraKeys], where);
  const out: TaskOptions = {};
  if (o.retries !== undefined) out.retries = checkNonNegativeInt(o.retries, `${where}: retries`);
  if (o.retryDelayMs !== undefined) out.retryDelayMs = checkNonNegativeNumber(o.retryDelayMs, `${where}: retryDelayMs`);
  if (o.backoff !== undefined) out.backoff = checkOneOf(o.backoff, BACKOFFS, `${where}: backoff`);
  if (o.timeoutMs !== undefined) out.timeoutMs = checkPositiveNumber(o.timeoutMs, `${where}: timeoutMs`);
  return out;
}
