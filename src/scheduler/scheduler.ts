import { ErrorCodes, FlowcastError, InvalidArgumentError, describeError, toError } from '../core/errors.js';
import { assertJson, type JsonValue } from '../core/json.js';
import { checkId, checkKnownKeys, checkObject, checkOneOf, checkPositiveInt, show } from '../core/validate.js';
import { hasScheduleDriver, type ClusterScheduleSpec, type ScheduleDriver } from './cluster.js';
import { parseCron } from './cron.js';

/**
 * What the scheduler needs of a broker: its `kind`. With the in-memory broker the
 * scheduler runs its timers in this process; a broker with `createScheduleDriver()`
 * (the BullMQ broker) makes each tick fire once per cluster (see `./cluster.ts`).
 */
export interface SchedulerBroker {
  readonly kind: string;
  /** Opens a cluster-wide schedule store (see {@link ScheduleDriver}). */
  createScheduleDriver?: (...args: never[]) => ScheduleDriver;
}

/** Anything with a `kiq(input)` that starts a run, such as a `Pipeline` or a `DataflowPipeline`. */
export interface PipelineLike<I extends JsonValue = JsonValue> {
  kiq(input: I): Promise<unknown>;
}

/** The single argument a function target receives on each firing. */
export interface ScheduleContext {
  readonly scheduleId: string;
  /** When the firing actually started. */
  readonly firedAt: Date;
  /** The tick this firing stands for (the cron or interval time, or the one-off `at`). */
  readonly scheduledAt: Date;
  /** Aborted when the schedule is removed or the scheduler is closed. */
  readonly signal: AbortSignal;
}

/** A plain function target. Its result is ignored; a returned promise is awaited. */
export type ScheduledFunction = (ctx: ScheduleContext) => unknown;

/** What a schedule fires: a pipeline-like object (gets `kiq(input)`) or a function (gets a {@link ScheduleContext}). */
export type ScheduleTarget<I extends JsonValue = JsonValue> = PipelineLike<I> | ScheduledFunction;

/** How a schedule fires: on a cron expression, every interval, or once at a time. */
export type ScheduleKind = 'cron' | 'interval' | 'once';

/** `'skip'`: a tick that comes while a firing of the same schedule runs is skipped. `'allow'`: firings may overlap. */
export type OverlapPolicy = 'skip' | 'allow';

/** A snapshot of one schedule. Every call returns a fresh copy. */
export interface ScheduleInfo {
  readonly id: string;
  readonly kind: ScheduleKind;
  /** The cron expression (kind `'cron'`). */
  readonly cron?: string;
  /** The IANA timezone the cron expression is read in (kind `'cron'`, when given). */
  readonly timezone?: string;
  /** The period (kind `'interval'`). */
  readonly everyMs?: number;
  /** The instant of a one-off (kind `'once'`). */
  readonly at?: Date;
  /** The limit of firings, when one was set. */
  readonly maxRuns?: number;
  readonly overlap: OverlapPolicy;
  readonly paused: boolean;
  /** True once the schedule will never fire again (one-off fired, `maxRuns` reached, scheduler closed). */
  readonly done: boolean;
  /** When the next firing is due; `null` while paused or when done. */
  readonly nextRunAt: Date | null;
  /** When the latest firing started. */
  readonly lastRunAt: Date | null;
  /** Firings started. */
  readonly runs: number;
  /** Ticks skipped because a firing was still running (overlap `'skip'`). */
  readonly skipped: number;
  /** Firings in flight now. */
  readonly running: number;
  /** The error of the latest finished firing as `"Name: message"`, or `null` when it succeeded. */
  readonly lastError: string | null;
}

/** Options of {@link PipelineScheduler}. */
export interface PipelineSchedulerOptions {
  /**
   * The overlap policy of schedules that do not set their own.
   * @default 'skip'
   */
  overlap?: OverlapPolicy;
  /**
   * Called when a firing fails (the function threw or rejected, or `kiq()` rejected). The
   * schedule keeps running. The error is also recorded in `lastError`.
   * @default logs `flowcast scheduler: schedule "<id>" failed: <error>` with console.error
   */
  onError?: (error: Error, info: ScheduleInfo) => void;
  /** Called as each firing starts, for observability. */
  onFire?: (info: ScheduleInfo) => void;
  /**
   * `unref()` every timer, so pending schedules do not keep the process alive.
   * @default false
   */
  unrefTimers?: boolean;
}

interface CommonScheduleOptions<I> {
  /** A unique id (1-200 characters of letters, digits and `_ . : - / @`). @default `"<kind>-<n>"` */
  id?: string;
  /** The JSON input given to `kiq()` of a pipeline target; not allowed for function targets. @default null */
  input?: I;
  /** Overrides the scheduler's overlap policy. @default the scheduler's `overlap` */
  overlap?: OverlapPolicy;
}

interface RepeatingScheduleOptions<I> extends CommonScheduleOptions<I> {
  /** Stop after this many firings. @default unlimited */
  maxRuns?: number;
  /**
   * When the process wakes late (blocked event loop, suspended machine) and several ticks
   * went by: `false` fires once and drops the others; `true` fires each missed tick, one
   * after another, up to {@link MAX_CATCH_UP}.
   * @default false
   */
  catchUpMissed?: boolean;
}

/** Options of {@link PipelineScheduler.scheduleAt}. Give `cron`, or `runAt` (a cron string, or a Date for a one-off). */
export interface CronScheduleOptions<I = JsonValue> extends RepeatingScheduleOptions<I> {
  /** A 5-field (minute precision) or 6-field (second precision) cron expression, or a nickname such as `@daily`. */
  cron?: string;
  /** The seed's spelling: a cron string is the same as `cron`; a Date makes a one-off like {@link PipelineScheduler.scheduleOnce}. */
  runAt?: string | Date;
  /** The IANA timezone the expression is read in. @default the process's local timezone */
  timezone?: string;
}

/** Options of {@link PipelineScheduler.scheduleEvery}. */
export interface IntervalScheduleOptions<I = JsonValue> extends RepeatingScheduleOptions<I> {
  /** The period in milliseconds, an integer >= 1. */
  everyMs: number;
  /** The first firing (Date or epoch ms); ticks follow at `startAt + k * everyMs`. A past `startAt` keeps that phase. @default now + everyMs */
  startAt?: Date | number;
}

/** Options of {@link PipelineScheduler.scheduleOnce}. */
export interface OnceScheduleOptions<I = JsonValue> extends CommonScheduleOptions<I> {
  /** When to fire (Date or epoch ms). A time in the past fires at once. */
  at: Date | number;
}

/** The most missed ticks that `catchUpMissed: true` fires after one late wake-up. */
export const MAX_CATCH_UP = 100;

/** setTimeout fires at once for delays above this (2^31-1 ms, about 24.8 days): longer waits are re-armed. */
const MAX_TIMEOUT_MS = 2 ** 31 - 1;

const COMMON_KEYS = ['id', 'input', 'overlap'] as const;
const REPEATING_KEYS = [...COMMON_KEYS, 'maxRuns', 'catchUpMissed'] as const;
const CRON_KEYS = [...REPEATING_KEYS, 'cron', 'runAt', 'timezone'];
const INTERVAL_KEYS = [...REPEATING_KEYS, 'everyMs', 'startAt'];
const ONCE_KEYS = [...COMMON_KEYS, 'at'];
const SCHEDULER_KEYS = ['overlap', 'onError', 'onFire', 'unrefTimers'];

type Fire = { type: 'pipeline'; pipeline: PipelineLike; input: JsonValue } | { type: 'function'; fn: ScheduledFunction };

interface Entry {
  readonly id: string;
  readonly kind: ScheduleKind;
  readonly fields: { cron?: string; timezone?: string; everyMs?: number; at?: number; maxRuns?: number };
  readonly fire: Fire;
  /** The first tick strictly after `afterMs`, or null when there is none. */
  readonly next: (afterMs: number) => number | null;
  /** The tick to wait for on resume. */
  readonly resumeAt: () => number | null;
  readonly overlap: OverlapPolicy;
  readonly catchUp: boolean;
  readonly maxRuns: number;
  readonly controller: AbortController;
  /** The schedule as the cluster store keeps it; `null` with local timers. */
  readonly clusterSpec: ClusterScheduleSpec | null;
  timer: NodeJS.Timeout | undefined;
  dueMs: number | null;
  paused: boolean;
  done: boolean;
  lastRunMs: number | null;
  runs: number;
  skipped: number;
  running: number;
  lastError: string | null;
}

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
  readonly broker: SchedulerBroker;
  readonly #entries = new Map<string, Entry>();
  readonly #inFlight = new Set<Promise<void>>();
  readonly #overlap: OverlapPolicy;
  readonly #onError: (error: Error, info: ScheduleInfo) => void;
  readonly #onFire: ((info: ScheduleInfo) => void) | undefined;
  readonly #unref: boolean;
  #closing: Promise<void> | undefined;
  #counter = 0;
  /** The cluster-wide store, opened with the first schedule; `null` with local timers. */
  #driver: ScheduleDriver | null = null;
  /** Store updates in flight (awaited by close). */
  readonly #storeOps = new Set<Promise<void>>();

  constructor(broker: SchedulerBroker, options: PipelineSchedulerOptions = {}) {
    if (typeof broker !== 'object' || broker === null || typeof (broker as Partial<SchedulerBroker>).kind !== 'string') {
      throw new InvalidArgumentError(`PipelineScheduler: expected a broker with a string "kind", received ${show(broker)}`);
    }
    checkKnownKeys(checkObject(options, 'PipelineScheduler options'), SCHEDULER_KEYS, 'PipelineScheduler options');
    this.broker = broker;
    this.#overlap = options.overlap === undefined ? 'skip' : checkOneOf(options.overlap, ['skip', 'allow'], 'options.overlap');
    this.#onError = checkFunction(options.onError, 'options.onError') ?? defaultOnError;
    this.#onFire = checkFunction(options.onFire, 'options.onFire');
    if (options.unrefTimers !== undefined && typeof options.unrefTimers !== 'boolean') {
      throw new InvalidArgumentError(`options.unrefTimers must be a boolean, received ${show(options.unrefTimers)}`);
    }
    this.#unref = options.unrefTimers ?? false;
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
      if (entry.clusterSpec !== null) this.#store(entry, (d) => d.remove(entry.id));
    }
    return toInfo(entry);
  }

  /** Resumes `id` from now on: ticks that passed while paused are not fired (a one-off past its time fires at once). Idempotent. */
  resume(id: string): ScheduleInfo {
    const entry = this.#mutable(id, 'resume');
    if (entry.paused) {
      entry.paused = false;
      if (!entry.done) entry.dueMs = entry.resumeAt();
      this.#arm(entry);
      const spec = entry.clusterSpec;
      if (spec !== null && !entry.done) this.#store(entry, (d) => d.upsert(spec));
    }
    return toInfo(entry);
  }

  /** Deletes `id` and aborts the `signal` of its firing in flight (which is still awaited by {@link close}). */
  remove(id: string): void {
    const entry = this.#mutable(id, 'remove');
    this.#stop(entry, new FlowcastError(ErrorCodes.CANCELLED, `Schedule "${id}" was removed`));
    this.#entries.delete(id);
    if (entry.clusterSpec !== null) this.#store(entry, (d) => d.remove(id));
  }

  /**
   * Stops every timer, aborts the `signal` of firings in flight and waits for them to settle.
   * Idempotent: later calls return the same promise. Schedules stay readable with `get()` and `list()`.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async #close(): Promise<void> {
    const reason = new FlowcastError(ErrorCodes.CLOSED, 'The scheduler was closed');
    for (const entry of this.#entries.values()) this.#stop(entry, reason);
    await Promise.all(this.#inFlight);
    // The schedules stay in the cluster store for the other instances.
    await Promise.all(this.#storeOps);
    await this.#driver?.close();
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
    if (clusterSpec === null) this.#arm(entry);
    else if (!entry.done) this.#store(entry, (d) => d.upsert(clusterSpec));
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

  #arm(entry: Entry): void {
    clearTimeout(entry.timer);
    entry.timer = undefined;
    // In a cluster the store says when a tick is due (see #fireFromCluster).
    if (entry.clusterSpec !== null) return;
    if (entry.paused || entry.done || entry.dueMs === null) return;
    const delay = Math.min(Math.max(0, entry.dueMs - Date.now()), MAX_TIMEOUT_MS);
    entry.timer = setTimeout(() => this.#onTimer(entry), delay);
    if (this.#unref) entry.timer.unref();
  }

  #onTimer(entry: Entry): void {
    entry.timer = undefined;
    const due = entry.dueMs;
    if (due === null || entry.paused || entry.done) return;
    const now = Date.now();
    // A capped wait (beyond 2^31-1 ms) or a timer that woke a little early: wait again.
    if (now < due) {
      this.#arm(entry);
      return;
    }
    const ticks = [due];
    let next = entry.next(due);
    while (entry.catchUp && next !== null && next <= now && ticks.length < MAX_CATCH_UP) {
      ticks.push(next);
      next = entry.next(next);
    }
    // Ticks missed beyond what is caught up are dropped: the next one is in the future.
    if (next !== null && next <= now) next = entry.next(now);
    entry.dueMs = next;
    if (next === null) entry.done = true;
    if (entry.overlap === 'skip' && entry.running > 0) {
      entry.skipped += ticks.length;
    } else {
      const burst = this.#burst(entry, ticks);
      this.#inFlight.add(burst);
      void burst.finally(() => this.#inFlight.delete(burst));
    }
    this.#arm(entry);
  }

  /** Runs an update of the cluster store; a failure is reported like a failed firing. */
  #store(entry: Entry, op: (driver: ScheduleDriver) => Promise<void>): void {
    const broker = this.broker;
    if (!hasScheduleDriver(broker)) return;
    this.#driver ??= broker.createScheduleDriver(
      (id, tick) => this.#fireFromCluster(id, tick),
      (error) => console.error(`flowcast scheduler: cluster schedule store: ${describeError(error)}`),
    );
    const driver = this.#driver;
    // One after another, in call order: a remove() must not overtake the upsert before it.
    const previous = [...this.#storeOps].at(-1) ?? Promise.resolve();
    const pending = previous
      .then(() => op(driver))
      .catch((err: unknown) => {
        entry.lastError = describeError(err);
        safely('onError', entry.id, () => this.#onError(toError(err), toInfo(entry)));
      });
    this.#storeOps.add(pending);
    void pending.finally(() => this.#storeOps.delete(pending));
  }

  /** A tick of a cluster schedule reached this instance. */
  async #fireFromCluster(id: string, tick: number): Promise<'fired' | 'unknown'> {
    const entry = this.#entries.get(id);
    if (entry === undefined || entry.paused || entry.done || this.#closing !== undefined) return 'unknown';
    const next = entry.next(tick);
    entry.dueMs = next !== null && next <= Date.now() ? entry.next(Date.now()) : next;
    if (entry.overlap === 'skip' && entry.running > 0) {
      entry.skipped++;
      return 'fired';
    }
    const burst = this.#burst(entry, [tick]);
    this.#inFlight.add(burst);
    void burst.finally(() => this.#inFlight.delete(burst));
    await burst;
    return 'fired';
  }

  /** Fires the ticks one after another. Never rejects. */
  async #burst(entry: Entry, ticks: number[]): Promise<void> {
    entry.running++;
    try {
      for (const tick of ticks) {
        if (entry.controller.signal.aborted || entry.paused || entry.runs >= entry.maxRuns) break;
        await this.#fireOnce(entry, tick);
      }
    } finally {
      entry.running--;
    }
  }

  async #fireOnce(entry: Entry, tick: number): Promise<void> {
    const firedAt = Date.now();
    entry.runs++;
    entry.lastRunMs = firedAt;
    if (entry.runs >= entry.maxRuns) {
      entry.done = true;
      entry.dueMs = null;
      clearTimeout(entry.timer);
      entry.timer = undefined;
    }
    const onFire = this.#onFire;
    if (onFire) safely('onFire', entry.id, () => onFire(toInfo(entry)));
    try {
      if (entry.fire.type === 'pipeline') {
        await entry.fire.pipeline.kiq(structuredClone(entry.fire.input));
      } else {
        await entry.fire.fn({
          scheduleId: entry.id,
          firedAt: new Date(firedAt),
          scheduledAt: new Date(tick),
          signal: entry.controller.signal,
        });
      }
      entry.lastError = null;
    } catch (err) {
      entry.lastError = describeError(err);
      safely('onError', entry.id, () => this.#onError(toError(err), toInfo(entry)));
    }
  }
}

/** The schedule as a cluster store keeps it. */
function clusterSpecOf(id: string, kind: ScheduleKind, fields: Spec['fields'], maxRuns: number | undefined, o: { startAt?: unknown }): ClusterScheduleSpec {
  const spec: ClusterScheduleSpec = { id, kind };
  if (fields.cron !== undefined) spec.cron = fields.cron;
  if (fields.timezone !== undefined) spec.timezone = fields.timezone;
  if (fields.everyMs !== undefined) spec.everyMs = fields.everyMs;
  if (fields.at !== undefined) spec.at = fields.at;
  if (maxRuns !== undefined) spec.maxRuns = maxRuns;
  if (kind === 'interval' && o.startAt !== undefined) spec.startAt = toEpochMs(o.startAt, `Schedule "${id}" startAt`);
  return spec;
}

interface Spec {
  fields: Entry['fields'];
  first: number | null;
  next: (afterMs: number) => number | null;
  resumeAt: () => number | null;
}

function cronSpec(expr: unknown, timezone: unknown): Spec {
  const ticks = parseCron(expr, timezone);
  const next = ticks.next;
  const fields = ticks.timezone === undefined ? { cron: ticks.cron } : { cron: ticks.cron, timezone: ticks.timezone };
  return { fields, first: next(Date.now()), next, resumeAt: () => next(Date.now()) };
}

function onceSpec(at: unknown, what: string): Spec {
  const ms = toEpochMs(at, what);
  return { fields: { at: ms }, first: ms, next: () => null, resumeAt: () => ms };
}

function toEpochMs(value: unknown, what: string): number {
  if (!(value instanceof Date) && typeof value !== 'number') {
    throw new InvalidArgumentError(`${what} must be a Date or epoch milliseconds, received ${show(value)}`);
  }
  const ms = value instanceof Date ? value.getTime() : value;
  if (!Number.isFinite(ms) || Math.abs(ms) > 8.64e15) {
    throw new FlowcastError(ErrorCodes.BAD_SCHEDULE, `${what} is not a valid date (received ${value instanceof Date ? 'Invalid Date' : String(value)})`);
  }
  return ms;
}

function toFire(target: unknown, input: unknown, id: string): Fire {
  if (typeof target === 'function') {
    if (input !== undefined) {
      throw new InvalidArgumentError(`Schedule "${id}": input is given to pipeline targets only; a function target receives a context ({ scheduleId, firedAt, scheduledAt, signal })`);
    }
    return { type: 'function', fn: target as ScheduledFunction };
  }
  if (typeof target === 'object' && target !== null && typeof (target as Partial<PipelineLike>).kiq === 'function') {
    const value = input === undefined ? null : input;
    assertJson(value, `Schedule "${id}" input`);
    // A private copy: later changes to the caller's object do not leak into firings.
    return { type: 'pipeline', pipeline: target as PipelineLike, input: structuredClone(value) };
  }
  throw new InvalidArgumentError(`Schedule "${id}": the target must be a function or an object with a kiq(input) method (a Pipeline), received ${show(target)}`);
}

function toInfo(entry: Entry): ScheduleInfo {
  const { cron, timezone, everyMs, at, maxRuns } = entry.fields;
  return {
    id: entry.id,
    kind: entry.kind,
    ...(cron !== undefined && { cron }),
    ...(timezone !== undefined && { timezone }),
    ...(everyMs !== undefined && { everyMs }),
    ...(at !== undefined && { at: new Date(at) }),
    ...(maxRuns !== undefined && { maxRuns }),
    overlap: entry.overlap,
    paused: entry.paused,
    done: entry.done,
    nextRunAt: entry.dueMs === null ? null : new Date(entry.dueMs),
    lastRunAt: entry.lastRunMs === null ? null : new Date(entry.lastRunMs),
    runs: entry.runs,
    skipped: entry.skipped,
    running: entry.running,
    lastError: entry.lastError,
  };
}

function checkFunction<F>(value: F | undefined, name: string): F | undefined {
  if (value !== undefined && typeof value !== 'function') {
    throw new InvalidArgumentError(`${name} must be a function, received ${show(value)}`);
  }
  return value;
}

/** Runs a user hook; a hook that throws is logged, never allowed to stop a schedule. */
function safely(hook: string, id: string, call: () => void): void {
  try {
    call();
  } catch (err) {
    console.error(`flowcast scheduler: the ${hook} hook threw for schedule "${id}": ${describeError(err)}`);
  }
}

function defaultOnError(error: Error, info: ScheduleInfo): void {
  console.error(`flowcast scheduler: schedule "${info.id}" (${info.kind}) failed: ${describeError(error)}`);
}
