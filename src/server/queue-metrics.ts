/**
 * `flowcast_queue_jobs{queue,state}`: the depth of each of the broker's queues (BullMQ:
 * waiting, active, delayed, failed, completed), from `broker.engineStatus()`. Read at
 * scrape time at most once per `maxAgeMs`: many scrapers (or a tight scrape interval)
 * cost Redis one read per interval, not one per scrape. A failed read keeps the last
 * values and counts the failure; it never fails the scrape.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { BrokerEngineStatus, QueueStatus } from '../core/engine-status.js';

/** The part of a broker the queue metrics read. */
export interface QueueSource {
  engineStatus?(): Promise<BrokerEngineStatus>;
}

const STATES = ['waiting', 'active', 'delayed', 'failed', 'completed'] as const;

/** How long a read may take before the scrape goes on without it. */
const READ_TIMEOUT_MS = 2_000;

/** Queue depths as a gauge, refreshed on scrape when older than `maxAgeMs`. */
export class QueueMetrics {
  readonly #source: QueueSource;
  readonly #maxAgeMs: number;
  readonly #jobs: Gauge<'queue' | 'state'>;
  readonly #errors: Counter;
  #readAt = -Infinity;
  #reading: Promise<void> | null = null;

  constructor(source: QueueSource, registry: Registry, maxAgeMs = 5_000) {
    this.#source = source;
    this.#maxAgeMs = maxAgeMs;
    this.#jobs = new Gauge({
      name: 'flowcast_queue_jobs',
      help: 'Jobs in each of the broker\'s queues by state (waiting, active, delayed, failed, completed); read at most every few seconds.',
      labelNames: ['queue', 'state'],
      registers: [registry],
    });
    this.#errors = new Counter({
      name: 'flowcast_queue_read_errors_total',
      help: 'Reads of the queue depths that failed or timed out (the last values read are kept).',
      registers: [registry],
    });
  }

  /** Reads the depths when the last read is older than `maxAgeMs` (one read at a time). */
  refresh(): Promise<void> {
    if (typeof this.#source.engineStatus !== 'function' || Date.now() - this.#readAt < this.#maxAgeMs) return Promise.resolve();
    this.#reading ??= this.#read().finally(() => {
      this.#reading = null;
    });
    return this.#reading;
  }

  async #read(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<null>((resolve) => {
      timer = setTimeout(() => resolve(null), READ_TIMEOUT_MS);
      timer.unref();
    });
    try {
      const status = await Promise.race([(this.#source.engineStatus as () => Promise<BrokerEngineStatus>).call(this.#source), timeout]);
      if (status === null) {
        this.#errors.inc();
        return;
      }
      this.#jobs.reset();
      for (const queue of status.queues) this.#set(queue);
    } catch {
      this.#errors.inc();
    } finally {
      // Failures wait the same interval: a broker that is away is not asked on every scrape.
      this.#readAt = Date.now();
      clearTimeout(timer);
    }
  }

  #set(queue: QueueStatus): void {
    for (const state of STATES) {
      const value = queue[state];
      if (typeof value === 'number') this.#jobs.set({ queue: queue.name, state }, value);
    }
  }
}
