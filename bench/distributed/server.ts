/**
 * A distributed bench server instance: the real flowcast server
 * (`getWebSocketServer({ port: 0, transport })`) on a `RedisPubSubTransport` of its own,
 * on 127.0.0.1 and a free port. Events reach it from workers through Redis Pub/Sub only.
 * Driven over IPC; measures its own CPU (`process.cpuUsage()`).
 *
 * Usage (by bench/distributed.ts): node server.js <redis-url> <key-prefix>
 */
import { Redis } from 'ioredis';
import { RedisPubSubTransport } from '../../src/redis/transport.js';
import { getWebSocketServer } from '../../src/server/server.js';
import { nowUs, percentile, serveRequests, type CpuReport } from '../fanout/shared.js';

const [url, keyPrefix] = process.argv.slice(2);
if (url === undefined || keyPrefix === undefined) throw new Error('server.js: usage: server.js <redis-url> <key-prefix>');

const redis = new Redis(url, { maxRetriesPerRequest: null });
const transport = new RedisPubSubTransport(redis, { keyPrefix });
const server = getWebSocketServer({ port: 0, transport, maxConnections: 20_000, maxConnectionsPerAddress: 20_000 });
await server.startServer();

let mark = { cpu: process.cpuUsage(), wall: nowUs() };

/**
 * Server fan-out of one event: from its arrival at a transport listener registered after
 * the hub's (so the hub has queued it to every connection) until an immediate queued
 * then runs, which is after the hub's flush wrote it to every socket.
 */
let fanOut: { samples: number[]; stop: () => void } | null = null;

serveRequests(async (msg) => {
  switch (msg.cmd) {
    case 'start':
      return { url: `${server.url}/ws` };
    case 'subscribers':
      return server.connections;
    case 'mark':
      mark = { cpu: process.cpuUsage(), wall: nowUs() };
      return null;
    case 'measure': {
      const cpu = process.cpuUsage(mark.cpu);
      const report: CpuReport = { userUs: cpu.user, systemUs: cpu.system, wallUs: nowUs() - mark.wall };
      return report;
    }
    case 'fanout-start': {
      fanOut?.stop();
      const samples: number[] = [];
      const stop = transport.subscribe({ pipelineId: msg.pipelineId as string }, () => {
        const t0 = nowUs();
        setImmediate(() => samples.push(nowUs() - t0));
      });
      fanOut = { samples, stop };
      return null;
    }
    case 'fanout-stop': {
      if (fanOut === null) throw new Error('fanout-stop before fanout-start');
      fanOut.stop();
      const sorted = Float64Array.from(fanOut.samples).sort();
      fanOut = null;
      return { count: sorted.length, p50Us: percentile(sorted, 50), p99Us: percentile(sorted, 99) };
    }
    case 'close':
      await server.close();
      await transport.close();
      await redis.quit();
      setImmediate(() => process.exit(0));
      return null;
    default:
      throw new Error(`unknown command ${String(msg.cmd)}`);
  }
});
