/**
 * RedisPipelineStorage on a real Redis Cluster (3 masters started here with
 * `redis-server --cluster-enabled yes` and `redis-cli --cluster create`): the tracking
 * conformance suite and concurrent writers pass through an ioredis `Cluster` client, so
 * no script or command of the storage crosses slots.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, Redis } from 'ioredis';
import { RedisPipelineStorage } from '../src/redis/storage.js';
import { trackingStorageConformance } from './conformance/tracking-storage.js';
import { RunEvents, reduce } from './helpers/events.js';
import { freePort } from './helpers/redis.js';

const run = promisify(execFile);
const servers: ChildProcess[] = [];
const clients: Cluster[] = [];
let ports: number[] = [];
let dir = '';

async function ping(port: number): Promise<boolean> {
  const probe = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  probe.on('error', () => undefined);
  try {
    await probe.connect();
    return (await probe.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    probe.disconnect();
  }
}

async function clusterOk(port: number): Promise<boolean> {
  const probe = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 0 });
  try {
    return (await probe.call('CLUSTER', 'INFO')) !== null && String(await probe.call('CLUSTER', 'INFO')).includes('cluster_state:ok');
  } finally {
    probe.disconnect();
  }
}

async function waitFor(check: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'flowcast-cluster-'));
  ports = [await freePort(), await freePort(), await freePort()];
  for (const port of ports) {
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no'];
    args.push('--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`, '--daemonize', 'no', '--loglevel', 'warning');
    servers.push(spawn('redis-server', args, { stdio: 'ignore' }));
  }
  for (const port of ports) await waitFor(() => ping(port), `redis-server on ${port}`);
  await run('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes']);
  for (const port of ports) await waitFor(() => clusterOk(port), `the cluster state on ${port}`);
}, 60_000);

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.quit().catch(() => c.disconnect())));
});

afterAll(async () => {
  await Promise.all(
    servers.map(
      (s) =>
        new Promise<void>((resolve) => {
          if (s.exitCode !== null) return resolve();
          s.once('exit', () => resolve());
          s.kill('SIGTERM');
        }),
    ),
  );
  rmSync(dir, { recursive: true, force: true });
});

function connect(): Cluster {
  const cluster = new Cluster(
    ports.map((port) => ({ host: '127.0.0.1', port })),
    { redisOptions: { maxRetriesPerRequest: null } },
  );
  clients.push(cluster);
  return cluster;
}

trackingStorageConformance('RedisPipelineStorage on Redis Cluster', () => new RedisPipelineStorage(connect(), { keyPrefix: `c${randomUUID().slice(0, 8)}:` }), undefined, {
  peer: (storage) => new RedisPipelineStorage(connect(), { keyPrefix: (storage as RedisPipelineStorage).keyPrefix }),
});

describe('RedisPipelineStorage on Redis Cluster', () => {
  it('spreads runs over the slots of every master and loses no update from 6 concurrent writers', async () => {
    const prefix = `c${randomUUID().slice(0, 8)}:`;
    const writers = Array.from({ length: 6 }, () => new RedisPipelineStorage(connect(), { keyPrefix: prefix }));
    const runs = Array.from({ length: 12 }, () => {
      const r = new RunEvents({ pipelineId: 'spread', pipelineType: 'dataflow', steps: ['a', 'b', 'c'] });
      r.start();
      for (const s of ['a', 'b', 'c']) r.stepStart(s);
      for (const s of ['a', 'b', 'c']) r.stepLog(s, [`${s} says hi`]);
      for (const s of ['a', 'b', 'c']) r.stepComplete(s, s);
      r.complete('ok');
      return r;
    });
    await Promise.all(
      writers.map(async (w, i) => {
        for (const r of runs) for (const e of r.events.filter((_e, j) => j % writers.length === i)) await w.applyEvent(e);
      }),
    );
    for (const r of runs) expect(await writers[0]!.getStatus(r.runId)).toEqual(reduce(r.events));
    const listed = await writers[1]!.listPipelines({ pipelineId: 'spread', status: 'COMPLETED' });
    expect(listed.map((s) => s.run_id).sort()).toEqual(runs.map((r) => r.runId).sort());
    // The runs' keys really are on more than one master.
    const cluster = connect();
    await cluster.ping();
    const masters = cluster.nodes('master');
    expect(masters).toHaveLength(3);
    const owners = await Promise.all(masters.map(async (node) => (await node.keys(`${prefix}{*}:track`)).length));
    expect(owners.filter((n) => n > 0).length).toBeGreaterThan(1);
    expect(owners.reduce((a, b) => a + b, 0)).toBe(12);
    expect(await writers[2]!.deletePipeline('spread')).toBe(12);
  });
});
