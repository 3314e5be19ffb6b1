import { MessageChannel } from 'node:worker_threads';
import { pathToFileURL } from 'node:url';
import { isAbsolute } from 'node:path';
import { Piscina } from 'piscina';
import { InvalidArgumentError } from './errors.js';
import type { JsonValue } from './json.js';
import type { TaskContext, ThreadTaskSource } from './task.js';
import { checkKnownKeys, checkObject, checkPositiveInt, checkNonNegativeInt } from './validate.js';

/** Options of the worker-thread pool (`InMemoryBroker({ threads })`). */
export interface ThreadPoolOptions {
  /**
   * Most threads at once.
   * @default the number of CPUs
   */
  maxThreads?: number;
  /**
   * Threads kept alive when idle.
   * @default 0
   */
  minThreads?: number;
  /**
   * Milliseconds an idle thread lives.
   * @default 30000
   */
  idleTimeoutMs?: number;
}

type Message = { type: 'log'; lines: string[] } | { type: 'progress'; fraction: number; message?: string } | { type: 'done' };

/** Normalises a module reference to a `file:` URL string a worker can import. */
export function moduleHref(source: ThreadTaskSource, taskName: string): string {
  const mod = source.module;
  if (mod instanceof URL) return mod.href;
  if (typeof mod === 'string' && mod.startsWith('file:')) return mod;
  if (typeof mod === 'string' && isAbsolute(mod)) return pathToFileURL(mod).href;
  throw new InvalidArgumentError(
    `Thread task "${taskName}": module must be a file: URL or an absolute path (e.g. new URL('./task.js', import.meta.url)), received ${String(mod)}`,
  );
}

/**
 * Runs thread tasks in a pool of worker threads. Each call gets its own MessagePort:
 * log lines and progress travel as messages, in order, and the main thread turns
 * them into the run's events. Inputs and results are copied (structured clone of JSON),
 * never shared.
 */
export class ThreadPool {
  readonly #pool: Piscina;

  constructor(options: ThreadPoolOptions = {}) {
    checkKnownKeys(checkObject(options, 'threads'), ['maxThreads', 'minThreads', 'idleTimeoutMs'], 'threads');
    const opts: ConstructorParameters<typeof Piscina>[0] = {
      filename: new URL('./thread-worker.mjs', import.meta.url).href,
      minThreads: checkNonNegativeInt(options.minThreads ?? 0, 'threads.minThreads'),
      idleTimeout: checkNonNegativeInt(options.idleTimeoutMs ?? 30_000, 'threads.idleTimeoutMs'),
    };
    if (options.maxThreads !== undefined) opts.maxThreads = checkPositiveInt(options.maxThreads, 'threads.maxThreads');
    this.#pool = new Piscina(opts);
  }

  async run(href: string, exportName: string, input: JsonValue, ctx: TaskContext): Promise<JsonValue> {
    const { port1, port2 } = new MessageChannel();
    let finished!: () => void;
    const drained = new Promise<void>((resolve) => {
      finished = resolve;
    });
    port1.on('message', (message: Message) => {
      if (message.type === 'log') ctx.log(...message.lines);
      else if (message.type === 'progress') ctx.progress(message.fraction, message.message);
      else finished();
    });
    port1.once('close', () => finished());
    const info = {
      runId: ctx.runId,
      pipelineId: ctx.pipelineId,
      stepName: ctx.stepName,
      taskId: ctx.taskId,
      taskName: ctx.taskName,
      attempt: ctx.attempt,
      item: ctx.item,
    };
    try {
      const result = (await this.#pool.run(
        { module: href, exportName, input, info, port: port2 },
        { transferList: [port2], signal: ctx.signal },
      )) as JsonValue;
      await drained;
      return result;
    } catch (error) {
      // Lines written before a failure still reach the log, unless the thread was killed.
      if (!ctx.signal.aborted) await drained;
      throw error;
    } finally {
      port1.close();
    }
  }

  /** Threads currently alive. */
  get threads(): number {
    return this.#pool.threads.length;
  }

  async close(): Promise<void> {
    await this.#pool.close({ force: true });
  }
}
