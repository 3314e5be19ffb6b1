/**
 * How a schedule fires: each local schedule waits for its next tick with one `setTimeout`,
 * re-armed after each tick so nothing drifts; ticks missed while the process slept are
 * caught up (`catchUpMissed`, at most `MAX_CATCH_UP`) or dropped; a tick that comes while
 * the previous firing still runs is skipped under the `skip` overlap policy. A firing
 * kicks a pipeline or calls a function; its failure is recorded and reported, never thrown.
 * A cluster schedule's ticks come from the cluster store instead (`fireTick`).
 */
import { describeError, toError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { MAX_CATCH_UP, MAX_TIMEOUT_MS, type Entry, type ScheduleInfo } from './schedule-types.js';
import { safely, toInfo } from './schedule-spec.js';

/** What the runner tells the scheduler's owner, and how it keeps its timers. */
export interface FiringHooks {
  readonly logger: Logger;
  /** Called with a firing's (or a store update's) failure. */
  readonly onError: (error: Error, info: ScheduleInfo) => void;
  /** Called as each firing starts. */
  readonly onFire: ((info: ScheduleInfo) => void) | undefined;
  /** `true`: timers do not keep the process alive. */
  readonly unref: boolean;
}

/** Arms the schedules' timers and runs their firings (see the module comment). */
export class ScheduleRunner {
  readonly #hooks: FiringHooks;
  readonly #inFlight = new Set<Promise<void>>();

  /** @param hooks the scheduler's options */
  constructor(hooks: FiringHooks) {
    this.#hooks = hooks;
  }

  /** Settles once every firing in flight settled. */
  async settled(): Promise<void> {
    await Promise.all(this.#inFlight);
  }

  /** Waits for the entry's next tick (`dueMs`): nothing for a paused, finished or cluster schedule. */
  arm(entry: Entry): void {
    clearTimeout(entry.timer);
    entry.timer = undefined;
    // In a cluster the store says when a tick is due (see fireTick).
    if (entry.clusterSpec !== null) return;
    if (entry.paused || entry.done || entry.dueMs === null) return;
    const delay = Math.min(Math.max(0, entry.dueMs - Date.now()), MAX_TIMEOUT_MS);
    entry.timer = setTimeout(() => this.#onTimer(entry), delay);
    if (this.#hooks.unref) entry.timer.unref();
  }

  #onTimer(entry: Entry): void {
    entry.timer = undefined;
    const due = entry.dueMs;
    if (due === null || entry.paused || entry.done) return;
    const now = Date.now();
    // A capped wait (beyond 2^31-1 ms) or a timer that woke a little early: wait again.
    if (now < due) {
      this.arm(entry);
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
    this.arm(entry);
  }

  /** A tick of a cluster schedule reached this instance: fires it (or skips it, see `overlap`), and settles once it ran. */
  async fireTick(entry: Entry, tick: number): Promise<'fired'> {
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

  /** One firing of the entry, for `tick`. Never rejects. */
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
    const onFire = this.#hooks.onFire;
    if (onFire) safely(this.#hooks.logger, 'onFire', entry.id, () => onFire(toInfo(entry)));
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
      safely(this.#hooks.logger, 'onError', entry.id, () => this.#hooks.onError(toError(err), toInfo(entry)));
    }
  }
}
