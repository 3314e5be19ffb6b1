/**
 * The memory part of the distributed bench (issue 18, goal 7): Redis memory per run and
 * per event. Runs of a known shape (`steps` steps, each writing `lines` log lines) go
 * through the BullMQ broker with tracking, the Redis event log and Pub/Sub on (2 worker
 * processes, as `flowcast worker` runs them); then `used_memory` before/after, and
 * `MEMORY USAGE` of every key of the bench's prefix, by kind (track, state, logmeta,
 * log, tracking indexes, BullMQ...), against the wire JSON of the runs' events.
 */
import { Redis } from 'ioredis';
import { BullMQBroker } from '../../src/redis/bullmq-broker.js';
import { RedisPubSubTransport } from '../../src/redis/transport.js';
import { PipelineTrackingManager } from '../../src/tracking/manager.js';
import { Peer } from '../orchestrator.js';
import { memoryPipeline } from './shared.js';

export interface MemoryOptions {
  url: string;
  keyPrefix: string;
  workers: number;
  /** Runs measured (after a few warm-up runs). */
  runs: number;
  steps: number;
  /** Log lines per step. */
  lines: number;
  lanes: number;
}

/** One kind of key: how many, their bytes (MEMORY USAGE), and a sample TTL. */
export interface KeyKind {
  kind: string;
  keys: number;
  bytes: number;
  /** Seconds to live of one key of the kind (-1: none). */
  ttl: number;
  /** A key of this kind per run (else shared by all runs). */
  perRun: boolean;
}

export interface MemoryResult {
  runs: number;
  /** Runs whose keys are in Redis (measured + warm-up). */
  runsStored: number;
  eventsPerRun: number;
  /** Mean bytes of one event as wire JSON (as the server sends it). */
  wireBytesPerEvent: number;
  /** `used_memory` after − before, over the measured runs. */
  usedMemoryDelta: number;
  kinds: KeyKind[];
}

/** The kind of a key of the bench's prefix. */
function kindOf(key: string, prefix: string): { kind: string; perRun: boolean } {
  const rest = key.slice(prefix.length);
  if (rest.startsWith('bullmq:')) return { kind: 'BullMQ (queues, events stream, meta)', perRun: false };
  if (rest.startsWith('track:idx:')) return { kind: 'tracking indexes (track:idx:*)', perRun: false };
  if (rest.startsWith('{runs:')) return { kind: 'run streams ({runs:*})', perRun: false };
  const m = /^\{([^}]*)\}:(.+)$/.exec(rest);
  // A run's keys share its hash tag (the run id); `{workers}`, `{servers}`, `{slot:*}` are not runs.
  if (m !== null && m[1] !== 'workers' && m[1] !== 'servers' && !(m[1] as string).includes(':')) return { kind: m[2] as string, perRun: true };
  if (m !== null) return { kind: `other ({${m[1] as string}}:*)`, perRun: false };
  return { kind: `other (${rest.replace(/[0-9a-f-]{36}/g, '<id>')})`, perRun: false };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function usedMemory(redis: Redis): Promise<number> {
  const info = await redis.info('memory');
  return Number(/^used_memory:(\d+)/m.exec(info)?.[1] ?? Number.NaN);
}

export async function runMemory(o: MemoryOptions, log: (line: string) => void): Promise<MemoryResult> {
  const file = new URL('./worker.js', import.meta.url);
  const workers = Array.from({ length: o.workers }, (_, i) => new Peer(`memory worker ${i + 1}`, file, ['memory', o.url, o.keyPrefix, '8', String(o.steps), String(o.lines)]));
  const admin = new Redis(o.url, { maxRetriesPerRequest: null });
  const readConnection = new Redis(o.url, { maxRetriesPerRequest: null });
  const transport = new RedisPubSubTransport(readConnection, { keyPrefix: o.keyPrefix });
  const broker = new BullMQBroker({ connection: o.url, keyPrefix: o.keyPrefix, worker: false });
  const tracking = new PipelineTrackingManager().withAutoStorage(broker);
  const pipeline = memoryPipeline(broker, o.steps, o.lines).withTracking(tracking);
  const runIds: string[] = [];
  const runMany = async (count: number): Promise<void> => {
    let next = 0;
    const lane = async (): Promise<void> => {
      while (next < count) {
        const handle = await pipeline.kiq(next++);
        runIds.push(handle.runId);
        await handle.waitResult({ timeoutMs: 120_000 });
      }
    };
    await Promise.all(Array.from({ length: Math.min(o.lanes, count) }, lane));
  };
  try {
    await Promise.all(workers.map((w) => w.request({ cmd: 'ready' }, 60_000)));
    const warm = 5;
    await runMany(warm);
    await sleep(1000);
    const before = await usedMemory(admin);
    await runMany(o.runs);
    // Tracking coalesces its writes: let the last ones land.
    await sleep(1500);
    const after = await usedMemory(admin);

    // Every key of the prefix, by kind.
    const kinds = new Map<string, KeyKind>();
    const runsSeen = new Set<string>();
    let cursor = '0';
    do {
      const [next, keys] = await admin.scan(cursor, 'MATCH', `${o.keyPrefix}*`, 'COUNT', 1000);
      cursor = next;
      for (const key of keys) {
        const { kind, perRun } = kindOf(key, o.keyPrefix);
        const tag = /^\{([^}]*)\}/.exec(key.slice(o.keyPrefix.length))?.[1];
        if (perRun && tag !== undefined) runsSeen.add(tag);
        let k = kinds.get(kind);
        if (k === undefined) {
          k = { kind, keys: 0, bytes: 0, ttl: await admin.ttl(key), perRun };
          kinds.set(kind, k);
        }
        k.keys++;
        k.bytes += Number(await admin.call('MEMORY', 'USAGE', key, 'SAMPLES', '0'));
      }
    } while (cursor !== '0');

    // The events of a sample of runs, as the server sends them.
    const sample = runIds.slice(warm, warm + Math.min(20, o.runs));
    let events = 0;
    let wire = 0;
    for (const runId of sample) {
      const read = await transport.read(runId);
      events += read.events.length;
      for (const e of read.events) wire += Buffer.byteLength(JSON.stringify(e));
    }
    if (events === 0) throw new Error('memory: no events read back from the runs');
    log(`  ${o.runs} runs (+${warm} warm-up) of ${o.steps} steps x ${o.lines} log lines: used_memory ${before} -> ${after} bytes`);
    return {
      runs: o.runs,
      runsStored: runsSeen.size,
      eventsPerRun: events / sample.length,
      wireBytesPerEvent: wire / events,
      usedMemoryDelta: after - before,
      kinds: [...kinds.values()].sort((a, b) => b.bytes - a.bytes),
    };
  } finally {
    await Promise.all(workers.map((w) => w.close()));
    await tracking.close();
    await broker.close();
    await transport.close();
    await readConnection.quit().catch(() => undefined);
    await admin.quit();
  }
}
