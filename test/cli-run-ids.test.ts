/**
 * What a user types after `flowcast history`: the 8-character run ids it prints, given
 * to `flowcast status` and `flowcast watch --run`; a prefix that fits several runs or
 * none; the exit-code table (0 ok, 1 failure, 2 usage); hints in the CLI's own words;
 * an example in every command's `--help`. The CLI runs as a child process against a
 * real server (the in-process fixture, port 0) and, for `serve --redis`, a real
 * redis-server.
 */
import { describe, expect, it, vi } from 'vitest';
import { flowcast } from './helpers/cli.js';
import { waitUntil } from './helpers/collect.js';
import { startFixture, type Fixture } from './helpers/server-fixture.js';
import { useRedisServer } from './helpers/redis.js';
import type { FlowcastEvent, PipelineStatus } from '../src/index.js';

// Every case starts node + tsx child processes: seconds each on a busy machine.
vi.setConfig({ testTimeout: 120_000 });
const redis = useRedisServer();

async function run(args: string[], env: Record<string, string | undefined> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const c = flowcast(args, env);
  const { code } = await c.exited;
  return { code, stdout: c.stdout(), stderr: c.stderr() };
}

/** Runs `alpha` until two run ids share their first character (17 runs always do: 16 hex digits). */
async function runsSharingAFirstCharacter(f: Fixture): Promise<{ ids: string[]; shared: string[] }> {
  const ids: string[] = [];
  for (;;) {
    ids.push(await f.runToEnd(f.alpha));
    const first = ids.at(-1)?.[0] as string;
    const shared = ids.filter((id) => id.startsWith(first));
    if (shared.length >= 2) return { ids, shared };
  }
}

describe('run ids by prefix, through the REST API', () => {
  it('GET /api/runs?run_id_prefix= lists the runs whose id starts with it, and refuses a bad prefix', async () => {
    const f = await startFixture();
    const { shared } = await runsSharingAFirstCharacter(f);
    const base = f.server.httpUrl;
    const page = (await (await fetch(`${base}/api/runs?run_id_prefix=${shared[0]?.[0]}`)).json()) as { runs: PipelineStatus[] };
    expect(page.runs.map((r) => r.run_id).sort()).toEqual(expect.arrayContaining([...shared].sort()));
    expect(page.runs.every((r) => r.run_id.startsWith(shared[0]?.[0] as string))).toBe(true);
    const one = (await (await fetch(`${base}/api/runs?run_id_prefix=${shared[0]?.slice(0, 8)}`)).json()) as { runs: PipelineStatus[] };
    expect(one.runs.map((r) => r.run_id)).toEqual([shared[0]]);
    const bad = await fetch(`${base}/api/runs?run_id_prefix=${encodeURIComponent('a b')}`);
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { message: string } }).error.message).toContain('run_id_prefix');
  });
});

describe('flowcast status and watch take the run ids flowcast history prints', () => {
  it('status and watch --run accept the 8 characters of history; an ambiguous prefix lists the candidates; no match says so', async () => {
    const f = await startFixture();
    const { ids, shared } = await runsSharingAFirstCharacter(f);
    const url = f.server.httpUrl;
    const runId = ids[0] as string;

    const history = await run(['history', '--url', url]);
    expect(history.code, history.stderr).toBe(0);
    const printed = runId.slice(0, 8);
    expect(history.stdout).toContain(printed);

    const status = await run(['status', printed, '--url', url, '--json']);
    expect(status.code, status.stderr).toBe(0);
    expect((JSON.parse(status.stdout) as PipelineStatus).run_id).toBe(runId);

    const watched = await run(['watch', '--run', printed, '--url', url, '--json']);
    expect(watched.code, watched.stderr).toBe(0);
    const events = watched.stdout.trim().split('\n').map((line) => JSON.parse(line) as FlowcastEvent);
    expect(events.at(0)?.run_id).toBe(runId);
    expect(events.at(-1)?.type).toBe('PipelineCompleteEvent');

    const prefix = (shared[0] as string)[0] as string;
    const [ambiguous, ambiguousWatch] = await Promise.all([run(['status', prefix, '--url', url]), run(['watch', '--run', prefix, '--url', url])]);
    for (const answer of [ambiguous, ambiguousWatch]) {
      expect(answer.code).toBe(1);
      expect(answer.stderr).toContain(`run id prefix "${prefix}" is ambiguous`);
      for (const id of shared) expect(answer.stderr).toContain(id);
    }

    const [none, noneWatch] = await Promise.all([run(['status', 'zz_nothing', '--url', url]), run(['watch', '--run', 'zz_nothing', '--url', url])]);
    expect(none.code).toBe(1);
    expect(none.stderr).toContain('no run and no pipeline has the id "zz_nothing"');
    expect(none.stderr).toContain('no run id starts with it');
    expect(noneWatch.code).toBe(1);
    expect(noneWatch.stderr).toContain('no run id starts with "zz_nothing"');
  });
});

describe('exit codes and hints', () => {
  it('usage errors exit 2 (a bad --since, a bad id), failures 1', async () => {
    const f = await startFixture();
    const url = f.server.httpUrl;
    const [since, pipeline, id] = await Promise.all([
      run(['history', '--since', 'yesterday', '--url', url]),
      run(['history', '--pipeline', 'a b', '--url', url]),
      run(['status', 'a b', '--url', url]),
    ]);
    expect(since.code, since.stderr).toBe(2);
    expect(since.stderr).toContain('--since');
    expect(since.stderr).toContain('"yesterday"');
    expect(pipeline.code, pipeline.stderr).toBe(2);
    expect(id.code, id.stderr).toBe(2);
    const ok = await run(['history', '--since', '2026-01-01T00:00:00Z', '--url', url]);
    expect(ok.code, ok.stderr).toBe(0);
  });

  it('a refused token is explained with --token and $FLOWCAST_TOKEN, not HTTP headers', async () => {
    const f = await startFixture({ server: { auth: { apiKeys: { 'the-key': { id: 'k', pipelines: '*' } } } } });
    const url = f.server.httpUrl;
    const [none, wrong, ws] = await Promise.all([
      run(['history', '--url', url]),
      run(['status', 'abc', '--url', url, '--token', 'nope']),
      run(['watch', 'alpha', '--url', url, '--retries', '0'], { FLOWCAST_TOKEN: 'nope' }),
    ]);
    for (const answer of [none, wrong, ws]) {
      expect(answer.code).toBe(1);
      expect(answer.stderr).toContain('--token');
      expect(answer.stderr).toContain('$FLOWCAST_TOKEN');
      expect(answer.stderr).not.toMatch(/Authorization|Bearer|header|subprotocol/i);
    }
  });

  it('every command has an example in its --help', async () => {
    const commands = ['serve', 'watch', 'status', 'history', 'worker', 'demo'];
    const answers = await Promise.all(commands.map((c) => run([c, '--help'])));
    for (const [i, answer] of answers.entries()) {
      expect(answer.code).toBe(0);
      expect(answer.stdout, commands[i]).toMatch(new RegExp(`Examples?:\\n {2}flowcast ${commands[i]}\\s`));
    }
    const top = await run(['--help']);
    expect(top.stdout).toMatch(/Exit codes/);
  });

  it('serve --redis --demo --no-worker prints the command that starts a worker', async () => {
    const prefix = redis.prefix();
    const serve = flowcast(['serve', '--port', '0', '--redis', redis.url, '--key-prefix', prefix, '--demo', '--no-worker', '--concurrency', '1']);
    await waitUntil(() => {
      if (serve.child.exitCode !== null) throw new Error(`serve exited: ${serve.stderr()}`);
      return serve.stdout().includes('Ctrl-C stops.');
    }, 'the serve banner', 60_000);
    expect(serve.stdout()).toContain(`flowcast worker --demo --redis ${redis.url} --key-prefix ${prefix}`);
    serve.child.kill('SIGTERM');
    expect((await serve.exited).code).toBe(0);
  });
});

describe('FLOWCAST_URL', () => {
  it('names the server of status and history (and watch, run, resume: the same option) when --url is not given; --url wins; a bad one exits 2', async () => {
    const f = await startFixture();
    const runId = await f.runToEnd(f.alpha);
    const env = { FLOWCAST_URL: f.server.httpUrl };
    const status = await run(['status', runId.slice(0, 8)], env);
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toContain(runId.slice(0, 8));
    const history = await run(['history', '--json'], env);
    expect(history.code, history.stderr).toBe(0);
    expect(JSON.parse(history.stdout) as unknown[]).not.toHaveLength(0);
    // --url wins over the environment (nothing listens on port 1).
    const flagWins = await run(['status', runId.slice(0, 8), '--url', f.server.httpUrl], { FLOWCAST_URL: 'http://127.0.0.1:1' });
    expect(flagWins.code, flagWins.stderr).toBe(0);
    const bad = await run(['history'], { FLOWCAST_URL: 'ftp://example.com' });
    expect(bad.code).toBe(2);
  });
});
