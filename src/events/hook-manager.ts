import { InvalidArgumentError, describeError } from '../core/errors.js';
import { checkLogger, defaultLogger, type Logger } from '../core/logger.js';
import { checkKnownKeys, checkObject, checkPositiveInt, show } from '../core/validate.js';
import { EventFilter } from './filter.js';
import { isEventType, type EventMap, type EventType, type FlowcastEvent } from './types.js';

/** A listener; it may be async: the next event for it waits until its promise settles. */
export type HookListener<E extends FlowcastEvent = FlowcastEvent> = (event: E) => void | Promise<void>;

/** Where listener failures are reported. */
export type HookErrorHandler = (error: unknown, event: FlowcastEvent | null, info: { type: EventType | '*' }) => void;

/** Options of {@link HookManager}. */
export interface HookManagerOptions {
  /**
   * Events queued per slow async listener before the oldest are dropped (and reported).
   * @default 10000
   */
  maxQueuePerListener?: number;
  /**
   * Where listener failures go unless a callback takes them. A pino-compatible logger.
   * @default a pino logger at `info` on stderr
   */
  logger?: Logger;
  /** Called when a listener throws, rejects or falls behind. Defaults to the logger. */
  onError?: HookErrorHandler;
}

interface Slot {
  type: EventType | '*';
  fn: HookListener;
  queue: FlowcastEvent[];
  busy: boolean;
  dropped: number;
  active: boolean;
}

/**
 * Collects the events of the pipelines it is attached to (`pipeline.withHooks(hooks)`)
 * and hands them to listeners. A listener that throws or is slow never blocks or breaks
 * a run: failures go to `onError`, and each listener gets the events of a run in seq
 * order (an async listener receives the next event once its promise settled).
 *
 * @example
 * const hooks = new HookManager();
 * const off = hooks.on('StepCompleteEvent', (e) => console.log(e.step_name, e.duration_ms));
 * pipeline.withHooks(hooks);
 */
export class HookManager {
  readonly #slots: Slot[] = [];
  readonly #byType = new Map<EventType | '*', Slot[]>();
  readonly #filters: EventFilter[] = [];
  readonly #errorHandlers = new Set<HookErrorHandler>();
  readonly #maxQueue: number;
  readonly #idleWaiters: (() => void)[] = [];
  #pending = 0;

  #logger: Logger | null;

  constructor(options: HookManagerOptions = {}) {
    checkKnownKeys(checkObject(options, 'HookManager options'), ['maxQueuePerListener', 'logger', 'onError'], 'HookManager options');
    this.#logger = options.logger === undefined ? null : checkLogger(options.logger, 'HookManager options.logger');
    this.#maxQueue = checkPositiveInt(options.maxQueuePerListener ?? 10_000, 'maxQueuePerListener');
    if (options.onError !== undefined) this.#errorHandlers.add(options.onError);
  }

  /** Listens to one event type, or to every event with `'*'`. Returns the disposer. */
  on<T extends EventType>(type: T, listener: HookListener<EventMap[T]>): () => void;
  on(type: '*', listener: HookListener): () => void;
  on(type: EventType | '*', listener: HookListener<never>): () => void {
    if (type !== '*' && !isEventType(type)) {
      throw new InvalidArgumentError(`HookManager.on(type): unknown event type ${show(type)}; use one of the event types or "*"`);
    }
    if (typeof listener !== 'function') throw new InvalidArgumentError(`HookManager.on("${type}", listener): listener must be a function`);
    const slot: Slot = { type, fn: listener as HookListener, queue: [], busy: false, dropped: 0, active: true };
    this.#slots.push(slot);
    const list = this.#byType.get(type) ?? [];
    list.push(slot);
    this.#byType.set(type, list);
    return () => {
      if (!slot.active) return;
      slot.active = false;
      this.#pending -= slot.queue.length;
      slot.queue.length = 0;
      this.#slots.splice(this.#slots.indexOf(slot), 1);
      const current = this.#byType.get(type) ?? [];
      current.splice(current.indexOf(slot), 1);
      if (current.length === 0) this.#byType.delete(type);
      this.#checkIdle();
    };
  }

  /** Adds a filter: an event reaches listeners only when every filter passes it. Returns the disposer. */
  addFilter(filter: EventFilter): () => void {
    if (!(filter instanceof EventFilter)) throw new InvalidArgumentError('HookManager.addFilter(filter): filter must be an EventFilter');
    this.#filters.push(filter);
    return () => this.removeFilter(filter);
  }

  removeFilter(filter: EventFilter): void {
    const i = this.#filters.indexOf(filter);
    if (i >= 0) this.#filters.splice(i, 1);
  }

  /** Adds an error handler (listener throws, rejects, or falls behind). Returns the disposer. */
  onError(handler: HookErrorHandler): () => void {
    if (typeof handler !== 'function') throw new InvalidArgumentError('HookManager.onError(handler): handler must be a function');
    this.#errorHandlers.add(handler);
    return () => this.#errorHandlers.delete(handler);
  }

  /** Number of listeners. */
  get listenerCount(): number {
    return this.#slots.length;
  }

  /**
   * Hands an event to the listeners. Never throws, never waits: the engine calls it for
   * every event of the pipelines this manager is attached to.
   */
  dispatch(event: FlowcastEvent): void {
    for (const f of this.#filters) {
      let pass: boolean;
      try {
        pass = f.shouldEmit(event);
      } catch (error) {
        this.#report(error, event, '*');
        pass = false;
      }
      if (!pass) return;
    }
    const typed = this.#byType.get(event.type);
    if (typed !== undefined) for (const slot of typed) this.#deliver(slot, event);
    const all = this.#byType.get('*');
    if (all !== undefined) for (const slot of all) this.#deliver(slot, event);
  }

  /** Alias of {@link dispatch}, for code written against the seed's `emit`. */
  emit(event: FlowcastEvent): void {
    this.dispatch(event);
  }

  /** Resolves when every listener has finished every event handed to it so far. */
  idle(): Promise<void> {
    if (this.#pending === 0 && !this.#slots.some((s) => s.busy)) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  #deliver(slot: Slot, event: FlowcastEvent): void {
    if (slot.busy) {
      if (slot.queue.length >= this.#maxQueue) {
        slot.queue.shift();
        this.#pending--;
        slot.dropped++;
        if (slot.dropped === 1 || slot.dropped % 1000 === 0) {
          this.#report(
            new Error(`listener for "${slot.type}" is too slow: ${slot.dropped} event(s) dropped (queue limit ${this.#maxQueue})`),
            event,
            slot.type,
          );
        }
      }
      slot.queue.push(event);
      this.#pending++;
      return;
    }
    this.#call(slot, event);
  }

  #call(slot: Slot, event: FlowcastEvent): void {
    let result: void | Promise<void>;
    try {
      result = slot.fn(event);
    } catch (error) {
      this.#report(error, event, slot.type);
      return;
    }
    if (result !== undefined && typeof (result).then === 'function') {
      slot.busy = true;
      (result).then(
        () => this.#next(slot),
        (error: unknown) => {
          this.#report(error, event, slot.type);
          this.#next(slot);
        },
      );
    }
  }

  #next(slot: Slot): void {
    slot.busy = false;
    while (slot.active && !slot.busy && slot.queue.length > 0) {
      const event = slot.queue.shift() as FlowcastEvent;
      this.#pending--;
      this.#call(slot, event);
    }
    this.#checkIdle();
  }

  #checkIdle(): void {
    if (this.#pending !== 0) return;
    if (this.#slots.some((s) => s.busy)) return;
    for (const resolve of this.#idleWaiters.splice(0)) resolve();
  }

  /** The logger, made on first use (most hook managers never log). */
  #log(): Logger {
    this.#logger ??= defaultLogger();
    return this.#logger;
  }

  #report(error: unknown, event: FlowcastEvent | null, type: EventType | '*'): void {
    if (this.#errorHandlers.size === 0) {
      const where = event ? ` on ${event.type} of run ${event.run_id}` : '';
      this.#log().error({ err: error, type }, `a hook listener for "${type}" failed${where}: ${describeError(error)}`);
      return;
    }
    for (const handler of this.#errorHandlers) {
      try {
        handler(error, event, { type });
      } catch (inner) {
        this.#log().error({ err: inner }, `a hook error handler threw: ${describeError(inner)}`);
      }
    }
  }
}
