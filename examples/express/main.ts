/**
 * flowcast inside an Express app you already have: the app keeps its own routes
 * (`GET /`, `GET /api/orders`, a JSON `POST /api/orders`), and flowcast is mounted at
 * `/flowcast` on the same port: its dashboard at /flowcast/, REST at /flowcast/api/…,
 * SSE at /flowcast/api/events, the WebSocket at /flowcast/ws, /flowcast/metrics.
 * Posting an order starts a pipeline run; open the dashboard to watch it.
 *
 *   node --import tsx examples/express/main.ts      # then open http://127.0.0.1:3000/
 *
 * Environment: PORT (default 3000; 0 picks a free one), FLOWCAST_TOKEN (a token the
 * dashboard, REST, SSE and WebSocket under /flowcast then need; the app's own routes
 * are untouched).
 * In your own project, import from 'flowcast' and 'flowcast/server' instead of ../../src.
 */
import { createServer } from 'node:http';
import express from 'express';
import { InMemoryBroker, Pipeline, PipelineTrackingManager, describeError } from '../../src/index.js';
import { attachFlowcast } from '../../src/server/index.js';

const rawPort = process.env.PORT ?? '3000';
const port = Number(rawPort);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`express-app: PORT must be a port 0-65535, received ${JSON.stringify(rawPort)}`);
  process.exit(2);
}
const token = process.env.FLOWCAST_TOKEN;

// The work: an order is checked, charged and shipped, each step a task.
const broker = new InMemoryBroker();
const tracking = new PipelineTrackingManager().withAutoStorage(broker);
// A type alias (not an interface): task inputs must be JSON values.
type Order = { id: string; items: number };
const check = broker.task('check', (order: Order, ctx) => {
  if (order.items < 1) throw new Error(`order ${order.id} has no items`);
  ctx.log(`order ${order.id}: ${order.items} item(s) in stock`);
  return order;
});
const charge = broker.task('charge', async (order: Order, ctx) => {
  await new Promise((resolve) => setTimeout(resolve, 300));
  ctx.log(`order ${order.id}: charged`);
  return order;
});
const ship = broker.task('ship', (order: Order) => `order ${order.id} shipped`);
const fulfil = new Pipeline<Order>(broker, { id: 'fulfil_order' }).callNext(check).callNext(charge).callNext(ship).withTracking(tracking);

const app = express();
const server = createServer(app);

// flowcast first: before body parsers, so its routes read their own bodies.
const flowcast = attachFlowcast(server, {
  basePath: '/flowcast',
  broker,
  tracking,
  pipelines: [fulfil],
  ...(token !== undefined && token !== '' && { auth: { apiKeys: { [token]: { id: 'ops', pipelines: '*', actions: ['cancel', 'retry'] } } } }),
});
app.use(flowcast.handler);

// The app's own routes.
app.use(express.json());
let next = 1;
app.get('/', (_req, res) => {
  res.type('html').send('<h1>Shop</h1><p>Orders: <a href="/api/orders">/api/orders</a>. Runs: <a href="/flowcast/">the flowcast dashboard</a>.</p>');
});
app.get('/api/orders', async (_req, res) => {
  const runs = await tracking.listPipelines({});
  res.json({ orders: runs.map((r) => ({ run_id: r.run_id, status: r.status })) });
});
app.post('/api/orders', async (req, res) => {
  const items = (req.body as { items?: unknown } | undefined)?.items;
  if (typeof items !== 'number' || !Number.isInteger(items) || items < 0) {
    res.status(400).json({ error: 'items must be a whole number >= 0' });
    return;
  }
  const run = await fulfil.kiq({ id: `o${next++}`, items });
  res.status(201).json({ run_id: run.runId, dashboard: `/flowcast/dashboard/runs/${run.runId}` });
});

server.once('error', (error) => {
  console.error(`express-app: cannot listen on 127.0.0.1:${port}: ${describeError(error)} (set PORT to another port)`);
  void flowcast.close().then(() => tracking.close()).then(() => broker.close()).then(() => process.exit(1));
});
server.listen(port, '127.0.0.1', () => {
  const address = server.address();
  const actual = typeof address === 'object' && address !== null ? address.port : port;
  console.log(`express-app: open http://127.0.0.1:${actual}/ (the app) and http://127.0.0.1:${actual}/flowcast/ (flowcast) (Ctrl-C stops)`);
});

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) process.exit(130);
  stopping = true;
  console.log('express-app: stopping');
  // flowcast first (it closes its WebSocket and SSE streams), then the app's server.
  await flowcast.close();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await tracking.close();
  await broker.close();
}
process.on('SIGINT', () => void stop());
process.on('SIGTERM', () => void stop());
