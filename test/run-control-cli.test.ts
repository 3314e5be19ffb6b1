/**
 * Starting runs through the client SDK (`startRun`) and the CLI (`flowcast run`) against
 * a real server on the in-memory broker: the run starts, a second start is refused
 * naming the run in the way, an idempotency key answers the same run, and `--watch`
 * follows the run to its end and exits with its outcome.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { InMemoryBroker } from '../src/pipeline/memory-broker.js';
import { ErrorCodes } from '../src/core/errors.js';
import { startRun, StartRunError } from '../src/client/index.js';
import { getWebSocketServer, type FlowcastServer } from '../src/server/index.js';
import type { ServerOptions } from '../src/server/options.js';
import { runControlPipelines } from './fixtures/run-control/pipelines.js';
import { flowcast } from './helpers/cli.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(server: Partial<ServerOptions> = {}): Promise<{ broker: InMemoryBroker; server: FlowcastServer }> {
  const broker = new InMemoryBroker({ onError: () => undefined });
  const p = runControlPipelines(broker);
  const s = getWebSocketServer({ host: '127.0.0.1', port: 0, broker, restRateLimit: false, pipelines: [p.guarded, p.perUser], ...server });
  cleanups.push(() => broker.close(), () => s.close());
  // Runs still holding at the end are cancelled, so that the broker closes at once.
  cleanups.push(async () => {
    for (const id of held) await broker.runState.get(id).then((r) => (r?.status === 'RUNNING' ? fetch(`${s.httpUrl}/api/runs/${id}/cancel`, { method: 'POST' }) : null));
  });
  await s.startServer();
  return { broker, server: s };
}
const held: string[] = [];

describe('startRun()', () => {
  it('starts a run, is refused with the running run\'s id, and answers a repeated idempotency key with the first run', async () => {
    const { server } = await setup();
    const run = await startRun('guarded', { hold_ms: 60_000 }, { url: server.url });
    held.push(run.run_id);
    expect(run).toMatchObject({ pipeline_id: 'guarded', status: 'RUNNING', deduplicated: false, location: `/api/runs/${run.run_id}` });
    const refused = await startRun('guarded', {}, { url: server.httpUrl }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(StartRunError);
    expect(refused).toMatchObject({ code: ErrorCodes.ALREADY_RUNNING, status: 409, serverCode: 'already_running', runId: run.run_id });

    const first = await startRun('per_user', { user: 'ann' }, { url: server.httpUrl, idempotencyKey: 'k-1' });
    const again = await startRun('per_user', { user: 'ann' }, { url: server.httpUrl, idempotencyKey: 'k-1' });
    expect(again).toMatchObject({ run_id: first.run_id, deduplicated: true });
    const bad = await startRun('guarded', { hold_ms: 'x' }, { url: server.httpUrl }).catch((e: unknown) => e);
    expect(bad).toMatchObject({ code: ErrorCodes.REQUEST_REJECTED, status: 400, serverCode: 'bad_request' });
  });

  it('sends the token (a string or a function) and reports a missing start right', async () => {
    const auth = { apiKeys: { reader: { id: 'reader' }, starter: { id: 'starter', actions: ['start' as const] } } };
    const { server } = await setup({ auth });
    const run = await startRun('per_user', { user: 'bob' }, { url: server.httpUrl, token: () => Promise.resolve('starter') });
    expect(run.deduplicated).toBe(false);
    await expect(startRun('per_user', {}, { url: server.httpUrl, token: 'reader' })).rejects.toMatchObject({ code: ErrorCodes.REQUEST_REJECTED, serverCode: 'forbidden' });
    await expect(startRun('per_user', {}, { url: server.httpUrl })).rejects.toMatchObject({ code: ErrorCodes.UNAUTHORIZED, status: 401 });
  });
});

describe('flowcast run', () => {
  it('starts a run and with --watch exits 0 on success, 1 on failure', async () => {
    const { server } = await setup();
    const ok = flowcast(['run', 'guarded', '--url', server.url, '--input', '{"hold_ms":0}', '--watch']);
    expect((await ok.exited).code).toBe(0);
    expect(ok.stdout()).toMatch(/started run \S+ of guarded/);
    expect(ok.stdout()).toMatch(/completed/i);
    const dir = mkdtempSync(join(tmpdir(), 'flowcast-run-'));
    writeFileSync(join(dir, 'input.json'), '{"fail":true}');
    const failed = flowcast(['run', 'guarded', '--url', server.httpUrl, '--input', `@${join(dir, 'input.json')}`, '--watch', '--json']);
    expect((await failed.exited).code).toBe(1);
    const lines = failed.stdout().trim().split('\n').map((l) => JSON.parse(l) as { type: string });
    expect(lines[0]?.type).toBe('started');
    expect(lines.at(-1)?.type).toBe('PipelineErrorEvent');
  });

  it('refuses a second start naming the running run, and repeats an idempotent start', async () => {
    const { server } = await setup();
    const holding = await startRun('per_user', { user: 'ann', hold_ms: 60_000 }, { url: server.httpUrl });
    held.push(holding.run_id);
    const refused = flowcast(['run', 'per_user', '--url', server.httpUrl, '--input', '{"user":"ann"}']);
    expect((await refused.exited).code).toBe(1);
    expect(refused.stderr()).toContain(holding.run_id);
    expect(refused.stderr()).toMatch(/already running/);
    const other = flowcast(['run', 'per_user', '--url', server.httpUrl, '--input', '{"user":"ann"}', '--key', 'someone-else', '--idempotency-key', 'once']);
    expect((await other.exited).code).toBe(0);
    const id = /started run (\S+)/.exec(other.stdout())?.[1];
    expect(id).toBeDefined();
    const repeat = flowcast(['run', 'per_user', '--url', server.httpUrl, '--input', '{"user":"ann"}', '--key', 'someone-else', '--idempotency-key', 'once', '--json']);
    expect((await repeat.exited).code).toBe(0);
    expect(JSON.parse(repeat.stdout())).toMatchObject({ run_id: id, deduplicated: true });
    const usage = flowcast(['run', 'per_user', '--url', server.httpUrl, '--input', '{not json']);
    expect((await usage.exited).code).toBe(2);
  });
});
