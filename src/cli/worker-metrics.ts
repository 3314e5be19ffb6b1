/**
 * `flowcast worker --metrics-port`: a small HTTP server next to a worker with
 * `GET /metrics` (Prometheus: prom-client's default process and Node.js metrics and the
 * worker's job counters) and `GET /health`. Nothing else: any other path is 404, any
 * other method 405. Bounded like the main server: few connections, short timeouts.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Registry } from 'prom-client';
import { processMetricsRegistry } from '../server/process-metrics.js';

/** What the metrics server reads from the worker. */
export interface WorkerMetricsSource {
  workerId: string;
  concurrency: number;
  counters(): Readonly<{ active: number; processed: number; failed: number }>;
  /** `false` once the worker is stopping: `/health` answers 503. */
  running(): boolean;
}

/** Options of {@link startWorkerMetrics}. */
export interface WorkerMetricsOptions {
  /** @default "127.0.0.1" */
  host?: string;
  /** 0 picks a free port. */
  port: number;
}

/** A running metrics server. */
export interface WorkerMetricsServer {
  /** `http://host:port` */
  readonly url: string;
  close(): Promise<void>;
}

const MAX_CONNECTIONS = 64;

function workerRegistry(source: WorkerMetricsSource): Registry {
  const registry = new Registry();
  const registers = [registry];
  new Gauge({
    name: 'flowcast_worker_info',
    help: 'This worker: its id (as in the engine status) and concurrency; always 1.',
    labelNames: ['worker_id'],
    registers,
    collect() {
      this.set({ worker_id: source.workerId }, 1);
    },
  });
  new Gauge({
    name: 'flowcast_worker_concurrency',
    help: 'Jobs this worker runs at once at most.',
    registers,
    collect() {
      this.set(source.concurrency);
    },
  });
  new Gauge({
    name: 'flowcast_worker_jobs_active',
    help: 'Jobs this worker is running now.',
    registers,
    collect() {
      this.set(source.counters().active);
    },
  });
  new Counter({
    name: 'flowcast_worker_jobs_processed_total',
    help: 'Jobs this worker finished since it started (a step call chained into a job counts as one).',
    registers,
    collect() {
      this.reset();
      this.inc(source.counters().processed);
    },
  });
  new Counter({
    name: 'flowcast_worker_jobs_failed_total',
    help: 'Jobs whose processing threw on this worker (BullMQ retries them or keeps them failed); a task\'s own error fails its step, not the job.',
    registers,
    collect() {
      this.reset();
      this.inc(source.counters().failed);
    },
  });
  return registry;
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' }).end(body);
}

/** Starts the metrics server; resolves once it listens. */
export async function startWorkerMetrics(source: WorkerMetricsSource, options: WorkerMetricsOptions): Promise<WorkerMetricsServer> {
  const registry = workerRegistry(source);
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/metrics' && path !== '/health') return send(res, 404, 'text/plain; charset=utf-8', 'Not Found: GET /metrics or /health\n');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      return send(res, 405, 'text/plain; charset=utf-8', 'Method Not Allowed\n');
    }
    if (path === '/health') {
      const c = source.counters();
      const running = source.running();
      const body = { status: running ? 'healthy' : 'stopping', worker_id: source.workerId, active: c.active, processed: c.processed, failed: c.failed };
      return send(res, running ? 200 : 503, 'application/json; charset=utf-8', JSON.stringify(body));
    }
    const text = `${await processMetricsRegistry().metrics()}\n${await registry.metrics()}`;
    send(res, 200, registry.contentType, text);
  };
  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => send(res, 500, 'text/plain; charset=utf-8', `metrics failed: ${error instanceof Error ? error.message : String(error)}\n`));
  });
  server.maxConnections = MAX_CONNECTIONS;
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  server.keepAliveTimeout = 5_000;
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const shown = address.address.includes(':') ? `[${address.address}]` : address.address;
  let closing: Promise<void> | null = null;
  return {
    url: `http://${shown}:${address.port}`,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
