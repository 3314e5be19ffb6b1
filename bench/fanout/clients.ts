/**
 * A fan-out bench client process: many WebSocket subscribers in one process, kept light
 * (plain `ws` clients; for Socket.IO they speak the Engine.IO v4 / Socket.IO v5 wire
 * protocol directly: connect, namespace `40`, answer pings). Counts deliveries; in
 * latency mode takes receive time − the publisher's stamp (read from the event's first log line).
 * Usage (by bench/fanout.ts): node clients.js flowcast|socketio|ws
 */
import WebSocket from 'ws';
import { isFlowcast, nowUs, percentile, serveRequests, SYSTEMS, PIPELINE_ID, type ExpectReport, type System } from './shared.js';

const system = process.argv[2] as System;
if (!SYSTEMS.includes(system)) throw new Error(`clients.js: system must be one of ${SYSTEMS.join(', ')}, received ${String(process.argv[2])}`);

const sockets: WebSocket[] = [];

interface Expectation {
  target: number;
  received: number;
  firstUs: number;
  lastUs: number;
  latency: boolean;
  skipUs: number;
  startUs: number;
  samples: number[];
  done: () => void;
  cpu: NodeJS.CpuUsage;
}
let expecting: Expectation | null = null;

const STAMP = Buffer.from('"lines":["');

/**
 * The publisher's send time, read from the first log line without parsing the whole
 * event: the client stays light, so the latency is the servers' more than the client's.
 */
function sentUsOf(data: Buffer): number {
  const at = data.indexOf(STAMP);
  if (at < 0) return Number.NaN;
  let n = 0;
  for (let i = at + STAMP.length; i < data.length; i++) {
    const c = data[i] as number;
    if (c < 0x30 || c > 0x39) break;
    n = n * 10 + (c - 0x30);
  }
  return n;
}

/** One delivered event (`data` is the frame's payload). */
function onEvent(data: Buffer): void {
  const e = expecting;
  if (e === null) return;
  const t = nowUs();
  if (e.received === 0) e.firstUs = t;
  e.lastUs = t;
  e.received++;
  if (e.latency) {
    const sent = sentUsOf(data);
    if (sent >= e.startUs + e.skipUs) e.samples.push(t - sent);
  }
  if (e.received === e.target) e.done();
}

/** Opens one subscribed connection; resolves when the server has confirmed the subscription. */
function open(url: string): Promise<void> {
  return new Promise((resolve, reject) => {
    // The deflate arm offers permessage-deflate (as browsers do); the others do not.
    const ws = new WebSocket(url, { perMessageDeflate: system === 'flowcast-deflate' });
    let ready = false;
    const timer = setTimeout(() => reject(new Error(`no subscription confirmed in 30 s by ${url}`)), 30_000);
    const becomeReady = (): void => {
      ready = true;
      clearTimeout(timer);
      resolve();
    };
    ws.on('error', (error) => {
      if (!ready) {
        clearTimeout(timer);
        reject(error);
      }
    });
    if (isFlowcast(system)) {
      ws.on('open', () => ws.send(JSON.stringify({ type: 'subscribe', pipeline_id: PIPELINE_ID })));
      ws.on('message', (data: Buffer) => {
        if (ready) return onEvent(data);
        const msg = JSON.parse(data.toString()) as { type: string };
        if (msg.type === 'subscribed') becomeReady();
      });
    } else if (system === 'ws') {
      ws.on('open', becomeReady);
      ws.on('message', (data: Buffer) => onEvent(data));
    } else {
      // Engine.IO packet types: 0 open, 2 ping, 3 pong, 4 message; Socket.IO: 40 connect, 42 event.
      ws.on('message', (data: Buffer) => {
        const kind = data[0];
        if (kind === 0x34 /* 4 */ && data[1] === 0x32 /* 2 */) return onEvent(data);
        if (kind === 0x32 /* 2 */) return ws.send('3');
        if (kind === 0x30 /* 0 */) return ws.send('40');
        if (kind === 0x34 && data[1] === 0x30 /* 40 */ && !ready) becomeReady();
      });
    }
    sockets.push(ws);
  });
}

async function connect(url: string, connections: number): Promise<number> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < connections) {
      next++;
      await open(url);
    }
  };
  await Promise.all(Array.from({ length: Math.min(100, connections) }, worker));
  return sockets.length;
}

/** Opens one connection and replays a run's log from the start; measures until `replay_complete`. */
function replay(url: string, runId: string, events: number): Promise<{ ms: number; events: number; inOrder: boolean }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    let start = 0;
    let received = 0;
    let inOrder = true;
    const timer = setTimeout(() => reject(new Error('replay: no replay_complete within 30 s')), 30_000);
    ws.on('error', reject);
    ws.on('open', () => {
      start = nowUs();
      ws.send(JSON.stringify({ type: 'subscribe', run_id: runId, since: 0 }));
    });
    ws.on('message', (data: Buffer) => {
      const msg = JSON.parse(data.toString()) as { type: string; seq?: number };
      if (msg.seq !== undefined) {
        received++;
        if (msg.seq !== received) inOrder = false;
      } else if (msg.type === 'replay_complete') {
        const ms = (nowUs() - start) / 1000;
        clearTimeout(timer);
        ws.close();
        resolve({ ms, events: received, inOrder: inOrder && received === events });
      } else if (msg.type === 'error' || msg.type === 'replay_incomplete') {
        clearTimeout(timer);
        reject(new Error(`replay: ${data.toString()}`));
      }
    });
  });
}

let waiting: Promise<ExpectReport> | null = null;

serveRequests(async (msg) => {
  switch (msg.cmd) {
    case 'connect':
      return connect(msg.url as string, msg.connections as number);
    case 'expect': {
      // Arms the counters (answered at once); `wait` answers when every delivery arrived.
      const perConnection = msg.perConnection as number;
      let done!: () => void;
      const arrived = new Promise<void>((resolve) => (done = resolve));
      const e: Expectation = {
        target: perConnection * sockets.length,
        received: 0,
        firstUs: 0,
        lastUs: 0,
        latency: msg.latency === true,
        skipUs: (msg.skipUs as number | undefined) ?? 0,
        startUs: nowUs(),
        samples: [],
        done,
        cpu: process.cpuUsage(),
      };
      expecting = e;
      const timeoutMs = msg.timeoutMs as number;
      waiting = (async () => {
        let timer: NodeJS.Timeout | undefined;
        const timedOut = await Promise.race([arrived.then(() => false), new Promise<boolean>((r) => (timer = setTimeout(() => r(true), timeoutMs)))]);
        clearTimeout(timer);
        expecting = null;
        const sorted = Float64Array.from(e.samples).sort();
        const cpu = process.cpuUsage(e.cpu);
        return {
          received: e.received,
          firstUs: e.firstUs,
          lastUs: e.lastUs,
          timedOut,
          clientCpuUs: cpu.user + cpu.system,
          latencies: e.latency ? { count: sorted.length, p50: percentile(sorted, 50), p99: percentile(sorted, 99), max: percentile(sorted, 100) } : null,
        };
      })();
      return null;
    }
    case 'wait':
      if (waiting === null) throw new Error('wait before expect');
      return waiting;
    case 'replay':
      return replay(msg.url as string, msg.runId as string, msg.events as number);
    case 'close':
      for (const ws of sockets) ws.terminate();
      setImmediate(() => process.exit(0));
      return null;
    default:
      throw new Error(`unknown command ${String(msg.cmd)}`);
  }
});
