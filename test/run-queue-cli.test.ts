/**
 * Queued starts through the CLI against a real server on the in-memory broker: `flowcast
 * run` on a pipeline that queues prints the queued run's place and exits 0 (`--json`: the
 * start answer with status QUEUED); `flowcast status` shows it QUEUED with its place;
 * `flowcast run --watch` on a queued run that is cancelled meanwhile exits 1.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { InMemoryBroker } from '../src/pipeline/memory-broker.js';
import { getWebSocketServer } from '../src/server/index.js';
import { InMemoryPipelineStorage, PipelineTrackingManager } from '../src/tracking/index.js';
import { runControlPipelines } from './fixtures/run-control/pipelines.js';
import { flowcast } from './helpers/cli.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup() {
  const broker = new InMemoryBroker({ onError: () => undefined });
  const tracking = new PipelineTrackingManager().withStorage(new InMemoryPipelineStorage());
  const p = runControlPipelines(broker);
  p.queued.withTracking(tracking);
  const server = getWebSocketServer({ host: '127.0.0.1', port: 0, broker, tracking, restRateLimit: false, pipelines: [p.queued] });
  cleanups.push(() => broker.close(), () => tracking.close(), () => server.close());
  await server.startServer();
  const held = await p.queued.kiq({ hold_ms: 60_000 });
  cleanups.push(() => held.cancel('test over'));
  return { url: server.httpUrl, held: held.runId };
}

describe('flowcast run on a pipeline that queues', () => {
  it('prints the queued run and its place, and flowcast status shows it QUEUED', async () => {
    const { url, held } = await setup();
    const json = flowcast(['run', 'queued', '--url', url, '--input', '{}', '--json']);
    expect((await json.exited).code).toBe(0);
    const answer = JSON.parse(json.stdout().trim()) as { run_id: string; status: string; queuePosition: number; waitingFor: string[] };
    expect(answer).toMatchObject({ type: 'started', status: 'QUEUED', queuePosition: 1, waitingFor: [held] });

    const plain = flowcast(['run', 'queued', '--url', url, '--input', '{}']);
    expect((await plain.exited).code).toBe(0);
    expect(plain.stdout()).toMatch(new RegExp(`^queued run \\S+ of queued \\(position 2, waiting for run ${held}\\): it starts when a slot frees`));

    const status = flowcast(['status', answer.run_id, '--url', url]);
    expect((await status.exited).code).toBe(0);
    expect(status.stdout()).toContain('QUEUED');
    expect(status.stdout()).toContain(`Queued:   position 1, waiting for run ${held}`);
  });

  it('run --watch on a queued run that is cancelled meanwhile exits 1', async () => {
    const { url } = await setup();
    const cli = flowcast(['run', 'queued', '--url', url, '--input', '{}', '--watch']);
    for (let i = 0; i < 400 && !/queued run (\S+)/.test(cli.stdout()); i++) await new Promise((r) => setTimeout(r, 25));
    const runId = /queued run (\S+)/.exec(cli.stdout())?.[1] as string;
    expect(runId).toBeDefined();
    const cancel = await fetch(`${url}/api/runs/${runId}/cancel`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ reason: 'not now' }) });
    expect(cancel.status).toBe(200);
    expect((await cli.exited).code).toBe(1);
    expect(`${cli.stdout()}${cli.stderr()}`).toMatch(/cancel/i);
  });
});
