import { ErrorCodes, FlowcastError, InvalidArgumentError } from '../core/errors.js';
import { loggerOf } from '../core/logger.js';
import { type JsonValue } from '../core/json.js';
import { checkId, checkKnownKeys, checkObject, checkOneOf, checkPositiveInt, show } from '../core/validate.js';
import { hasScheduleDriver } from './cluster.js';
import { ClusterStore } from './cluster-store.js';
import { ScheduleRunner } from './schedule-runner.js';

import { CRON_KEYS, INTERVAL_KEYS, ONCE_KEYS, SCHEDULER_KEYS, type CommonScheduleOptions, type CronScheduleOptions, type Entry, type IntervalScheduleOptions, type OnceScheduleOptions, type OverlapPolicy, type PipelineLike, type PipelineSchedulerOptions, type ScheduleInfo, type ScheduleKind, type SchedulerBroker, type ScheduleTarget, type ScheduledFunction } from './schedule-types.js';
import { checkFunction, clusterSpecOf, cronSpec, defaultOnError, onceSpec, toEpochMs, toFire, toInfo, type Spec } from './schedule-spec.js';

export { MAX_CATCH_UP } from './schedule-types.js';
export type {
  PipelineSchedulerOptions,
  SchedulerBroker,
  PipelineLike,
  ScheduleContext,
  ScheduledFunction,
  ScheduleTarget,
  ScheduleKind,
  OverlapPolicy,
  ScheduleInfo,
  CronScheduleOptions,
  IntervalScheduleOptions,
  OnceScheduleOptions,
} from './schedule-types.js';

/**
 * Fires pipelines and functions on cron expressions, fixed intervals or once. Cron ticks
 * are computed with croner (timezone and DST aware; the same parser on every broker, see
 * `./cron.ts`) and waited for with one `setTimeout`
 * per schedule, re-armed after each tick, so nothing drifts. A failing firing is recorded
 * and reported, never thrown, and never stops its schedule.
 *
 * @example
 * ```ts
 * const scheduler = new PipelineScheduler(broker);
 * scheduler.scheduleAt(cleanupOldTrackings, { runAt: '0 3 * * *' }); // 3 AM daily
 * scheduler.scheduleAt(reportPipeline, { cron: '0 9 * * MON', timezone: 'Europe/Paris', input: { week: true } });
 * await scheduler.close();
 * ```
 */
export class PipelineScheduler {
  /** The broker the scheduled pipelines run on (a clustered one fires each schedule once across its instances). */
  readonly broker: SchedulerBroker;
  readonly #entries = new Map<string, Entry>();
  readonly #overlap: OverlapPolicy;
  /** Arms the timers and runs the firings (schedule-runner.ts). */
  readonly #runner: ScheduleRunner;
  /** The broker's cluster store of schedules (cluster-store.ts). */
  readonly #store: ClusterStore;
  #closing: Promise<void> | undefined;
  #counter = 0;

  /** A scheduler on `broker` (see {@link PipelineSchedulerOptions}). */
  constructor(broker: SchedulerBroker, options: PipelineSchedulerOptions = {}) {
    if (typeof broker !== 'object' || broker === null || typeof (broker as Partial<SchedulerBroker>).kind !== 'string') {
      throw new InvalidArgumentError(`PipelineScheduler: expected a broker with a string "kind", received ${show(broker)}`);
    }
    checkKnownKeys(checkObject(options, 'PipelineScheduler options'), SCHEDULER_KEYS, 'PipelineScheduler options');
    this.broker = broker;
    this.#overlap = options.overlap === undefined ? 'skip' : checkOneOf(options.overlap, ['skip', 'allow'], 'options.overlap');
    const logger = loggerOf(options.logger, 'PipelineScheduler options.logger');
    const onError = checkFunction(options.onError, 'options.onError') ?? ((error, info) => defaultOnError(logger, error, info));
    const onFire = checkFunction(options.onFire, 'options.onFire');
    if (options.unrefTimers !== undefined && typeof options.unrefTimers !== 'boolean') {
      throw new InvalidArgumentError(`options.unrefTimers must be a boolean, received ${show(options.unrefTimers)}`);
    }
    this.#runner = new ScheduleRunner({ logger, onError, onFire, unref: options.unrefTimers ?? false });
    this.#store = new ClusterStore(broker, (id, tick) => this.#fireFromCluster(id, tick), logger, onError);
  }

  /**
   * Fires `target` on a cron expression (`cron`, or `runAt` as a string), read in
   * `timezone`. `runAt` as a Date makes a one-off instead.
   * @throws FlowcastError `BAD_SCHEDULE` for an invalid expression or timezone, `INVALID_ARGUMENT` for other options, `CLOSED` after {@link close}.
   */
  scheduleAt(target: ScheduledFunction, options: CronScheduleOptions<never>): ScheduleInfo;
  scheduleAt<I extends JsonValue>(target: PipelineLike<I>, options: CronScheduleOptions<NoInfer<I>>): ScheduleInfo;
  scheduleAt(target: ScheduleTarget, options: CronScheduleOptions): ScheduleInfo {
    this.#checkOpen();
    const raw = checkObject(options, 'scheduleAt options');
    checkKnownKeys(raw, CRON_KEYS, 'scheduleAt options');
    const o = raw as CronScheduleOptions;
    if (o.cron !== undefined && o.runAt !== undefined) {
      throw new InvalidArgumentError(`scheduleAt: give either cron or runAt, not both (received cron ${show(o.cron)} and runAt ${show(o.runAt)})`);
    }
    if (o.runAt instanceof Date) {
      for (const key of ['timezone', 'maxRuns', 'catchUpMissed'] as const) {
        if (o[key] !== undefined) throw new InvalidArgumentError(`scheduleAt: runAt as a Date makes a one-off schedule, so ${key} does not apply`);
      }
      return this.#add('once', target, o, (id) => onceSpec(o.runAt, `Schedule "${id}" runAt`));
    }
    const expr = o.cron ?? o.runAt;
    if (expr === undefined) {
      throw new InvalidArgumentError('scheduleAt needs options.cron (or options.runAt), e.g. { cron: "0 3 * * *" }');
    }
    return this.#add('cron', target, o, () => cronSpec(expr, o.timezone));
  }

  /**
   * Fires `target` every `everyMs` milliseconds, first at `startAt` (default: one period from now).
   * @throws FlowcastError `INVALID_ARGUMENT` for a bad `everyMs`, `BAD_SCHEDULE` for an invalid `startAt`, `CLOSED` after {@link close}.
   */
  scheduleEvery(target: ScheduledFunction, options: IntervalScheduleOptions<never>): ScheduleInfo;
  scheduleEvery<I extends JsonValue>(target: PipelineLike<I>, options: IntervalScheduleOptions<NoInfer<I>>): ScheduleInfo;
  scheduleEvery(target: ScheduleTarget, options: IntervalScheduleOptions): ScheduleInfo {
    this.#checkOpen();
    const raw = checkObject(options, 'scheduleEvery options');
    checkKnownKeys(raw, INTERVAL_KEYS, 'scheduleEvery options');
    const o = raw as unknown as IntervalScheduleOptions;
    const everyMs = checkPositiveInt(o.everyMs, 'scheduleEvery options.everyMs');
    return this.#add('interval', target, o, (id) => {
      // In a cluster the store ticks on the epoch grid of the period (see bullmq-schedules.ts).
      const start = hasScheduleDriver(this.broker) ? (Math.floor(Date.now() / everyMs) + 1) * everyMs : Date.now() + everyMs;
      const anchor = o.startAt === undefined ? start : toEpochMs(o.startAt, `Schedule "${id}" startAt`);
      // Ticks stay on the grid anchor + k * everyMs, so late wake-ups never shift later ticks.
      const next = (after: number): number => anchor + (Math.floor((after - anchor) / everyMs) + 1) * everyMs;
      const resumeAt = (): number => {
        const now = Date.now();
        return now <= anchor ? anchor : anchor + Math.ceil((now - anchor) / everyMs) * everyMs;
      };
      return { fields: { everyMs }, first: resumeAt(), next, resumeAt };
    });
  }

  /**
   * Fires `target` once at `at`; a time in the past fires at once (on the next turn of the event loop).
   * @throws FlowcastError `BAD_SCHEDULE` for an invalid date, `CLOSED` after {@link close}.
   */
  scheduleOnce(target: ScheduledFunction, options: OnceScheduleOptions<never>): ScheduleInfo;
  scheduleOnce<I extends JsonValue>(target: PipelineLike<I>, options: OnceScheduleOptions<NoInfer<I>>): ScheduleInfo;
  scheduleOnce(target: ScheduleTarget, options: OnceScheduleOptions): ScheduleInfo {
    this.#checkOpen();
    const raw = checkObject(options, 'scheduleOnce options');
    checkKnownKeys(raw, ONCE_KEYS, 'scheduleOnce options');
    const o = raw as unknown as OnceScheduleOptions;
    return this.#add('once', target, o, (id) => onceSpec(o.at, `Schedule "${id}" at`));
  }

  /** Copies of all schedules, in creation order. */
  list(): ScheduleInfo[] {
    return [...this.#entries.values()].map(toInfo);
  }

  /** A copy of the schedule `id`, or `undefined`. */
  get(id: string): ScheduleInfo | undefined {
    const entry = this.#entries.get(id);
    return entry && toInfo(entry);
  }

  /** Stops firing `id` until {@link resume}; a firing in flight finishes. Idempotent. */
  pause(id: string): ScheduleInfo {
    const entry = this.#mutable(id, 'pause');
    if (!entry.paused) {
      entry.paused = true;
      clearTimeout(entry.timer);
      entry.timer = undefined;
      entry.dueMs = null;
      if (entry.clusterSpec !== null) this.#store.update(entry, (d) => d.remove(entry.id));
    }
    return toInfo(entry);
  }

  /** Resumes `id` from now on: ticks that passed while paused are not fired (a one-off past its time fires at once). Idempotent. */
  resume(id: string): ScheduleInfo {
    const entry = this.#mutable(id, 'resume');
    if (entry.paused) {
      entry.paused = false;
      if (!entry.done) entry.dueMs = entry.resumeAt();
      this.#runner.arm(entry);
      const spec = entry.clusterSpec;
      if (spec !== null && !entry.done) this.#store.update(entry, (d) => d.upsert(spec));
    }
    return toInfo(entry);
  }

  /** Deletes `id` and aborts the `signal` of its firing in flight (which is still awaited by {@link close}). */
  remove(id: string): void {
    const entry = this.#mutable(id, 'remove');
    this.#stop(entry, new FlowcastError(ErrorCodes.CANCELLED, `Schedule "${id}" was removed`));
    this.#entries.delete(id);
    if (entry.clusterSpec !== null) this.#store.update(entry, (d) => d.remove(id));
  }

  /**
   * Stops every timer, aborts the `signal` of firings in flight and waits for them to settle.
   * Idempotent: later calls return the same promise. Schedules stay readable with `get()` and `list()`.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  /** Closes the scheduler (`await using scheduler = new PipelineScheduler(broker)`), as {@link close}. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async #close(): Promise<void> {
    const reason = new FlowcastError(ErrorCodes.CLOSED, 'The scheduler was closed');
    for (const entry of this.#entries.values()) this.#stop(entry, reason);
    await this.#runner.settled();
    // The schedules stay in the cluster store for the other instances.
    await this.#store.close();
  }

  #checkOpen(): void {
    if (this.#closing) throw new FlowcastError(ErrorCodes.CLOSED, 'The scheduler is closed: no new schedules');
  }

  #mutable(id: string, what: string): Entry {
    this.#checkOpen();
    const entry = this.#entries.get(id);
    if (!entry) {
      const known = [...this.#entries.keys()];
      throw new FlowcastError(
        ErrorCodes.NOT_FOUND,
        `Cannot ${what} schedule ${show(id)}: no such schedule (known: ${known.length ? known.map((k) => `"${k}"`).join(', ') : 'none'})`,
      );
    }
    return entry;
  }

  #add(
    kind: ScheduleKind,
    target: ScheduleTarget,
    o: CommonScheduleOptions<JsonValue> & { maxRuns?: number; catchUpMissed?: boolean },
    makeSpec: (id: string) => Spec,
  ): ScheduleInfo {
    const id = o.id === undefined ? this.#newId(kind) : checkId(o.id, 'options.id');
    if (this.#entries.has(id)) throw new InvalidArgumentError(`A schedule with id "${id}" already exists; remove() it first or choose another id`);
    const fire = toFire(target, o.input, id);
    const overlap = o.overlap === undefined ? this.#overlap : checkOneOf(o.overlap, ['skip', 'allow'], 'options.overlap');
    const maxRuns = o.maxRuns === undefined ? undefined : checkPositiveInt(o.maxRuns, 'options.maxRuns');
    if (o.catchUpMissed !== undefined && typeof o.catchUpMissed !== 'boolean') {
      throw new InvalidArgumentError(`options.catchUpMissed must be a boolean, received ${show(o.catchUpMissed)}`);
    }
    const spec = makeSpec(id);
    const entry: Entry = {
      id,
      kind,
      fields: maxRuns === undefined ? spec.fields : { ...spec.fields, maxRuns },
      fire,
      next: spec.next,
      resumeAt: spec.resumeAt,
      overlap,
      catchUp: o.catchUpMissed ?? false,
      maxRuns: kind === 'once' ? 1 : (maxRuns ?? Infinity),
      controller: new AbortController(),
      clusterSpec: hasScheduleDriver(this.broker) ? clusterSpecOf(id, kind, spec.fields, maxRuns, o as { startAt?: unknown }) : null,
      timer: undefined,
      dueMs: spec.first,
      paused: false,
      done: spec.first === null,
      lastRunMs: null,
      runs: 0,
      skipped: 0,
      running: 0,
      lastError: null,
    };
    this.#entries.set(id, entry);
    const clusterSpec = entry.clusterSpec;
    if (clusterSpec === null) this.#runner.arm(entry);
    else if (!entry.done) this.#store.update(entry, (d) => d.upsert(clusterSpec));
    return toInfo(entry);
  }

  #newId(kind: ScheduleKind): string {
    let id: string;
    do id = `${kind}-${++this.#counter}`;
    while (this.#entries.has(id));
    return id;
  }

  #stop(entry: Entry, reason: FlowcastError): void {
    clearTimeout(entry.timer);
    entry.timer = undefined;
    entry.dueMs = null;
    entry.done = true;
    entry.controller.abort(reason);
  }

  /** A tick of a cluster schedule reached this instance. */
  #fireFromCluster(id: string, tick: number): Promise<'fired' | 'unknown'> {
    const entry = this.#entries.get(id);
    if (entry === undefined || entry.paused || entry.done || this.#closing !== undefined) return Promise.resolve('unknown');
    return this.#runner.fireTick(entry, tick);
  }
}
