import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { InMemoryBroker } from '../src/pipeline/memory-broker.js';
import { HookManager } from '../src/events/hook-manager.js';
import { isTerminalEvent, type FlowcastEvent } from '../src/events/types.js';
import { DEMO_PIPELINE_IDS, createDemo } from '../src/demo/pipelines.js';
import { runDemo } from '../src/demo/runner.js';

const root = fileURLToPath(new URL('..', import.meta.url));
// eslint-disable-next-line no-control-regex -- looking for escape codes is the point
const ANSI = /\u001b\[/;

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs the CLI from source as a child process with pipes for stdout (not a TTY).
 * `npx tsx` as a user would; `direct` runs `node --import tsx` so that a signal sent to
 * the child reaches the CLI itself, not npm in between.
 */
function cli(args: string[], options: { direct?: boolean; onStdout?: (text: string, child: ReturnType<typeof spawn>) => void } = {}): Promise<Exit> {
  const [cmd, pre] = options.direct === true ? [process.execPath, ['--import', 'tsx']] : ['npx', ['tsx']];
  const child = spawn(cmd, [...pre, 'src/cli/main.ts', ...args], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, FORCE_COLOR: undefined, NO_COLOR: undefined },
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
    options.onStdout?.(stdout, child);
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`flowcast ${args.join(' ')} did not exit within 60s\nstdout:\n${stdout}\nstderr:\n${stderr}`));
    }, 60_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

function count(summary: string, label: string): number {
  const m = new RegExp(`${label} (\\d+)`).exec(summary);
  return m === null ? -1 : Number(m[1]);
}

describe('flowcast demo', () => {
  it('--runs 6 prints a line per ended run and a summary, then exits 0', { timeout: 70_000 }, async () => {
    const { code, stdout, stderr } = await cli(['demo', '--runs', '6']);
    expect(code, stderr).toBe(0);
    expect(stdout).not.toMatch(ANSI);
    const lines = stdout.trim().split('\n');
    const runLines = lines.filter((l) => /^\[(COMPLETED|FAILED|CANCELLED)\]/.test(l));
    expect(runLines).toHaveLength(6);
    for (const id of DEMO_PIPELINE_IDS) {
      expect(runLines.some((l) => new RegExp(`^\\[\\w+\\] +${id} +[0-9a-f]{8} `).test(l)), `a line for ${id} in:\n${stdout}`).toBe(true);
    }
    expect(runLines.find((l) => l.includes('always_fails'))).toMatch(/^\[FAILED\] .*failed at validate_schema: Error: column "email" is missing/);
    expect(runLines.find((l) => l.includes('flaky_retry'))).toMatch(/^\[COMPLETED\] .*3\/3 steps, 1 retry/);
    const summary = lines.find((l) => l.startsWith('Summary:')) ?? '';
    expect(summary).toMatch(/^Summary: 6 runs in /);
    expect(lines[lines.length - 1]).toMatch(/^Tracking \(24h\): 6 runs, \d+% succeeded/);
    expect(count(summary, 'COMPLETED')).toBeGreaterThan(0);
    expect(count(summary, 'FAILED')).toBeGreaterThan(0);
    expect(count(summary, 'COMPLETED') + count(summary, 'FAILED') + count(summary, 'CANCELLED')).toBe(6);
  });

  it('on SIGTERM cancels the runs in flight, prints the summary and exits 0', { timeout: 70_000 }, async () => {
    let sent = false;
    const { code, signal, stdout, stderr } = await cli(['demo', '--concurrency', '3'], {
      direct: true,
      onStdout: (text, child) => {
        // Once the first run ended, others are in flight.
        if (!sent && /^\[(COMPLETED|FAILED)\]/m.test(text)) {
          sent = true;
          child.kill('SIGTERM');
        }
      },
    });
    expect({ code, signal }, stderr).toEqual({ code: 0, signal: null });
    expect(stdout).toMatch(/^\[CANCELLED\] .*cancelled: demo stopped by SIGTERM$/m);
    const summary = stdout.split('\n').find((l) => l.startsWith('Summary:')) ?? '';
    expect(count(summary, 'CANCELLED')).toBeGreaterThan(0);
  });
});

describe('flowcast', () => {
  it('--help prints the usage with the demo command', { timeout: 30_000 }, async () => {
    const { code, stdout } = await cli(['--help']);
    expect(code).toBe(0);
    expect(stdout).toContain('Usage: flowcast [options] [command]');
    expect(stdout).toMatch(/^ {2}demo \[options\] /m);
  });

  it('exits 2 with a clear error on an unknown command', { timeout: 30_000 }, async () => {
    const { code, stdout, stderr } = await cli(['dmeo']);
    expect(code).toBe(2);
    expect(stdout).toBe('');
    expect(stderr).toContain("error: unknown command 'dmeo'");
    expect(stderr).toContain('flowcast --help');
  });

  it('exits 2 on a bad option value', { timeout: 30_000 }, async () => {
    const { code, stderr } = await cli(['demo', '--runs', '0'], { direct: true });
    expect(code).toBe(2);
    expect(stderr).toMatch(/--runs <count>.*expected a whole number >= 1, received "0"/);
  });
});

describe('runDemo', () => {
  async function withDemo<T>(fn: (demo: ReturnType<typeof createDemo>, events: FlowcastEvent[]) => Promise<T>): Promise<T> {
    const broker = new InMemoryBroker();
    const hooks = new HookManager();
    const events: FlowcastEvent[] = [];
    hooks.on('*', (e) => void events.push(e));
    try {
      return await fn(createDemo(broker, hooks), events);
    } finally {
      await broker.close();
    }
  }

  it('takes turns over the pipelines with at most `concurrency` runs in flight', { timeout: 30_000 }, async () => {
    await withDemo(async (demo, events) => {
      const summary = await runDemo(demo, { runs: 5, concurrency: 2, pauseMs: { min: 0, max: 10 } });
      expect(summary).toMatchObject({ started: 5, FAILED: 1, CANCELLED: 0, COMPLETED: 4 });
      const starts = events.filter((e) => e.type === 'PipelineStartEvent').map((e) => e.pipeline_id);
      expect(starts).toEqual([...DEMO_PIPELINE_IDS]);
      let inFlight = 0;
      let most = 0;
      for (const e of events) {
        if (e.type === 'PipelineStartEvent') most = Math.max(most, ++inFlight);
        else if (isTerminalEvent(e)) inFlight--;
      }
      expect(most).toBe(2);
    });
  });

  it('cancels the runs in flight when the signal aborts, and starts no more', { timeout: 30_000 }, async () => {
    await withDemo(async (demo, events) => {
      const stop = new AbortController();
      const done = runDemo(demo, { concurrency: 3, pauseMs: { min: 0, max: 0 }, signal: stop.signal });
      // Well under the shortest run (etl_dag sleeps at least 300ms), so none has ended yet.
      await new Promise((resolve) => setTimeout(resolve, 150));
      stop.abort(new Error('test over'));
      const summary = await done;
      expect(summary).toMatchObject({ started: 3, CANCELLED: 3 });
      const ends = events.filter((e) => e.type === 'PipelineCancelledEvent');
      expect(ends.map((e) => e.reason)).toEqual(['test over', 'test over', 'test over']);
      expect(events.filter((e) => e.type === 'PipelineStartEvent')).toHaveLength(3);
    });
  });

  it('rejects bad options', async () => {
    await withDemo(async (demo) => {
      await expect(runDemo(demo, { concurrency: 0 })).rejects.toThrow(/concurrency/);
      await expect(runDemo(demo, { pauseMs: { min: 5, max: 1 } })).rejects.toThrow(/pauseMs/);
    });
  });
});
