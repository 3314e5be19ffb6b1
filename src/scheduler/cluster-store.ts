/**
 * The cluster-wide store of schedules, for a broker that implements the cluster seam
 * (`cluster.ts`): opened with the first schedule, its updates run one after another in
 * call order (a remove must not overtake the upsert before it), and a failed update is
 * reported like a failed firing.
 */
import { describeError, toError } from '../core/errors.js';
import { logError } from '../core/log-throttle.js';
import type { Logger } from '../core/logger.js';
import { hasScheduleDriver, type ClusterFire, type ScheduleDriver } from './cluster.js';
import type { Entry, ScheduleInfo, SchedulerBroker } from './schedule-types.js';
import { safely, toInfo } from './schedule-spec.js';

/** A scheduler's link to its broker's cluster store (see the module comment). */
export class ClusterStore {
  readonly #broker: SchedulerBroker;
  readonly #fire: ClusterFire;
  readonly #logger: Logger;
  readonly #onError: (error: Error, info: ScheduleInfo) => void;
  /** The cluster-wide store, opened with the first schedule; `null` with local timers. */
  #driver: ScheduleDriver | null = null;
  /** Store updates in flight (awaited by close). */
  readonly #ops = new Set<Promise<void>>();

  /**
   * @param fire called with each tick of a schedule the store says is due on this instance
   * @param onError called with a failed update, and the schedule it was for
   */
  constructor(broker: SchedulerBroker, fire: ClusterFire, logger: Logger, onError: (error: Error, info: ScheduleInfo) => void) {
    this.#broker = broker;
    this.#fire = fire;
    this.#logger = logger;
    this.#onError = onError;
  }

  /** Runs an update of the cluster store; a failure is reported like a failed firing. A no-op without a cluster store. */
  update(entry: Entry, op: (driver: ScheduleDriver) => Promise<void>): void {
    const broker = this.#broker;
    if (!hasScheduleDriver(broker)) return;
    this.#driver ??= broker.createScheduleDriver(
      (id, tick) => this.#fire(id, tick),
      (error) => logError(this.#logger, error, 'scheduler: cluster schedule store'),
    );
    const driver = this.#driver;
    // One after another, in call order: a remove() must not overtake the upsert before it.
    const previous = [...this.#ops].at(-1) ?? Promise.resolve();
    const pending = previous
      .then(() => op(driver))
      .catch((err: unknown) => {
        entry.lastError = describeError(err);
        safely(this.#logger, 'onError', entry.id, () => this.#onError(toError(err), toInfo(entry)));
      });
    this.#ops.add(pending);
    void pending.finally(() => this.#ops.delete(pending));
  }

  /** Waits for the updates in flight, then closes the store (the schedules stay in it for the other instances). */
  async close(): Promise<void> {
    await Promise.all(this.#ops);
    await this.#driver?.close();
  }
}
