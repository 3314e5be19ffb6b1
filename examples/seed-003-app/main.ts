/**
 * Seed 003's application in TypeScript: a page with a "Start Task" button that starts a
 * long task, refuses a second start while one runs ("Task is already running"), and
 * tails the task's output live, from its first line, even after a page reload.
 *
 * One process does what the tutorial's Flask app, Celery worker, socket server and
 * Redis did: the in-memory broker runs the task, each `ctx.log()` line lands in the
 * run's log, and the flowcast server serves the page, the REST API that starts runs
 * and the WebSocket that tails them.
 *
 *   node --import tsx examples/seed-003-app/main.ts      # then open http://127.0.0.1:5000/
 *
 * Environment: PORT (default 5000; 0 picks a free one), TAIL_LINES (20), TAIL_INTERVAL_MS (1000).
 * In your own project, import from 'flowcast' and 'flowcast/server' instead of ../../src.
 */
import { fileURLToPath } from 'node:url';
import { InMemoryBroker, Pipeline, PipelineTrackingManager, describeError, getEngine } from '../../src/index.js';
import { getWebSocketServer } from '../../src/server/index.js';

function intFromEnv(name: string, fallback: number, min: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min) throw new Error(`${name} must be an integer >= ${min}, received ${JSON.stringify(raw)}`);
  return value;
}

const port = intFromEnv('PORT', 5000, 0);
const lines = intFromEnv('TAIL_LINES', 20, 1);
const intervalMs = intFromEnv('TAIL_INTERVAL_MS', 1000, 0);

const broker = new InMemoryBroker();
const tracking = new PipelineTrackingManager().withAutoStorage(broker);

// The tutorial's Celery task: one message a second for 20 seconds.
const tail = broker.task('tail', async (_input: null, ctx) => {
  for (let i = 0; i < lines; i++) {
    ctx.log(`Task message ${i}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
    ctx.signal.throwIfAborted();
  }
  return `${lines} messages`;
});

// "Only one task can be running at any given time": a concurrency limit of 1.
const pipeline = new Pipeline(broker, { id: 'tail', concurrency: { limit: 1 } }).callNext(tail).withTracking(tracking);

const server = getWebSocketServer({
  host: '127.0.0.1',
  port,
  broker,
  tracking,
  pipelines: [pipeline],
  staticDir: fileURLToPath(new URL('./public/', import.meta.url)),
});

try {
  await server.startServer();
} catch (error) {
  console.error(`seed-003-app: cannot listen on 127.0.0.1:${port}: ${describeError(error)} (set PORT to another port)`);
  await tracking.close();
  await broker.close();
  process.exit(1);
}
console.log(`seed-003-app: open ${server.httpUrl}/ and click "Start Task" (Ctrl-C stops)`);

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) process.exit(130);
  stopping = true;
  console.log('seed-003-app: stopping');
  await server.close();
  // A task in flight would hold the broker's close for the rest of its messages: cancel it.
  for (const run of await tracking.listPipelines({ status: 'RUNNING' })) await getEngine(broker).cancel(run.run_id, 'the server stopped');
  await tracking.close();
  await broker.close();
}
process.on('SIGINT', () => void stop());
process.on('SIGTERM', () => void stop());
