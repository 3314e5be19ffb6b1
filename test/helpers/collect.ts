/**
 * Test helpers for the engine suites: a collector that attaches a real HookManager to
 * pipelines and keeps every event per run, an assertion of the invariants every run's
 * events must keep, and small waiting tools (deferred, waitUntil) whose timeouts are only
 * upper bounds for waiting, never assertions on timing.
 */
import { afterEach, expect } from 'vitest';
import {
  HookManager,
  InMemoryBroker,
  isTerminalEvent,
  type EventMap,
  type EventType,
  type FlowcastEvent,
  type InMemoryBrokerOptions,
} from '../../src/index.js';

/** Anything `withHooks()` can be called on (both pipeline kinds). */
export interface Hookable {
  withHooks(hooks: HookManager): unknown;
}

/** A promise with its resolve function outside, to hold a task body until the test lets it go. */
export interface Deferred<T = void> {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (error: Error) => void;
}

export function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Resolves once `condition()` is true; rejects after `timeoutMs` (an upper bound, not a measurement). */
export async function waitUntil(condition: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`waitUntil: ${what} did not happen within ${timeoutMs}ms`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

/** Lets every queued microtask and immediate run a few times (gives a misbehaving engine the chance to overshoot). */
export async function settle(rounds = 20): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise((resolve) => setImmediate(resolve));
}

/** A task body waits on this; a `signal`-aware body rejects with the signal's reason when aborted. */
export function untilAborted(signal: AbortSignal): Promise<never> {
  return new Promise<never>((_resolve, reject) => {
    const fail = (): void => reject(signal.reason instanceof Error ? signal.reason : new Error(String(signal.reason)));
    if (signal.aborted) fail();
    else signal.addEventListener('abort', fail, { once: true });
  });
}

/** `"StepStartEvent:a"` for step events, the bare type otherwise: compact sequences to compare. */
export function label(e: FlowcastEvent): string {
  return 'step_name' in e && e.type !== 'PipelineErrorEvent' ? `${e.type}:${e.step_name}` : e.type;
}

export function labels(events: readonly FlowcastEvent[]): string[] {
  return events.map(label);
}

/** Events of one type, typed. */
export function ofType<T extends EventType>(events: readonly FlowcastEvent[], type: T): EventMap[T][] {
  return events.filter((e): e is EventMap[T] => e.type === type);
}

/** Index of the first event matching `label` (e.g. `"StepStartEvent:d"`); fails the test when absent. */
export function indexOf(events: readonly FlowcastEvent[], wanted: string): number {
  const i = events.findIndex((e) => label(e) === wanted);
  expect(i, `event ${wanted} in ${labels(events).join(', ')}`).toBeGreaterThanOrEqual(0);
  return i;
}

/** Collects, through a real HookManager, every event of the pipelines it is attached to, per run, in arrival order. */
export class EventCollector {
  readonly hooks: HookManager;
  /** Every event, in the order listeners received them. */
  readonly events: FlowcastEvent[] = [];
  /** What `onError` of the HookManager received. */
  readonly hookErrors: unknown[] = [];
  readonly #runs = new Map<string, FlowcastEvent[]>();
  readonly #waiters = new Set<{ test: (e: FlowcastEvent) => boolean; resolve: (e: FlowcastEvent) => void }>();

  constructor(...pipelines: Hookable[]) {
    this.hooks = new HookManager({ onError: (error) => this.hookErrors.push(error) });
    this.hooks.on('*', (e) => {
      this.events.push(e);
      let list = this.#runs.get(e.run_id);
      if (list === undefined) {
        list = [];
        this.#runs.set(e.run_id, list);
      }
      list.push(e);
      for (const w of this.#waiters) {
        if (w.test(e)) {
          this.#waiters.delete(w);
          w.resolve(e);
        }
      }
    });
    for (const p of pipelines) this.attach(p);
  }

  attach(pipeline: Hookable): this {
    pipeline.withHooks(this.hooks);
    return this;
  }

  /** The events of one run so far, in arrival order. */
  forRun(runId: string): FlowcastEvent[] {
    return [...(this.#runs.get(runId) ?? [])];
  }

  /** Run ids in the order their first event arrived. */
  runIds(): string[] {
    return [...this.#runs.keys()];
  }

  /** Resolves with the first event (already received or future) that passes `test`. */
  waitFor(test: (e: FlowcastEvent) => boolean, what: string, timeoutMs = 10_000): Promise<FlowcastEvent> {
    const seen = this.events.find(test);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise<FlowcastEvent>((resolve, reject) => {
      const waiter = {
        test,
        resolve: (e: FlowcastEvent) => {
          clearTimeout(timer);
          resolve(e);
        },
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        reject(new Error(`EventCollector: no ${what} within ${timeoutMs}ms; got ${labels(this.events).join(', ')}`));
      }, timeoutMs);
      this.#waiters.add(waiter);
    });
  }

  /** Resolves with an event of `type` (and step, when given) of any run. */
  waitForType(type: EventType, stepName?: string, timeoutMs?: number): Promise<FlowcastEvent> {
    return this.waitFor(
      (e) => e.type === type && (stepName === undefined || ('step_name' in e && e.step_name === stepName)),
      stepName === undefined ? type : `${type} of step ${stepName}`,
      timeoutMs,
    );
  }

  /** Resolves with all events of the run once its terminal event arrived. */
  async waitForEnd(runId: string, timeoutMs?: number): Promise<FlowcastEvent[]> {
    await this.waitFor((e) => e.run_id === runId && isTerminalEvent(e), `terminal event of run ${runId}`, timeoutMs);
    return this.forRun(runId);
  }
}

const ISO_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/**
 * Checks what every run's events must keep, in the order a listener received them:
 * one run and one pipeline; `v` 1; unique `event_id`; `seq` 1, 2, 3... with no gap and
 * in order; ISO timestamps with milliseconds that never go back; `PipelineStartEvent`
 * first; exactly one terminal event, and it is the last.
 */
export function expectRunInvariants(events: readonly FlowcastEvent[]): void {
  expect(events.length, 'a run has events').toBeGreaterThan(0);
  const first = events[0] as FlowcastEvent;
  expect(
    events.map((e) => e.seq),
    `seq of ${first.run_id} in the order received: ${labels(events).join(', ')}`,
  ).toEqual(events.map((_, i) => i + 1));
  const ids = new Set<string>();
  let lastTime = '';
  events.forEach((e, i) => {
    const where = `event #${i + 1} (${label(e)})`;
    expect(e.v, `${where}: v`).toBe(1);
    expect(e.run_id, `${where}: run_id`).toBe(first.run_id);
    expect(e.pipeline_id, `${where}: pipeline_id`).toBe(first.pipeline_id);
    expect(typeof e.event_id === 'string' && e.event_id.length > 0, `${where}: event_id`).toBe(true);
    expect(ids.has(e.event_id), `${where}: event_id ${e.event_id} repeated`).toBe(false);
    ids.add(e.event_id);
    expect(e.timestamp, `${where}: timestamp`).toMatch(ISO_MS);
    expect(e.timestamp >= lastTime, `${where}: timestamp ${e.timestamp} before ${lastTime}`).toBe(true);
    lastTime = e.timestamp;
  });
  expect(first.type).toBe('PipelineStartEvent');
  const terminals = events.filter((e) => isTerminalEvent(e));
  expect(terminals.map((e) => e.type), 'exactly one terminal event').toHaveLength(1);
  expect(isTerminalEvent(events[events.length - 1] as FlowcastEvent), 'the terminal event is the last').toBe(true);
}

/** A broker factory for one test file: every broker it made is closed after each test. */
export function brokerFactory(): (options?: InMemoryBrokerOptions) => InMemoryBroker {
  const open: InMemoryBroker[] = [];
  afterEach(async () => {
    await Promise.all(open.splice(0).map((b) => b.close()));
  });
  return (options = {}) => {
    const broker = new InMemoryBroker(options);
    open.push(broker);
    return broker;
  };
}
