/**
 * `flowcast serve --redis` with `flowcast worker` processes, as a user runs them: the
 * server starts the demo runs but runs no job (`--no-worker`); a worker process runs
 * every step; events reach the server's WebSocket clients through Redis, and tracking
 * (recorded in Redis by the worker and the server) answers `flowcast history`.
 */
import { describe, expect, it, vi } from 'vitest';
import { connect, isEvent } from './helpers/ws-client.js';
import { waitUntil } from './helpers/collect.js';
import { flowcast } from './helpers/cli.js';
import { useRedisServer } from './helpers/redis.js';
import type { FlowcastEvent, PipelineStatus } from '../src/index.js';

vi.setConfig({ testTimeout: 120_000 });
const redis = useRedisServer();

describe('flowcast serve --redis with flowcast worker', () => {
  it('streams demo runs whose steps run on a separate worker process, and tracks them in Redis', async () => {
    const prefix = redis.prefix();
    const serve = flowcast(['serve', '--port', '0', '--redis', redis.url, '--key-prefix', prefix, '--demo', '--no-worker', '--concurrency', '2']);
    let port = 0;
    await waitUntil(() => {
      const m = /listening on 127\.0\.0\.1:(\d+)/.exec(serve.stdout());
      if (m !== null) port = Number(m[1]);
      if (serve.child.exitCode !== null) throw new Error(`serve exited: ${serve.stderr()}`);
      return port > 0;
    }, 'the serve banner', 60_000);
    expect(serve.stdout()).toContain(`(key prefix ${prefix}); demo steps run on flowcast worker processes`);

    const client = await connect(`ws://127.0.0.1:${port}/ws`);
    await client.subscribe({ type: 'subscribe', pipeline_id: '*' });
    // No worker yet: runs start, but no step does.
    const started = await client.waitFor((m) => m.type === 'PipelineStartEvent' && m.pipeline_id === 'demo_workflow', 'a demo_workflow run start', 60_000);
    expect(client.messages.some((m) => m.type === 'StepCompleteEvent')).toBe(false);

    // Another program (seed 003) writes a log line for that run into Redis: the server's
    // ingestor gives it the run's next seq, and it reaches the client like any event.
    const writer = redis.connect();
    await writer.xadd(`${prefix}ingest`, '*', 'run_id', started.run_id as string, 'step', 'fetch', 'type', 'log', 'message', 'hello from a shell script');
    const line = await client.waitFor((m) => m.type === 'StepLogEvent' && m.run_id === started.run_id, 'the ingested log line', 30_000);
    expect(line.lines).toEqual(['hello from a shell script']);

    const worker = flowcast(['worker', '--redis', redis.url, '--key-prefix', prefix, '--tasks', 'src/demo/worker-tasks.ts', '--concurrency', '4']);
    const ended = await client.waitFor((m) => m.type === 'PipelineCompleteEvent' || m.type === 'PipelineErrorEvent', 'a run that ends on the worker', 90_000);
    const runId = ended.run_id as string;

    // Every event of that run reached the client once, in seq order, from 1.
    const events = client.messages.filter((m): m is typeof m & FlowcastEvent => isEvent(m) && m.run_id === runId);
    expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
    expect(events.some((e) => e.type === 'StepCompleteEvent')).toBe(true);

    // Tracking in Redis knows the run, through the server's REST API.
    let status: PipelineStatus | null = null;
    await waitUntil(() => status !== null && status.status !== 'RUNNING', 'the tracked status', 30_000).catch(() => undefined);
    for (let i = 0; i < 50 && (status === null || status.status === 'RUNNING'); i++) {
      const res = await fetch(`http://127.0.0.1:${port}/api/runs/${runId}`);
      if (res.ok) status = (await res.json()) as PipelineStatus;
      if (status === null || status.status === 'RUNNING') await new Promise((r) => setTimeout(r, 200));
    }
    expect(status?.run_id).toBe(runId);
    expect(status?.status).toBe(ended.type === 'PipelineCompleteEvent' ? 'COMPLETED' : 'FAILED');

    // The engine status lists the worker, and not the server (it runs no job).
    const engine = (await (await fetch(`http://127.0.0.1:${port}/api/engine`)).json()) as { broker: string; workers: { pid: number }[] };
    expect(engine.broker).toBe('bullmq');
    expect(engine.workers.map((w) => w.pid)).toEqual([worker.child.pid]);

    await client.close();
    worker.child.kill('SIGTERM');
    serve.child.kill('SIGINT');
    expect((await serve.exited).code).toBe(0);
    expect((await worker.exited).code).toBe(0);
  });
});
