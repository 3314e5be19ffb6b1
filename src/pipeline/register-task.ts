/**
 * `broker.task()` for every broker: checks the name and options, builds the task's
 * definition (a function, or a module run on a worker-thread pool), registers it, and
 * returns the handle whose `kiq()` enqueues a task job and waits for its result through
 * the broker.
 */
import { randomUUID } from 'node:crypto';
import { ErrorCodes, FlowcastError, InvalidArgumentError, toError } from '../core/errors.js';
import { assertJson, type JsonValue } from '../core/json.js';
import type { Broker, TaskJob } from './broker.js';
import type { Task, TaskDefinition, TaskFn, TaskHandle, TaskOptions, ThreadTaskSource } from '../core/task.js';
import { normalizeTaskOptions } from '../core/task-options.js';
import { moduleHref, type ThreadPool } from '../core/thread-pool.js';
import { checkId } from '../core/validate.js';

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

/** Registers task `name` in `tasks` (refusing a second task of that name) and returns its handle on `broker`. */
export function registerTask<I extends JsonValue, O extends JsonValue>(
  broker: Pick<Broker, 'enqueue' | 'waitForTask'>,
  tasks: Map<string, TaskDefinition>,
  pool: ThreadPool | null,
  name: string,
  fn: TaskFn<I, O> | ThreadTaskSource,
  options: TaskOptions,
): Task<I, O> {
  checkId(name, 'task name');
  if (tasks.has(name)) throw new FlowcastError(ErrorCodes.DUPLICATE_TASK, `A task named "${name}" is already registered on this broker`);
  const def = defineTask(name, fn, options, pool);
  tasks.set(name, def);
  return {
    taskName: name,
    options: def.options,
    kiq: async (input: I): Promise<TaskHandle<O>> => {
      assertJson(input, `Input of task "${name}"`);
      const job: TaskJob = { kind: 'task', job_id: randomUUID(), task: name, input };
      await broker.enqueue(job);
      return {
        taskId: job.job_id,
        taskName: name,
        waitResult: async (wait: { timeoutMs?: number } = {}) => (await broker.waitForTask(job.job_id, wait.timeoutMs)) as O,
      };
    },
  };
}
