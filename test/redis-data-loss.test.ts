/**
 * Issue 13 item 13: a Redis that restarts without its data (no persistence) is noticed.
 * Its run logs start over at seq 1, so a client resuming with the seqs it saw would get
 * other events under them: instead it is told (`replay_incomplete` with reason `epoch`)
 * and gets the new history from its start; connected clients are closed with 4010 so that
 * they resume and are told; the server and the worker each log one clear line.
 * A real redis-server without persistence, restarted on its port; a real `flowcast worker`.
 */
import { captureLogger } from './helpers/logger.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import type { EventDraft, FlowcastEvent } from '../src/index.js';
import { PipelineMonitor, type ReplayIncompleteMessage } from '../src/client/index.js';
import { RedisPubSubTransport } from '../src/redis/transport.js';
import { getWebSocketServer } from '../src/server/index.js';
import { waitUntil } from './helpers/collect.js';
import { startRedisServer, type RedisServer } from './helpers/redis-server.js';
import { connect } from './helpers/ws-client.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) {
    try {
      await cleanup();
    } catch (error) {
      console.warn('cleanup failed:', error);
    }
  }
});

function logDraft(runId: string, line: string): EventDraft {
  return { type: 'StepLogEvent', pipeline_id: 'etl', run_id: runId, timestamp: new Date().toISOString(), step_name: 's', step_index: 0, task_id: 't', attempt: 1, lines: [line] };
}

/** Appends and publishes, as the engine does. */
async function emit(t: RedisPubSubTransport, draft: EventDraft): Promise<FlowcastEvent> {
  const event = await t.append(draft);
  if (event === null) throw new Error('refused');
  await t.publish(event);
  return event;
}

/** `flowcast worker` on this Redis; its output so far. */
async function cliWorker(url: string, prefix: string): Promise<() => string> {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'worker', '--tasks', 'test/fixtures/tasks/cluster.ts', '--redis', url, '--key-prefix', prefix], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, FLOWCAST_REDIS_URL: undefined, FLOWCAST_KEY_PREFIX: undefined },
  });
  cleanups.push(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => void (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => void (out += d.toString()));
  await waitUntil(() => /flowcast worker \S+ ready/.test(out), 'the worker to be ready', 30_000);
  return () => out;
}

const lostLines = (text: string): string[] => text.split('\n').filter((line) => /lost its data/.test(line));

describe('a Redis that restarts without its data', () => {
  it('is noticed: one line from the server and from the worker, 4010 to connected clients, replay_incomplete (epoch) to a client resuming from before', { timeout: 120_000 }, async () => {
    let redis: RedisServer = await startRedisServer();
    cleanups.push(async () => {
      await redis.stop();
      rmSync(redis.dir, { recursive: true, force: true });
    });
    const log = captureLogger();
    const prefix = 'loss:';
    const client = new Redis(redis.port, '127.0.0.1', { maxRetriesPerRequest: null, retryStrategy: () => 50 });
    cleanups.push(() => client.disconnect());
    const transport = new RedisPubSubTransport(client, { keyPrefix: prefix, logger: log.logger });
    cleanups.push(() => transport.close());
    const server = getWebSocketServer({ host: '127.0.0.1', port: 0, transport });
    cleanups.push(() => server.close());
    await server.startServer();
    const workerOutput = await cliWorker(redis.url, prefix);

    // Before: three events of a run; a client has them all, a monitor follows the run.
    const before = [await emit(transport, logDraft('run-1', 'a')), await emit(transport, logDraft('run-1', 'b')), await emit(transport, logDraft('run-1', 'c'))];
    const first = await connect(server.url);
    cleanups.push(() => first.close());
    const ack = await first.subscribe({ run_id: 'run-1', since: 0 });
    const epoch = ack.epoch as string;
    expect(epoch).toEqual(expect.any(String));
    await first.waitFor((m) => m.type === 'replay_complete', 'the first replay');
    expect(first.events('run-1').map((e) => e.event_id)).toEqual(before.map((e) => e.event_id));
    const monitor = new PipelineMonitor(server.url, { WebSocket, reconnect: { initialDelayMs: 20, maxDelayMs: 200 } });
    cleanups.push(() => monitor.close());
    const seen: FlowcastEvent[] = [];
    const told: ReplayIncompleteMessage[] = [];
    monitor.on('*', (e) => seen.push(e));
    monitor.on('replay_incomplete', (m) => told.push(m));
    await monitor.connect();
    await monitor.subscribe({ runId: 'run-1', since: 0 });
    await waitUntil(() => seen.length === 3, 'the monitor to have the run');

    // Redis goes away and comes back empty.
    await redis.stop();
    redis = await startRedisServer({ port: redis.port, dir: redis.dir });
    const closed = await first.waitForClose(30_000);
    expect(closed.code).toBe(4010);

    // The monitor was closed too, resumed, and was told, before the new history begins.
    await waitUntil(() => told.length === 1, 'the monitor to be told', 30_000);
    expect(told[0]).toMatchObject({ run_id: 'run-1', reason: 'epoch' });

    // After: the run's log starts over, with other events under seqs 1 and 2.
    await waitUntil(() => client.status === 'ready', 'the server to reconnect', 30_000);
    const after = [await emit(transport, logDraft('run-1', 'x')), await emit(transport, logDraft('run-1', 'y'))];
    expect(after.map((e) => e.seq)).toEqual([1, 2]);

    const resumed = await connect(server.url);
    cleanups.push(() => resumed.close());
    const again = await resumed.subscribe({ run_id: 'run-1', since: 3, epoch });
    expect(again.epoch).not.toBe(epoch);
    await resumed.waitFor((m) => m.type === 'replay_complete', 'the replay after the restart');
    expect(resumed.controls('replay_incomplete')).toEqual([
      { type: 'replay_incomplete', run_id: 'run-1', requested_since: 3, first_seq: 1, last_seq: 2, epoch: again.epoch, reason: 'epoch' },
    ]);
    expect(resumed.events('run-1').map((e) => e.event_id)).toEqual(after.map((e) => e.event_id));

    // ... and gets the new history live: nothing of it is taken for a repeat of the old one.
    await waitUntil(() => seen.length === 5, 'the new history at the monitor', 30_000);
    expect(seen.slice(3).map((e) => e.event_id)).toEqual(after.map((e) => e.event_id));
    expect(told).toHaveLength(1);

    // One clear line each: this process (the server) and the worker process.
    await waitUntil(() => lostLines(workerOutput()).length > 0, 'the worker to say so', 30_000);
    expect(lostLines(log.messages().join('\n'))).toHaveLength(1);
    expect(lostLines(log.messages().join('\n'))[0]).toContain(`Redis at 127.0.0.1:${redis.port} lost its data`);
    expect(lostLines(workerOutput())).toHaveLength(1);
  });
});
