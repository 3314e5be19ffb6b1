/**
 * A fan-out bench server process: flowcast, Socket.IO 4 or plain `ws`, on 127.0.0.1 and
 * a free port, with the publisher in the same process (events are born on the server,
 * as with an embedded broker). Driven by the orchestrator over IPC; measures its own CPU
 * and memory only. Usage (by bench/fanout.ts): node server.js flowcast|socketio|ws
 */
import { createServer, type Server as HttpServer } from 'node:http';
import { randomUUID } from 'node:crypto';
import { WebSocketServer, WebSocket } from 'ws';
import { Server as SocketIoServer } from 'socket.io';
import { InMemoryBroker } from '../../src/index.js';
import { getWebSocketServer, type FlowcastServer } from '../../src/server/server.js';
import { isFlowcast, logDraft, nowUs, plainEvent, PIPELINE_ID, serveRequests, SYSTEMS, type CpuReport, type MemReport, type System } from './shared.js';

const system = process.argv[2] as System;
if (!SYSTEMS.includes(system)) throw new Error(`server.js: system must be one of ${SYSTEMS.join(', ')}, received ${String(process.argv[2])}`);

interface Target {
  url: string;
  /** Publishes one event to every subscriber. */
  publishOne(): void;
  /** Starts a new run: events after this get seq 1, 2, ... */
  newRun(): void;
  subscribers(): number;
  close(): Promise<void>;
}

async function listen(http: HttpServer): Promise<number> {
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  const address = http.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

let broker: InMemoryBroker | null = null;

/** `deflate`: permessage-deflate with threshold 0, so every event is compressed (the ~350-byte bench event is below the default 1024). */
async function startFlowcast(deflate: boolean): Promise<Target> {
  broker = new InMemoryBroker();
  const transport = broker.transport;
  const server: FlowcastServer = getWebSocketServer({ port: 0, broker, maxConnections: 20_000, maxConnectionsPerAddress: 20_000, ...(deflate && { perMessageDeflate: { threshold: 0 } }) });
  await server.startServer();
  let runId = randomUUID();
  let step = 0;
  return {
    url: `${server.url}/ws`,
    publishOne() {
      const event = transport.appendSync(logDraft(runId, step++, nowUs()));
      if (event !== null) transport.publish(event);
    },
    newRun() {
      runId = randomUUID();
      step = 0;
    },
    subscribers: () => server.connections,
    close: () => server.close(),
  };
}

async function startSocketIo(): Promise<Target> {
  const http = createServer();
  const io = new SocketIoServer(http, { transports: ['websocket'], serveClient: false, perMessageDeflate: false });
  io.on('connection', (socket) => {
    void socket.join(PIPELINE_ID);
  });
  const port = await listen(http);
  let runId = randomUUID();
  let seq = 0;
  return {
    url: `ws://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket`,
    publishOne() {
      seq++;
      io.to(PIPELINE_ID).emit('event', plainEvent(runId, seq, nowUs()));
    },
    newRun() {
      runId = randomUUID();
      seq = 0;
    },
    subscribers: () => io.sockets.adapter.rooms.get(PIPELINE_ID)?.size ?? 0,
    close: () => new Promise<void>((resolve) => void io.close(() => resolve())),
  };
}

async function startWs(): Promise<Target> {
  const http = createServer();
  const wss = new WebSocketServer({ server: http, perMessageDeflate: false });
  const port = await listen(http);
  let runId = randomUUID();
  let seq = 0;
  return {
    url: `ws://127.0.0.1:${port}/`,
    publishOne() {
      seq++;
      // Serialise once, send the same bytes to every client.
      const data = Buffer.from(JSON.stringify(plainEvent(runId, seq, nowUs())));
      for (const client of wss.clients) if (client.readyState === WebSocket.OPEN) client.send(data, { binary: false });
    },
    newRun() {
      runId = randomUUID();
      seq = 0;
    },
    subscribers: () => wss.clients.size,
    close: async () => {
      for (const client of wss.clients) client.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      await new Promise<void>((resolve) => http.close(() => resolve()));
    },
  };
}

const target = isFlowcast(system) ? await startFlowcast(system === 'flowcast-deflate') : system === 'socketio' ? await startSocketIo() : await startWs();

let mark = { cpu: process.cpuUsage(), wall: nowUs() };

function gc(): void {
  const collect = (globalThis as { gc?: () => void }).gc;
  if (collect === undefined) throw new Error('run the bench server with --expose-gc');
  collect();
  collect();
}

serveRequests(async (msg) => {
  switch (msg.cmd) {
    case 'start':
      return { url: target.url };
    case 'subscribers':
      return target.subscribers();
    case 'mark':
      mark = { cpu: process.cpuUsage(), wall: nowUs() };
      return null;
    case 'measure': {
      const cpu = process.cpuUsage(mark.cpu);
      const report: CpuReport = { userUs: cpu.user, systemUs: cpu.system, wallUs: nowUs() - mark.wall };
      return report;
    }
    case 'burst': {
      // As fast as the server goes: `perTick` events back to back, then a turn of the event loop.
      const events = msg.events as number;
      const perTick = msg.perTick as number;
      target.newRun();
      const startUs = nowUs();
      await new Promise<void>((resolve) => {
        let sent = 0;
        const tick = (): void => {
          const n = Math.min(perTick, events - sent);
          for (let i = 0; i < n; i++) target.publishOne();
          sent += n;
          if (sent < events) setImmediate(tick);
          else resolve();
        };
        tick();
      });
      return { startUs, endUs: nowUs() };
    }
    case 'paced': {
      // A steady rate: each turn publishes the events that are due by now.
      // Also measured: how long the server takes to hand one event to every socket (the
      // writes are done when an immediate queued after the publish runs).
      const rate = msg.eventsPerSec as number;
      const total = Math.round((rate * (msg.durationMs as number)) / 1000);
      target.newRun();
      const startUs = nowUs();
      const fanOut: number[] = [];
      await new Promise<void>((resolve) => {
        let sent = 0;
        const loop = (): void => {
          const due = Math.min(total, Math.floor(((nowUs() - startUs) * rate) / 1e6) + 1);
          if (sent < due) {
            const t0 = nowUs();
            for (; sent < due; sent++) target.publishOne();
            setImmediate(() => fanOut.push(nowUs() - t0));
          }
          if (sent < total) setTimeout(loop, 1);
          else setImmediate(resolve);
        };
        loop();
      });
      fanOut.sort((a, b) => a - b);
      const at = (p: number): number => fanOut[Math.min(fanOut.length - 1, Math.ceil(p * fanOut.length) - 1)] ?? Number.NaN;
      return { startUs, endUs: nowUs(), events: total, fanOutP50Us: at(0.5), fanOutP99Us: at(0.99) };
    }
    case 'mem': {
      gc();
      await new Promise((r) => setTimeout(r, 100));
      gc();
      const m = process.memoryUsage();
      const report: MemReport = { rss: m.rss, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers };
      return report;
    }
    case 'backlog': {
      // A run whose log already holds `events` events (the last one ends the run when `ended`).
      if (broker === null) throw new Error('backlog: flowcast only');
      const runId = randomUUID();
      const events = msg.events as number;
      for (let i = 1; i <= events; i++) {
        const draft =
          msg.ended === true && i === events
            ? { type: 'PipelineCompleteEvent' as const, pipeline_id: PIPELINE_ID, run_id: runId, timestamp: new Date().toISOString(), pipeline_type: 'sequential' as const, status: 'COMPLETED' as const, duration_ms: 1234, result: { rows: 500 } }
            : logDraft(runId, i, nowUs());
        broker.transport.appendSync(draft);
      }
      return { runId };
    }
    case 'close':
      await target.close();
      if (broker !== null) await broker.close();
      setImmediate(() => process.exit(0));
      return null;
    default:
      throw new Error(`unknown command ${String(msg.cmd)}`);
  }
});
