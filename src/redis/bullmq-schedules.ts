/**
 * Cluster-wide schedules on BullMQ job schedulers (`queue.upsertJobScheduler`): BullMQ
 * keeps each schedule in Redis and makes exactly one job per tick (its id names the
 * schedule and the tick), which one worker of the schedules queue takes. Every
 * scheduler instance runs such a worker and fires the schedule's target when it gets
 * the job. One-off schedules are one delayed job with a fixed id. Cron ticks are computed
 * by croner (`cronRepeatStrategy`), the parser that validated the expression.
 */
import { Queue, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { BULLMQ_QUEUES } from './keys.js';
import type { ClusterFire, ClusterScheduleSpec, ScheduleDriver } from '../scheduler/cluster.js';
import { cronRepeatStrategy } from '../scheduler/cron.js';

interface TickData {
  schedule_id: string;
  /** One-off schedules: the instant. */
  at?: number;
}

/** Times a tick is offered again when it reached an instance that does not know its schedule. */
const OFFERS = 5;

/** Keeps the schedules of one scheduler instance in BullMQ. */
export class BullMQScheduleDriver implements ScheduleDriver {
  readonly #queue: Queue<TickData>;
  readonly #worker: Worker<TickData>;
  readonly #onError: (error: Error) => void;
  /** Job ids of the one-off schedules sent from here, by schedule id. */
  readonly #onceJobs = new Map<string, string>();
  #closing: Promise<void> | null = null;

  /** `connection` is the broker's (shared, not closed here); `prefix` is BullMQ's prefix. */
  constructor(connection: Redis, prefix: string, fire: ClusterFire, onError: (error: Error) => void) {
    this.#onError = onError;
    // Both compute a schedule's next tick (the queue when a schedule is set, the worker after
    // each tick): with croner, the scheduler's own parser, not BullMQ's default cron-parser.
    const settings = { repeatStrategy: cronRepeatStrategy };
    this.#queue = new Queue<TickData>(BULLMQ_QUEUES.schedules, { connection, prefix, settings });
    this.#worker = new Worker<TickData>(BULLMQ_QUEUES.schedules, (job) => this.#onTick(job, fire), { connection, prefix, concurrency: 16, settings });
    this.#queue.on('error', onError);
    this.#worker.on('error', onError);
  }

  async #onTick(job: Job<TickData>, fire: ClusterFire): Promise<void> {
    // A scheduler job's id is `repeat:<schedule id>:<tick ms>`.
    const tick = job.data.at ?? Number(/:(\d+)$/.exec(job.id ?? '')?.[1] ?? job.timestamp);
    const outcome = await fire(job.data.schedule_id, tick);
    // BullMQ offers the job again (attempts), maybe to an instance that knows the schedule.
    if (outcome === 'unknown') throw new Error(`schedule "${job.data.schedule_id}" is not registered (or is paused) in this process`);
  }

  async upsert(spec: ClusterScheduleSpec): Promise<void> {
    const opts = { attempts: OFFERS, backoff: { type: 'fixed', delay: 200 }, removeOnComplete: 100, removeOnFail: 100 };
    const data: TickData = { schedule_id: spec.id };
    if (spec.kind === 'once') {
      const at = spec.at ?? Date.now();
      // The same id from every instance: BullMQ keeps one job.
      const jobId = `once-${encodeURIComponent(spec.id).replaceAll('%', '~')}-${at}`;
      this.#onceJobs.set(spec.id, jobId);
      await this.#queue.add(spec.id, { ...data, at }, { ...opts, jobId, delay: Math.max(0, at - Date.now()) });
      return;
    }
    const repeat =
      spec.kind === 'cron'
        ? { pattern: spec.cron as string, ...(spec.timezone !== undefined && { tz: spec.timezone }) }
        : { every: spec.everyMs as number, startDate: spec.startAt ?? nextGridPoint(spec.everyMs as number) };
    await this.#queue.upsertJobScheduler(spec.id, { ...repeat, ...(spec.maxRuns !== undefined && { limit: spec.maxRuns }) }, { name: spec.id, data, opts });
  }

  async remove(id: string): Promise<void> {
    const once = this.#onceJobs.get(id);
    if (once !== undefined) {
      this.#onceJobs.delete(id);
      await this.#queue.remove(once).catch(() => 0);
      return;
    }
    await this.#queue.removeJobScheduler(id);
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      await this.#worker.close().catch(this.#onError);
      await this.#queue.close().catch(this.#onError);
    })();
    return this.#closing;
  }
}

/**
 * The first tick of an interval schedule without `startAt`: the next multiple of the
 * period since the epoch, so instances that create the schedule at about the same time
 * agree on its phase (BullMQ keeps the first one's anyway).
 */
function nextGridPoint(everyMs: number): number {
  return (Math.floor(Date.now() / everyMs) + 1) * everyMs;
}
