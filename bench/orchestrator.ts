/**
 * What a bench's orchestrating process uses (bench/fanout.ts, bench/distributed.ts): child
 * processes answering requests over IPC (the children use `serveRequests` from
 * fanout/shared.ts), and number formatting for the reports.
 */
import { fork, type ChildProcess } from 'node:child_process';
import type { Reply } from './fanout/shared.js';

/** All the children of this bench, killed if the orchestrator exits. */
const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

/** A child process answering requests over IPC (the child uses `serveRequests`). */
export class Peer {
  readonly name: string;
  readonly #child: ChildProcess;
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  #next = 1;

  /** Forks `file` (a compiled .js URL) with `args`; extra Node flags in `execArgv`. */
  constructor(name: string, file: URL, args: string[], execArgv: string[] = []) {
    this.name = name;
    this.#child = fork(file, args, { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    children.add(this.#child);
    this.#child.on('message', (raw: unknown) => {
      const reply = raw as Reply<unknown>;
      const p = this.#pending.get(reply.reqId);
      if (p === undefined) return;
      this.#pending.delete(reply.reqId);
      if (reply.ok) p.resolve(reply.value);
      else p.reject(new Error(`${name}: ${reply.error ?? 'failed'}`));
    });
    this.#child.on('exit', (code, signal) => {
      children.delete(this.#child);
      for (const p of this.#pending.values()) p.reject(new Error(`${name} exited (${code ?? signal})`));
      this.#pending.clear();
    });
  }

  get pid(): number | undefined {
    return this.#child.pid;
  }

  request<T>(msg: Record<string, unknown>, timeoutMs = 120_000): Promise<T> {
    const reqId = this.#next++;
    return new Promise<T>((resolve, reject) => {
      if (this.#child.exitCode !== null || this.#child.signalCode !== null) {
        reject(new Error(`${this.name} has exited`));
        return;
      }
      const timer = setTimeout(() => {
        this.#pending.delete(reqId);
        reject(new Error(`${this.name}: no answer to ${String(msg.cmd)} in ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(reqId, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v as T);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.#child.send({ ...msg, reqId });
    });
  }

  async close(): Promise<void> {
    const exited = new Promise<void>((resolve) => {
      if (this.#child.exitCode !== null || this.#child.signalCode !== null) resolve();
      else this.#child.once('exit', () => resolve());
    });
    await this.request({ cmd: 'close' }, 15_000).catch(() => this.#child.kill());
    const timer = setTimeout(() => this.#child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  }
}

export const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
export const fmtInt = (n: number): string => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '—');
export const fmt = (n: number, digits: number): string => (Number.isFinite(n) ? n.toFixed(digits) : '—');
