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
import { nowUs, serveRequests, type CpuReport } from '../fanout/shared.js';

const [url, keyPrefix] = process.argv.slice(2);
if (url === undefined || keyPrefix === undefined) throw new Error('server.js: usage: server.js <redis-url> <key-prefix>');

const redis = new Redis(url, { maxRetriesPerRequest: null });
const transport = new RedisPubSubTransport(redis, { keyPrefix });
const server = getWebSocketServer({ port: 0, transport, maxConnections: 20_000 });
await server.startServer();

let mark = { cpu: process.cpuUsage(), wall: nowUs() };

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
