import { randomBytes } from 'node:crypto';
import { loggerOf, type Logger } from '../core/logger.js';
import { logError } from '../core/log-throttle.js';
import { hostname } from 'node:os';
import { describeError } from '../core/errors.js';
import type { Broker } from '../pipeline/broker.js';
import type { BrokerEngineStatus, EngineStatus, ServerInstanceStatus } from '../core/engine-status.js';
import type { EventTransport } from '../transport/transport.js';
import type { Connection } from './connection.js';
import type { Hub } from './hub.js';

/** Options of {@link EngineReporter}. */
export interface EngineReporterOptions {
  hub: Hub;
  transport: EventTransport;
  broker: Broker | null;
  /**
   * How often `engine_status` is pushed to the connections subscribed to the `engine`
   * channel, in milliseconds.
   * @default 2000
   */
  intervalMs?: number;
  /** Where failures to read or announce the status go. @default a pino logger at `info` on stderr */
  logger?: Logger;
}

/** The in-process counters of `InMemoryBroker`, read when the broker has no `engineStatus()`. */
interface MemoryCounters {
  running: number;
  queued: number;
  delayed: number;
}

const WINDOW_S = 10;
/** How often this server announces itself on a shared transport, and how long an announcement lasts. */
const ANNOUNCE_MS = 5000;
const ANNOUNCE_TTL_MS = 15_000;

/**
 * The engine status view (seed 002): the broker's workers and queues, this server's
 * clients and event rate, and the server instances. Serves `GET /api/engine` and pushes
 * `engine_status` messages every `intervalMs` to the connections subscribed to the
 * `engine` channel (`{"type":"subscribe","channel":"engine"}`); the timer runs only
 * while someone is subscribed.
 */
export class EngineReporter {
  /** This server instance: `host:pid:random`. */
  readonly id: string;
  readonly #hub: Hub;
  readonly #transport: EventTransport;
  readonly #broker: Broker | null;
  readonly #intervalMs: number;
  readonly #startedAt = new Date().toISOString();
  readonly #subscribers = new Set<Connection>();
  /** `hub.stats.eventsIn` once a second, the last {@link WINDOW_S} + 1 samples. */
  readonly #samples: number[] = [];
  #sampler: NodeJS.Timeout | null = null;
  #pusher: NodeJS.Timeout | null = null;
  #announcer: NodeJS.Timeout | null = null;
  #announceFailed = false;
  #pushing = false;
  #closed = false;

  readonly #logger: Logger;
  constructor(options: EngineReporterOptions) {
    this.#hub = options.hub;
    this.#transport = options.transport;
    this.#broker = options.broker;
    this.#intervalMs = options.intervalMs ?? 2000;
    this.#logger = loggerOf(options.logger, 'EngineReporter options.logger');
    this.id = `${hostname()}:${process.pid}:${randomBytes(2).toString('hex')}`;
  }

  /** Starts counting events per second (the server calls it when it starts listening). */
  start(): void {
    if (this.#sampler !== null || this.#closed) return;
    this.#samples.push(this.#hub.stats.eventsIn);
    this.#sampler = setInterval(() => {
      this.#samples.push(this.#hub.stats.eventsIn);
      if (this.#samples.length > WINDOW_S + 1) this.#samples.shift();
    }, 1000);
    this.#sampler.unref();
    if (typeof this.#transport.announceInstance === 'function') {
      this.#announce();
      this.#announcer = setInterval(() => this.#announce(), ANNOUNCE_MS);
      this.#announcer.unref();
    }
  }

  /** This server as an entry of `instances`. */
  #self(): ServerInstanceStatus {
    return { id: this.id, host: hostname(), pid: process.pid, clients: this.#hub.connectionCount, started_at: this.#startedAt, last_heartbeat: new Date().toISOString() };
  }

  /** Tells the other servers on the transport that this one is alive (a failure is logged once until it works again). */
  #announce(): void {
    if (typeof this.#transport.announceInstance !== 'function' || this.#closed) return;
    this.#transport.announceInstance(this.#self(), ANNOUNCE_TTL_MS).then(
      () => {
        this.#announceFailed = false;
      },
      (error: unknown) => {
        if (this.#closed || this.#announceFailed) return;
        this.#announceFailed = true;
        logError(this.#logger, error, 'announcing this server instance');
      },
    );
  }

  /** Events the hub received per second over the last 10 s (or since start when shorter). */
  get eventsPerSecond(): number {
    const first = this.#samples[0];
    if (first === undefined) return 0;
    const seconds = this.#samples.length - 1;
    if (seconds === 0) return 0;
    const last = this.#samples[this.#samples.length - 1] ?? first;
    return Math.round(((last - first) / seconds) * 10) / 10;
  }

  /** The whole report, as `GET /api/engine` answers it. */
  async status(): Promise<EngineStatus> {
    const [brokerPart, instances] = await Promise.all([this.#brokerStatus(), this.#instances()]);
    return {
      ...brokerPart,
      at: new Date().toISOString(),
      server: { id: this.id, clients: this.#hub.connectionCount, events_per_second: this.eventsPerSecond },
      instances,
    };
  }

  async #brokerStatus(): Promise<BrokerEngineStatus> {
    const broker = this.#broker;
    if (broker === null) return { broker: 'none', workers: [], queues: [] };
    if (typeof broker.engineStatus === 'function') return broker.engineStatus();
    // A broker without engineStatus(): this process is its one worker, as far as we can tell.
    const counters = broker as unknown as Partial<MemoryCounters>;
    const running = typeof counters.running === 'number' ? counters.running : 0;
    const now = new Date().toISOString();
    return {
      broker: broker.kind,
      workers: [
        {
          id: this.id,
          host: hostname(),
          pid: process.pid,
          state: running > 0 ? 'busy' : 'idle',
          active_jobs: running,
          concurrency: 0,
          started_at: this.#startedAt,
          last_heartbeat: now,
          processed: 0,
        },
      ],
      queues: [
        {
          name: broker.kind,
          waiting: typeof counters.queued === 'number' ? counters.queued : 0,
          active: running,
          delayed: typeof counters.delayed === 'number' ? counters.delayed : 0,
          failed: 0,
        },
      ],
    };
  }

  async #instances(): Promise<ServerInstanceStatus[]> {
    const self = this.#self();
    if (typeof this.#transport.instances === 'function') {
      try {
        const list = await this.#transport.instances();
        // This server's own entry is always current (its announcement may lag or not have landed yet).
        return [self, ...list.filter((i) => i.id !== self.id)];
      } catch (error) {
        logError(this.#logger, error, 'transport.instances()');
      }
    }
    return [self];
  }

  /** Adds a connection to the `engine` channel: it gets one `engine_status` now, then one every interval. */
  subscribe(conn: Connection): void {
    if (this.#closed) return;
    this.#subscribers.add(conn);
    void this.#send([conn]);
    if (this.#pusher === null) {
      this.#pusher = setInterval(() => this.#push(), this.#intervalMs);
      this.#pusher.unref();
    }
  }

  /** Removes a connection from the channel; `false` when it was not on it. */
  unsubscribe(conn: Connection): boolean {
    const had = this.#subscribers.delete(conn);
    if (this.#subscribers.size === 0 && this.#pusher !== null) {
      clearInterval(this.#pusher);
      this.#pusher = null;
    }
    return had;
  }

  /** Subscribers of the `engine` channel. */
  get subscriberCount(): number {
    return this.#subscribers.size;
  }

  #push(): void {
    // A slow broker (Redis round trips) must not stack reports.
    if (this.#pushing) return;
    this.#pushing = true;
    void this.#send([...this.#subscribers]).finally(() => {
      this.#pushing = false;
    });
  }

  async #send(targets: Connection[]): Promise<void> {
    let message: Buffer;
    try {
      message = Buffer.from(JSON.stringify({ type: 'engine_status', ...(await this.status()) }));
    } catch (error) {
      logError(this.#logger, error, 'engine status');
      return;
    }
    for (const conn of targets) {
      if (conn.state === 'open' && this.#subscribers.has(conn)) conn.send(message, null);
      else if (conn.state !== 'open') this.unsubscribe(conn);
    }
  }

  /** Stops the timers. Idempotent. */
  close(): void {
    this.#closed = true;
    if (this.#sampler !== null) clearInterval(this.#sampler);
    if (this.#pusher !== null) clearInterval(this.#pusher);
    if (this.#announcer !== null) clearInterval(this.#announcer);
    this.#announcer = null;
    this.#sampler = null;
    this.#pusher = null;
    this.#subscribers.clear();
  }
}
