/** Task definitions of the BullMQ broker: function tasks, and thread tasks on a worker-thread pool. */
import { InvalidArgumentError, toError } from '../core/errors.js';
import type { JsonValue } from '../core/json.js';
import type { TaskDefinition, TaskFn, TaskOptions, ThreadTaskSource } from '../core/task.js';
import { normalizeTaskOptions } from '../core/task-options.js';
import { moduleHref, type ThreadPool } from '../core/thread-pool.js';

/** Builds the definition of task `name` (options checked); thread tasks need `pool`. */
export function defineTask<I extends JsonValue, O extends JsonValue>(
  name: string,
  fn: TaskFn<I, O> | ThreadTaskSource,
  options: TaskOptions,
  pool: ThreadPool | null,
): TaskDefinition {
  const opts = normalizeTaskOptions(options, `task "${name}" options`);
  if (typeof fn === 'function') {
    const body = fn as unknown as TaskFn;
    return {
      name,
      options: opts,
      threaded: false,
      invoke: (input, ctx) => {
        try {
          return Promise.resolve(body(input, ctx));
        } catch (error) {
          return Promise.reject(toError(error));
        }
      },
    };
  }
  if (typeof fn === 'object' && fn !== null && 'module' in fn) {
    const href = moduleHref(fn, name);
    const exportName = fn.export ?? 'default';
    if (pool === null) throw new InvalidArgumentError(`Thread task "${name}" needs a broker created with { threads: true } (or thread pool options)`);
    return { name, options: opts, threaded: true, invoke: (input, ctx) => pool.run(href, exportName, input, ctx) };
  }
  throw new InvalidArgumentError(`broker.task("${name}", fn): fn must be a function or { module }, received ${typeof fn}`);
}
