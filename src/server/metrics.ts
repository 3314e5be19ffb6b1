import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { isTerminalEvent, type FlowcastEvent, type PipelineType } from '../events/types.js';
import type { EventTransport } from '../transport/transport.js';
import type { Hub } from './hub.js';
import type { SocketStats } from './socket-limits.js';
import { processMetricsRegistry } from './process-metrics.js';
import { QueueMetrics, type QueueSource } from './queue-metrics.js';

/** What {@link ServerMetrics} reads. */
export interface ServerMetricsSource {
  hub: Hub;
  /** Where run and step events come from (a `subscribe('*')` listener). */
  transport: EventTransport;
  /** WebSocket connections open now (the hub counts WebSocket and SSE together). */
  wsConnections: () => number;
  /** The server's TCP connection counters (docs/security.md), when it keeps them. */
  sockets?: () => Readonly<SocketStats>;
  /**
   * Distinct `pipeline_id` label values kept; events of further pipelines are counted
   * under `pipeline_id="_other"`, so a program that makes pipelines with random ids
   * cannot grow the scrape without bound.
   * @default 1000
   */
  maxPipelines?: number;
  /** The broker whose queue depths are shown (`flowcast_queue_jobs`), when it reports them. */
  broker?: QueueSource | null;
  /** prom-client's default process and Node.js metrics in the output. @default true */
  processMetrics?: boolean;
}

/** The label value that stands for every pipeline past `maxPipelines`. */
export const OTHER_PIPELINE = '_other';

const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600];
const IN_FLIGHT_MAX = 100_000;
const RECENTLY_ENDED_MAX = 10_000;

interface InFlight {
  pipeline: string;
  type: PipelineType | 'unknown';
  lastSeq: number;
}

/**
 * The server's Prometheus metrics, in a registry of its own (never prom-client's global
 * one, so two servers in one process do not mix). Labels are bounded: pipeline id,
 * pipeline type and status; never a run id. Hub counters are read at scrape time; run
 * and step metrics come from the transport's live events.
 */
export class ServerMetrics {
  readonly registry = new Registry();
  readonly #maxPipelines: number;
  readonly #pipelines = new Set<string>();
  readonly #inFlight = new Map<string, InFlight>();
  readonly #recentlyEnded = new Set<string>();
  readonly #runsStarted: Counter<'pipeline_id' | 'pipeline_type'>;
  readonly #runsEnded: Counter<'pipeline_id' | 'pipeline_type' | 'status'>;
  readonly #runDuration: Histogram<'pipeline_id' | 'pipeline_type' | 'status'>;
  readonly #stepDuration: Histogram<'pipeline_id' | 'status'>;
  #off: (() => void) | null;
  readonly #queues: QueueMetrics | null;
  readonly #process: boolean;

  constructor(source: ServerMetricsSource) {
    const { hub } = source;
    this.#maxPipelines = source.maxPipelines ?? 1000;
    const registers = [this.registry];
    this.#queues = source.broker === undefined || source.broker === null ? null : new QueueMetrics(source.broker, this.registry);
    this.#process = source.processMetrics ?? true;
    const inFlight = this.#inFlight;

    new Gauge({
      name: 'flowcast_connections',
      help: 'Open subscriber connections, by transport (ws or sse).',
      labelNames: ['transport'],
      registers,
      collect() {
        const ws = source.wsConnections();
        this.set({ transport: 'ws' }, ws);
        this.set({ transport: 'sse' }, Math.max(0, hub.connectionCount - ws));
      },
    });
    new Gauge({
      name: 'flowcast_subscriptions',
      help: 'Subscriptions held by open connections (pipeline, "*" and run subscriptions).',
      registers,
      collect() {
        this.set(hub.subscriptionCount);
      },
    });
    new Gauge({
      name: 'flowcast_upstream_channels',
      help: 'Channels the hub listens to on the transport (one per channel with local interest).',
      registers,
      collect() {
        this.set(hub.upstreamCount);
      },
    });
    const fromStats = (name: string, help: string, read: () => number): void => {
      let last = 0;
      new Counter({
        name,
        help,
        registers,
        collect() {
          const now = read();
          if (now > last) this.inc(now - last);
          last = now;
        },
      });
    };
    fromStats('flowcast_events_in_total', 'Live events the hub received from the transport (each once).', () => hub.stats.eventsIn);
    fromStats('flowcast_deliveries_total', 'Live events written to connections (one per event and connection).', () => hub.stats.deliveries);
    fromStats('flowcast_serialisations_total', 'Live events serialised to JSON (at most once per event, however many connections get it).', () => hub.stats.serialised);
    fromStats('flowcast_replayed_events_total', 'Events sent from the run logs: replays with since, late joins and gap fills.', () => hub.stats.replayed);
    const sockets = source.sockets;
    if (sockets !== undefined) {
      new Gauge({
        name: 'flowcast_tcp_connections',
        help: 'TCP connections open now, all kinds (HTTP, WebSocket, SSE): what maxConnections caps.',
        registers,
        collect() {
          this.set(sockets().open);
        },
      });
      const refused: Record<string, () => number> = {
        server_full: () => sockets().refusedTotal,
        per_address: () => sockets().refusedPerAddress,
        handshake_timeout: () => sockets().handshakeTimeouts,
      };
      const last: Record<string, number> = {};
      new Counter({
        name: 'flowcast_connections_refused_total',
        help: 'Connections refused or closed by the connection limits: server_full (maxConnections), per_address (maxConnectionsPerAddress), handshake_timeout (no request in handshakeTimeoutMs).',
        labelNames: ['reason'],
        registers,
        collect() {
          for (const [reason, read] of Object.entries(refused)) {
            const now = read();
            this.inc({ reason }, now - (last[reason] ?? 0));
            last[reason] = now;
          }
        },
      });
    }
    fromStats('flowcast_messages_collapsed_total', 'Progress events dropped for a newer one of the same step on a connection over its soft limit.', () => hub.collapsedCount);

    this.#runsStarted = new Counter({
      name: 'flowcast_pipeline_runs_started_total',
      help: 'Runs started, by pipeline.',
      labelNames: ['pipeline_id', 'pipeline_type'],
      registers,
    });
    this.#runsEnded = new Counter({
      name: 'flowcast_pipeline_runs_total',
      help: 'Runs ended, by pipeline and final status (COMPLETED, FAILED, CANCELLED).',
      labelNames: ['pipeline_id', 'pipeline_type', 'status'],
      registers,
    });
    new Gauge({
      name: 'flowcast_pipeline_runs_running',
      help: 'Runs started and not ended yet (seen by this server), by pipeline.',
      labelNames: ['pipeline_id', 'pipeline_type'],
      registers,
      collect() {
        this.reset();
        const counts = new Map<string, { pipeline: string; type: string; n: number }>();
        for (const run of inFlight.values()) {
          const key = `${run.pipeline}\u0000${run.type}`;
          const c = counts.get(key);
          if (c === undefined) counts.set(key, { pipeline: run.pipeline, type: run.type, n: 1 });
          else c.n++;
        }
        for (const c of counts.values()) this.set({ pipeline_id: c.pipeline, pipeline_type: c.type }, c.n);
      },
    });
    this.#runDuration = new Histogram({
      name: 'flowcast_pipeline_run_duration_seconds',
      help: 'Duration of ended runs, by pipeline and final status.',
      labelNames: ['pipeline_id', 'pipeline_type', 'status'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.#stepDuration = new Histogram({
      name: 'flowcast_step_duration_seconds',
      help: 'Duration of step attempts that completed or failed, by pipeline and outcome (completed, failed).',
      labelNames: ['pipeline_id', 'status'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.#off = source.transport.subscribe('*', (event) => this.observe(event));
  }

  #label(pipelineId: string): string {
    if (this.#pipelines.has(pipelineId)) return pipelineId;
    if (this.#pipelines.size >= this.#maxPipelines) return OTHER_PIPELINE;
    this.#pipelines.add(pipelineId);
    return pipelineId;
  }

  /** Counts one run or step event. Duplicates (a seq already seen, any event of a run that ended lately) are ignored. */
  observe(event: FlowcastEvent): void {
    if (this.#recentlyEnded.has(event.run_id)) return;
    const run = this.#inFlight.get(event.run_id);
    if (run !== undefined) {
      if (event.seq <= run.lastSeq) return;
      run.lastSeq = event.seq;
    }
    if (event.type === 'PipelineStartEvent') {
      if (run !== undefined) return;
      const pipeline = this.#label(event.pipeline_id);
      this.#inFlight.set(event.run_id, { pipeline, type: event.pipeline_type, lastSeq: event.seq });
      if (this.#inFlight.size > IN_FLIGHT_MAX) {
        // A run whose end this server never saw (its process died): forget the oldest.
        const oldest = this.#inFlight.keys().next().value;
        if (oldest !== undefined) this.#inFlight.delete(oldest);
      }
      this.#runsStarted.inc({ pipeline_id: pipeline, pipeline_type: event.pipeline_type });
      return;
    }
    if (event.type === 'StepCompleteEvent' || event.type === 'StepErrorEvent') {
      const status = event.type === 'StepCompleteEvent' ? 'completed' : 'failed';
      this.#stepDuration.observe({ pipeline_id: run?.pipeline ?? this.#label(event.pipeline_id), status }, event.duration_ms / 1000);
      return;
    }
    if (isTerminalEvent(event)) {
      this.#recentlyEnded.add(event.run_id);
      if (this.#recentlyEnded.size > RECENTLY_ENDED_MAX) {
        const oldest = this.#recentlyEnded.values().next().value;
        if (oldest !== undefined) this.#recentlyEnded.delete(oldest);
      }
      this.#inFlight.delete(event.run_id);
      const labels = { pipeline_id: run?.pipeline ?? this.#label(event.pipeline_id), pipeline_type: event.pipeline_type, status: event.status };
      this.#runsEnded.inc(labels);
      this.#runDuration.observe(labels, event.duration_ms / 1000);
    }
  }

  /**
   * The Prometheus text exposition. With `canRead`, samples labelled with a pipeline the
   * caller may not read are left out (the metric's HELP and TYPE lines stay).
   */
  async render(canRead?: (pipelineId: string) => boolean): Promise<string> {
    await this.#queues?.refresh();
    const own = await this.registry.metrics();
    const text = this.#process ? `${await processMetricsRegistry().metrics()}\n${own}` : own;
    if (canRead === undefined) return text;
    const cache = new Map<string, boolean>();
    return text
      .split('\n')
      .filter((line) => {
        if (line.startsWith('#')) return true;
        const m = /[{,]pipeline_id="((?:[^"\\]|\\.)*)"/.exec(line);
        if (m === null) return true;
        const id = (m[1] as string).replace(/\\(["\\n])/g, (_s, c: string) => (c === 'n' ? '\n' : c));
        let ok = cache.get(id);
        if (ok === undefined) {
          ok = canRead(id);
          cache.set(id, ok);
        }
        return ok;
      })
      .join('\n');
  }

  /** The content type of {@link render}'s output. */
  get contentType(): string {
    return this.registry.contentType;
  }

  /** Stops listening to the transport. Idempotent. */
  close(): void {
    this.#off?.();
    this.#off = null;
  }
}
