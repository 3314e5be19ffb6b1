/**
 * Engine status (seed 002's "engine status" view): who executes jobs and how busy the
 * queues are. A broker reports its part with `engineStatus()`; the server adds its own
 * (connected clients, events per second, server instances) and serves the whole at
 * `GET /api/engine` and to WebSocket clients subscribed to the `engine` channel.
 *
 * Field names are snake_case like every event and REST payload.
 */

/** One process (or BullMQ worker) that executes jobs. */
export interface WorkerStatus {
  /** Stable for the life of the worker, e.g. `host:pid:4f2a`. */
  id: string;
  host: string;
  pid: number;
  /** `busy` while at least one job runs. */
  state: 'busy' | 'idle';
  /** Jobs running now. */
  active_jobs: number;
  /** Jobs it may run at once. */
  concurrency: number;
  /** ISO 8601: when it started. */
  started_at: string;
  /** ISO 8601: last sign of life (a worker whose heartbeat is older than the broker's stall time is dropped). */
  last_heartbeat: string;
  /** Jobs it has finished (completed or failed) since it started; a step call chained into a job it ran (BullMQ `chainSteps`) counts as one. */
  processed: number;
}

/** Depth of one queue. */
export interface QueueStatus {
  name: string;
  waiting: number;
  active: number;
  delayed: number;
  /** Jobs that failed for good and are kept by the queue (0 when the broker keeps none). */
  failed: number;
  /** Jobs completed and still kept by the queue (BullMQ keeps some a while); absent when the broker keeps none. */
  completed?: number;
}

/** What a broker reports. */
export interface BrokerEngineStatus {
  /** The broker's `kind`: `memory`, `bullmq`. */
  broker: string;
  workers: WorkerStatus[];
  queues: QueueStatus[];
}

/** One server instance sharing the event transport (one entry with the embedded default). */
export interface ServerInstanceStatus {
  id: string;
  host: string;
  pid: number;
  /** WebSocket and SSE clients connected to it. */
  clients: number;
  started_at: string;
  last_heartbeat: string;
}

/** What `GET /api/engine` answers and `engine_status` messages carry. */
export interface EngineStatus extends BrokerEngineStatus {
  /** ISO 8601 time of this report. */
  at: string;
  /** The server that answered. */
  server: {
    id: string;
    clients: number;
    /** Events delivered to this server by the transport per second, over the last 10 s. */
    events_per_second: number;
  };
  /** Every live server instance (from Redis when the transport is shared). */
  instances: ServerInstanceStatus[];
}
