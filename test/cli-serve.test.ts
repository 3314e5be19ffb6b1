/**
 * `flowcast serve`, `status` and `history` as a user runs them: child processes from
 * source (`node --import tsx src/cli/main.ts …`), real sockets, a real WebSocket client.
 * `serve --port 0` prints the port it bound, which the tests read from its banner.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { connect, isEvent } from './helpers/ws-client.js';
import { waitUntil } from './helpers/collect.js';
import { flowcast, type CliChild } from './helpers/cli.js';
import { formatHistory } from '../src/cli/commands/history.js';
import type { PipelineStatus } from '../src/index.js';

// Every case starts node + tsx child processes: seconds each on a busy machine.
vi.setConfig({ testTimeout: 90_000 });

/** Starts `flowcast serve --port 0 …` and resolves with the port from its banner. */
async function serve(args: string[], env: Record<string, string | undefined> = {}): Promise<CliChild & { port: number }> {
  const c = flowcast(['serve', '--port', '0', ...args], env);
  let port = 0;
  await Promise.race([
    waitUntil(() => {
      const m = /listening on 127\.0\.0\.1:(\d+)/.exec(c.stdout());
      if (m !== null) port = Number(m[1]);
      return port > 0;
    }, 'the serve banner', 30_000),
    c.exited.then(({ code }) => {
      throw new Error(`serve exited with ${code} before listening: ${c.stderr()}`);
    }),
  ]);
  return { ...c, port };
}

async function run(args: string[], env: Record<string, string | undefined> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const c = flowcast(args, env);
  const { code } = await c.exited;
  return { code, stdout: c.stdout(), stderr: c.stderr() };
}

describe('flowcast serve --demo', () => {
  it('serves the demo runs live over WebSocket, answers status and history, and stops cleanly on SIGINT', async () => {
    const s = await serve(['--demo', '--concurrency', '2']);
    const out = s.stdout();
    expect(out).toContain(`Dashboard   http://127.0.0.1:${s.port}/`);
    expect(out).toContain(`WebSocket   ws://127.0.0.1:${s.port}/ws`);
    expect(out).toContain('/api/openapi.json');
    expect(out).toMatch(/Auth\s+none/);

    const health = await fetch(`http://127.0.0.1:${s.port}/health`);
    expect(health.status).toBe(200);

    // A subscriber to everything sees whole demo runs, from the start event to the end.
    const client = await connect(`ws://127.0.0.1:${s.port}/ws`);
    await client.subscribe({ type: 'subscribe', pipeline_id: '*' });
    await client.waitUntil(
      () => client.messages.some((m) => isEvent(m) && (m.type === 'PipelineCompleteEvent' || m.type === 'PipelineErrorEvent')),
      'a demo run that ends',
      30_000,
    );
    const ended = client.messages.find((m) => isEvent(m) && (m.type === 'PipelineCompleteEvent' || m.type === 'PipelineErrorEvent'));
    const runId = ended?.run_id as string;
    const pipelineId = ended?.pipeline_id as string;

    const history = await run(['history', '--url', `http://127.0.0.1:${s.port}`, '--json', '-n', '50']);
    expect(history.code, history.stderr).toBe(0);
    const runs = JSON.parse(history.stdout) as PipelineStatus[];
    expect(runs.map((r) => r.run_id)).toContain(runId);

    const table = await run(['history', '--url', `ws://127.0.0.1:${s.port}`, '--pipeline', pipelineId]);
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout.split('\n')[0]).toMatch(/^STARTED \(UTC\)\s+PIPELINE\s+RUN\s+STATUS\s+DURATION\s+STEPS$/);
    expect(table.stdout).toContain(runId.slice(0, 8));
    expect(table.stdout).not.toMatch(new RegExp(`\\s(${['demo_workflow', 'etl_dag', 'flaky_retry', 'always_fails', 'log_progress'].filter((p) => p !== pipelineId).join('|')})\\s`));

    const byRun = await run(['status', runId, '--url', `http://127.0.0.1:${s.port}`]);
    expect(byRun.code, byRun.stderr).toBe(0);
    expect(byRun.stdout).toContain(runId);
    expect(byRun.stdout).toMatch(/COMPLETED|FAILED/);

    const byPipeline = await run(['status', pipelineId, '--url', `http://127.0.0.1:${s.port}`, '--json']);
    expect(byPipeline.code, byPipeline.stderr).toBe(0);
    expect((JSON.parse(byPipeline.stdout) as PipelineStatus).pipeline_id).toBe(pipelineId);

    const missing = await run(['status', 'no_such_thing', '--url', `http://127.0.0.1:${s.port}`]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('no run and no pipeline has the id "no_such_thing"');

    await client.close();
    s.child.kill('SIGINT');
    const { code } = await s.exited;
    expect(code).toBe(0);
    expect(s.stdout()).toContain('flowcast serve: stopping');
  });

  it('gives the server its real demo pipelines: listed with input schemas, started with an input, tail_task one at a time', async () => {
    const s = await serve(['--demo', '--concurrency', '1']);
    const http = `http://127.0.0.1:${s.port}`;
    expect(s.stdout()).toContain(`${http}/dashboard/pipelines`);
    const list = (await (await fetch(`${http}/api/pipelines`)).json()) as { pipelines: { pipeline_id: string; input_schema: { properties: Record<string, unknown> } | null; concurrency: unknown }[] };
    expect(list.pipelines.map((p) => p.pipeline_id)).toEqual(['demo_workflow', 'etl_dag', 'flaky_retry', 'always_fails', 'log_progress', 'tail_task']);
    for (const p of list.pipelines) expect(p.input_schema).not.toBeNull();
    const tail = list.pipelines.find((p) => p.pipeline_id === 'tail_task');
    expect(Object.keys(tail?.input_schema?.properties ?? {})).toEqual(['messages', 'interval_ms', 'level', 'timestamps']);
    expect(tail?.concurrency).toEqual({ limit: 1, key: 'pipeline', on_limit: 'reject' });

    const start = (input: unknown): Promise<Response> =>
      fetch(`${http}/api/pipelines/tail_task/runs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ input }) });
    const bad = await start({ messages: 0 });
    expect(bad.status).toBe(400);
    const first = await start({ messages: 200, interval_ms: 1000, level: 'warn' });
    expect(first.status).toBe(201);
    const runId = ((await first.json()) as { run_id: string }).run_id;
    const second = await start({ messages: 1 });
    expect(second.status).toBe(409);
    expect(await second.json()).toMatchObject({ error: { code: 'already_running', run_id: runId } });
    // The run is the pipeline's own: its input is the one given.
    const run = (await (await fetch(`${http}/api/runs/${runId}`)).json()) as { input: unknown };
    expect(run.input).toEqual({ messages: 200, interval_ms: 1000, level: 'warn' });

    s.child.kill('SIGINT');
    const { code } = await s.exited;
    expect(code).toBe(0);
  });
});

describe('flowcast serve with tokens', () => {
  it('rejects clients without the token (WebSocket 4001, REST 401) and lets the token holder in', async () => {
    const s = await serve(['--token', 'sekret-1', '--token', 'sekret-2']);
    expect(s.stdout()).toMatch(/Auth\s+tokens required/);
    const anonymous = await connect(`ws://127.0.0.1:${s.port}/ws`);
    expect((await anonymous.closed).code).toBe(4001);

    const refused = await run(['history', '--url', `http://127.0.0.1:${s.port}`]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^flowcast history: .*token/im);

    const allowed = await run(['history', '--url', `http://127.0.0.1:${s.port}`, '--token', 'sekret-2']);
    expect(allowed.code, allowed.stderr).toBe(0);
    expect(allowed.stdout).toBe('No runs.\n');

    const fromEnv = await run(['history', '--url', `http://127.0.0.1:${s.port}`], { FLOWCAST_TOKEN: 'sekret-1' });
    expect(fromEnv.code, fromEnv.stderr).toBe(0);

    const client = await connect(`ws://127.0.0.1:${s.port}/ws`, { queryToken: 'sekret-1' });
    expect((await client.subscribe({ type: 'subscribe', pipeline_id: '*' })).type).toBe('subscribed');
    await client.close();
    s.child.kill('SIGTERM');
    expect((await s.exited).code).toBe(0);
  });

  it('takes its token from $FLOWCAST_TOKEN', async () => {
    const s = await serve([], { FLOWCAST_TOKEN: 'from-env' });
    const anonymous = await connect(`ws://127.0.0.1:${s.port}/ws`);
    expect((await anonymous.closed).code).toBe(4001);
    const client = await connect(`ws://127.0.0.1:${s.port}/ws`, { headerToken: 'from-env' });
    expect((await client.subscribe({ type: 'subscribe', pipeline_id: 'x' })).type).toBe('subscribed');
    await client.close();
  });
});

const hasOpenssl = spawnSync('openssl', ['version']).status === 0;

describe('flowcast serve with TLS', () => {
  it.skipIf(!hasOpenssl)('serves wss:// and https:// from --tls-cert and --tls-key', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'flowcast-cli-tls-'));
    const made = spawnSync(
      'openssl',
      ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'],
      { stdio: 'ignore' },
    );
    expect(made.status).toBe(0);
    const s = await serve(['--tls-cert', join(dir, 'cert.pem'), '--tls-key', join(dir, 'key.pem')]);
    expect(s.stdout()).toContain('(TLS)');
    expect(s.stdout()).toContain(`wss://127.0.0.1:${s.port}/ws`);
    const ca = readFileSync(join(dir, 'cert.pem'), 'utf8');
    const client = await connect(`wss://127.0.0.1:${s.port}/ws`, { ws: { ca } });
    expect((await client.subscribe({ type: 'subscribe', pipeline_id: '*' })).type).toBe('subscribed');
    await client.close();
  });
});

describe('flowcast serve, status and history: bad arguments', () => {
  it('serve exits 2 on a bad port or a lone --tls-cert, and 1 on unreadable TLS files', async () => {
    const [badPort, lone, unreadable] = await Promise.all([
      run(['serve', '--port', '70000']),
      run(['serve', '--tls-cert', 'cert.pem']),
      run(['serve', '--port', '0', '--tls-cert', '/nonexistent/cert.pem', '--tls-key', '/nonexistent/key.pem']),
    ]);
    expect(badPort.code).toBe(2);
    expect(badPort.stderr).toContain('expected a port 0-65535, received "70000"');
    expect(lone.code).toBe(2);
    expect(lone.stderr).toContain('--tls-cert and --tls-key go together');
    expect(unreadable.code).toBe(1);
    expect(unreadable.stderr).toContain('--tls-cert /nonexistent/cert.pem');
  });

  it('status and history exit 2 on bad options and 1 when the server cannot be reached', async () => {
    const [limit, badUrl, unreachable] = await Promise.all([
      run(['history', '-n', '0']),
      run(['status', 'x', '--url', 'ftp://example']),
      // Port 9 (discard) on loopback: nothing listens there on the test machines.
      run(['history', '--url', 'http://127.0.0.1:9']),
    ]);
    expect(limit.code).toBe(2);
    expect(limit.stderr).toContain('expected a whole number >= 1, received "0"');
    expect(badUrl.code).toBe(2);
    expect(badUrl.stderr).toContain('ftp://example');
    expect(unreachable.code).toBe(1);
    expect(unreachable.stderr).toMatch(/^flowcast history: cannot reach http:\/\/127\.0\.0\.1:9: /);
  });
});

describe('formatHistory', () => {
  it('lines up one row per run with the status in words', () => {
    const base = { pipeline_type: 'pipeline', completed_at: null, result: null, error: null, input: null, last_seq: 1, progress: 0, current_step: null, updated_at: '' } as const;
    const text = formatHistory([
      { ...base, pipeline_id: 'etl', run_id: 'aaaaaaaa-1', status: 'COMPLETED', started_at: '2026-11-28T10:00:00.000Z', duration_ms: 1500, steps: [] },
      { ...base, pipeline_id: 'longer_name', run_id: 'bbbbbbbb-2', status: 'RUNNING', started_at: null, duration_ms: null, steps: [] },
    ] as unknown as PipelineStatus[]);
    expect(text.split('\n')).toEqual([
      'STARTED (UTC)        PIPELINE     RUN       STATUS     DURATION  STEPS',
      '2026-11-28 10:00:00  etl          aaaaaaaa  COMPLETED  1.5s      0/0',
      '-                    longer_name  bbbbbbbb  RUNNING    -         0/0',
    ]);
  });
});
