/**
 * `flowcast worker --metrics-port`: a real worker process on a real redis-server serves
 * `/metrics` (prom-client's default metrics and its job counters) and `/health`; the
 * counters move as it runs a job started by another process.
 */
import { describe, expect, it } from 'vitest';
import { Pipeline } from '../src/index.js';
import { BullMQBroker } from '../src/redis/index.js';
import { flowcast, type CliChild } from './helpers/cli.js';
import { waitUntil } from './helpers/collect.js';
import { useRedisServer } from './helpers/redis.js';
import { onCleanup } from './helpers/server-fixture.js';
import { metricsTasks } from './fixtures/tasks/metrics.js';

const redis = useRedisServer();

/** Polls an async condition every 100 ms; rejects after `timeoutMs` (an upper bound, not a measurement). */
async function until(condition: () => Promise<boolean>, what: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${timeoutMs}ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

async function metricsUrl(worker: CliChild): Promise<string> {
  let url = '';
  await waitUntil(() => {
    url = /metrics at (http:\/\/\S+)\/metrics/.exec(worker.stdout())?.[1] ?? '';
    return url !== '';
  }, `the worker's metrics address (stdout: ${worker.stdout()} stderr: ${worker.stderr()})`, 60_000);
  return url;
}

async function scrape(url: string): Promise<string> {
  const res = await fetch(`${url}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return res.text();
}

describe('flowcast worker --metrics-port', () => {
  it('serves /metrics and /health, and its job counters move as it runs a job', async () => {
    const prefix = redis.prefix();
    const worker = flowcast(['worker', '--redis', redis.url, '--key-prefix', prefix, '--tasks', 'test/fixtures/tasks/metrics.ts', '--concurrency', '2', '--metrics-port', '0']);
    const url = await metricsUrl(worker);
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);

    let text = await scrape(url);
    for (const name of ['process_cpu_user_seconds_total', 'nodejs_eventloop_lag_seconds', 'flowcast_worker_jobs_processed_total', 'flowcast_worker_jobs_failed_total', 'flowcast_worker_jobs_active']) {
      expect(text, name).toContain(`# TYPE ${name} `);
    }
    expect(sample(text, 'flowcast_worker_jobs_processed_total')).toBe(0);
    expect(sample(text, 'flowcast_worker_jobs_active')).toBe(0);
    expect(sample(text, 'flowcast_worker_concurrency')).toBe(2);
    expect(text).toMatch(/^flowcast_worker_info\{worker_id="[^"]+"\} 1$/m);
    const health = await fetch(`${url}/health`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ status: 'healthy', active: 0, processed: 0 });
    expect((await fetch(`${url}/other`)).status).toBe(404);
    expect((await fetch(`${url}/metrics`, { method: 'POST' })).status).toBe(405);

    const producer = new BullMQBroker({ connection: redis.url, keyPrefix: prefix, worker: false });
    onCleanup(() => producer.close());
    const pipeline = new Pipeline(producer, { id: 'held' }).callNext(metricsTasks(producer).hold);
    const run = await pipeline.kiq(1);
    await until(async () => sample(await scrape(url), 'flowcast_worker_jobs_active') === 1, 'the job active on the worker', 30_000);
    await redis.connect().set(`${prefix}test:release`, '1');
    expect(await run.waitResult({ timeoutMs: 30_000 })).toBe(2);
    await until(async () => {
      text = await scrape(url);
      return sample(text, 'flowcast_worker_jobs_active') === 0;
    }, 'the job finished on the worker', 30_000);
    expect(sample(text, 'flowcast_worker_jobs_processed_total')).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'flowcast_worker_jobs_failed_total')).toBe(0);

    worker.child.kill('SIGTERM');
    expect((await worker.exited).code).toBe(0);
    await expect(fetch(`${url}/health`)).rejects.toThrow();
  });

  it('refuses a bad port as a usage error (exit 2)', async () => {
    const worker = flowcast(['worker', '--redis', redis.url, '--tasks', 'test/fixtures/tasks/metrics.ts', '--metrics-port', '70000']);
    expect((await worker.exited).code).toBe(2);
    expect(worker.stderr()).toContain('expected a port 0-65535, received "70000"');
  });
});
