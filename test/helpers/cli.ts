/**
 * `flowcast <args>` as a user runs it, from source (`node --import tsx src/cli/main.ts`),
 * as a child process with piped output, killed after the test if still running. The
 * FLOWCAST_* variables and colour settings of the test's own environment are cleared.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterEach } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));

/** A running `flowcast` process and what it printed so far. */
export interface CliChild {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const children: ChildProcess[] = [];
afterEach(() => {
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

const CLEARED = { FORCE_COLOR: undefined, NO_COLOR: undefined, FLOWCAST_TOKEN: undefined, FLOWCAST_URL: undefined, FLOWCAST_JWT_SECRET: undefined, FLOWCAST_REDIS_URL: undefined, FLOWCAST_KEY_PREFIX: undefined,
  FLOWCAST_LOCK_DURATION_MS: undefined, FLOWCAST_STALLED_INTERVAL_MS: undefined, FLOWCAST_MAX_STALLED_COUNT: undefined, FLOWCAST_LOG_LEVEL: undefined,
  FLOWCAST_REDIS_CONNECT_TIMEOUT: undefined, FLOWCAST_SHUTDOWN_TIMEOUT: undefined, REDIS_URL: undefined, PORT: undefined, HOST: undefined };

/** Starts `flowcast <args>` with `env` added to a cleaned copy of the environment. */
export function flowcast(args: string[], env: Record<string, string | undefined> = {}): CliChild {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...CLEARED, ...env },
  });
  children.push(child);
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal }));
  });
  return { child, stdout: () => stdout, stderr: () => stderr, exited };
}
