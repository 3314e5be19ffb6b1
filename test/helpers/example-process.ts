/**
 * An example of `examples/` run as its README says (`npx tsx …`, `bash …`), as a child
 * process in a process group of its own, so that stopping it (and, after the test, killing
 * whatever is left) reaches every process it started.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterEach } from 'vitest';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** A running example and what it printed so far. */
export interface ExampleProcess {
  child: ChildProcess;
  /** stdout and stderr, interleaved as they came. */
  output(): string;
  /** Resolves with the first match of `pattern` in the output; rejects if the process exits first or after `ms`. */
  waitFor(pattern: RegExp, what: string, ms?: number): Promise<RegExpMatchArray>;
  /** Sends `signal` to the example's process group, as a terminal's Ctrl-C reaches every process of the foreground job. */
  signal(signal: NodeJS.Signals): void;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const started: ChildProcess[] = [];
afterEach(() => {
  for (const child of started.splice(0)) {
    if (child.pid === undefined) continue;
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      // the group is gone already
    }
  }
});

/** Starts `command args…` in the repository root with `env` added to the environment. */
export function runExample(command: string, args: string[], env: Record<string, string | undefined> = {}): ExampleProcess {
  const child = spawn(command, args, {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
    env: { ...process.env, FORCE_COLOR: '0', ...env },
  });
  started.push(child);
  let output = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal }));
  });
  let done = false;
  void exited.then(() => (done = true), () => (done = true));
  return {
    child,
    output: () => output,
    exited,
    signal: (signal) => {
      if (child.pid !== undefined) process.kill(-child.pid, signal);
    },
    async waitFor(pattern, what, ms = 60_000) {
      const deadline = Date.now() + ms;
      for (;;) {
        const match = output.match(pattern);
        if (match !== null) return match;
        if (done) throw new Error(`${what}: the example exited first. Its output:\n${output}`);
        if (Date.now() > deadline) throw new Error(`${what}: not seen within ${ms} ms. The example's output:\n${output}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    },
  };
}

/** True while a process with this pid exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Resolves once no process of the example's group is left; rejects after `ms`. */
export async function groupGone(example: ExampleProcess, ms = 30_000): Promise<void> {
  const pid = example.child.pid;
  if (pid === undefined) return;
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      process.kill(-pid, 0);
    } catch {
      return;
    }
    if (Date.now() > deadline) throw new Error(`processes of the example (group ${pid}) still run ${ms} ms after it was stopped. Its output:\n${example.output()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
