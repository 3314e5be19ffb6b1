/**
 * examples/distributed run as its README says: one command starts Redis, a server and
 * two workers, starts runs that complete with steps on both workers (seen in the runs'
 * results and through the server's REST API), and Ctrl-C stops every process it started.
 */
import { describe, expect, it } from 'vitest';
import { afterEach } from 'vitest';
import { alive, groupGone, runExample } from './helpers/example-process.js';

const pids: number[] = [];
afterEach(() => {
  for (const pid of pids.splice(0)) if (alive(pid)) process.kill(pid, 'SIGKILL');
});

interface RunSummary {
  run_id: string;
  status: string;
  result: { sum: number; by_worker: Record<string, number> } | null;
}

describe('examples/distributed', () => {
  it('starts Redis, a server and two workers; runs complete on both workers; Ctrl-C stops everything', async () => {
    const example = runExample(process.execPath, ['--import', 'tsx', 'examples/distributed/start.ts'], { PORT: '0', REDIS_URL: undefined, FLOWCAST_KEY_PREFIX: undefined });
    await example.waitFor(/started worker-b \(pid \d+\)/, 'every process started');
    for (const match of example.output().matchAll(/started (redis|server|worker-a|worker-b) \(pid (\d+)\)/g)) pids.push(Number(match[2]));
    expect(pids).toHaveLength(4);

    const [, url] = await example.waitFor(/watch them at (http:\/\/127\.0\.0\.1:\d+)\//, 'the runs started', 90_000);
    await example.waitFor(/all 4 runs completed; steps ran on worker-a and worker-b\n/, 'every run completed', 90_000);
    await example.waitFor(/Ctrl-C stops everything/, 'the closing hint');

    // The server shows the same: four completed runs of "squares", each with the 6 squares 1..36.
    const body = (await (await fetch(`${url}/api/runs?pipeline_id=squares`)).json()) as { runs: RunSummary[] };
    expect(body.runs.map((r) => r.status)).toEqual(['COMPLETED', 'COMPLETED', 'COMPLETED', 'COMPLETED']);
    const workers = new Set<string>();
    for (const run of body.runs) {
      expect(run.result?.sum).toBe(91);
      expect(Object.values(run.result?.by_worker ?? {}).reduce((a, b) => a + b, 0)).toBe(6);
      for (const w of Object.keys(run.result?.by_worker ?? {})) workers.add(w);
    }
    expect([...workers].sort()).toEqual(['worker-a', 'worker-b']);
    // The steps' log lines came from both worker processes.
    const events = (await (await fetch(`${url}/api/runs/${body.runs[0]!.run_id}/events`)).json()) as { events: { type: string; lines?: string[] }[] };
    expect(events.events.filter((e) => e.type === 'StepLogEvent').flatMap((e) => e.lines ?? []).some((l) => /^\[worker-[ab]\] squaring \d$/.test(l))).toBe(true);

    // Ctrl-C (the terminal signals the foreground process group): the script stops the server, the workers, then Redis.
    example.signal('SIGINT');
    expect(await example.exited).toMatchObject({ code: 0 });
    await groupGone(example);
    expect(example.output()).toContain('flowcast worker: stopped');
    expect(example.output()).toMatch(/stopped\n$/);
    for (const pid of pids) expect(alive(pid), `pid ${pid} still runs`).toBe(false);
  }, 180_000);
});
