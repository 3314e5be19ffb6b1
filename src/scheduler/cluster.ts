/**
 * The seam between {@link PipelineScheduler} and a cluster-wide schedule store. With a
 * broker that offers one (the BullMQ broker does, through BullMQ job schedulers), each
 * tick of a schedule fires once across every scheduler instance that shares the store,
 * instead of once per process. The scheduler stays free of Redis: it only sees this.
 */

/** A schedule as the cluster store keeps it. */
export interface ClusterScheduleSpec {
  id: string;
  kind: 'cron' | 'interval' | 'once';
  /** Kind `cron`: the expression (5 or 6 fields). */
  cron?: string;
  /** Kind `cron`: the IANA timezone. */
  timezone?: string;
  /** Kind `interval`: the period. */
  everyMs?: number;
  /** Kind `interval`: the first tick (epoch ms), when the caller gave one. */
  startAt?: number;
  /** Kind `once`: when (epoch ms). */
  at?: number;
  /** Firings across the cluster before the schedule stops. */
  maxRuns?: number;
}

/**
 * Called by the store when a tick is due, in whichever instance got it. Resolves to
 * `'unknown'` when this instance does not know (or paused) the schedule: the store then
 * offers the tick to another instance.
 */
export type ClusterFire = (scheduleId: string, tickMs: number) => Promise<'fired' | 'unknown'>;

/** A cluster-wide schedule store, opened by the broker for one scheduler. */
export interface ScheduleDriver {
  /** Creates or updates the schedule for the whole cluster (the same id from every instance is one schedule). */
  upsert(spec: ClusterScheduleSpec): Promise<void>;
  /** Deletes the schedule for the whole cluster (pause and remove). */
  remove(id: string): Promise<void>;
  /** Stops taking ticks in this instance; the schedules stay for the other instances. */
  close(): Promise<void>;
}

/** A broker that can make schedules fire once per cluster. */
export interface ClusterSchedulerBroker {
  readonly kind: string;
  createScheduleDriver(fire: ClusterFire, onError: (error: Error) => void): ScheduleDriver;
}

/** `true` when `broker` offers a cluster-wide schedule store. */
export function hasScheduleDriver(broker: { kind: string }): broker is ClusterSchedulerBroker {
  return typeof (broker as Partial<ClusterSchedulerBroker>).createScheduleDriver === 'function';
}
