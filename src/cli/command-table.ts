/**
 * The table of `flowcast` subcommands: what `flowcast --help` prints for each without
 * loading it, which optional packages it needs, and how to load it. A command's module
 * (and with it Fastify, BullMQ, ioredis, ...) is imported only when that command runs,
 * so `flowcast --help` and the light commands start fast. test/cli-lazy.test.ts checks
 * that this table says what the real commands say.
 */
import type { Command } from 'commander';

/** Adds one subcommand to the program (each `commands/<name>.ts` exports one). */
export type RegisterCommand = (program: Command) => Command;

/** One subcommand as the program's help lists it before it is loaded. */
export interface CommandEntry {
  /** The subcommand's name, e.g. `serve`. */
  readonly name: string;
  /** The left column of `flowcast --help`, as commander prints it for the loaded command. */
  readonly term: string;
  /** The right column: the command's description. */
  readonly description: string;
  /** Optional peer packages of flowcast that the command imports (see package.json `peerDependencies`). */
  readonly needs: readonly string[];
  /** Imports the command's module and gives its register function. */
  readonly load: () => Promise<RegisterCommand>;
}

/** What `flowcast/server` imports: the packages a server install adds (docs/install.md). */
export const SERVER_PACKAGES = [
  'fastify',
  '@fastify/cors',
  '@fastify/proxy-addr',
  '@fastify/rate-limit',
  '@fastify/static',
  'fastify-plugin',
  'jose',
  'prom-client',
  'rate-limiter-flexible',
  'ws',
] as const;

/** What `flowcast/redis` imports: the packages a Redis install adds. */
export const REDIS_PACKAGES = ['bullmq', 'ioredis'] as const;

/** Every subcommand, in the order `flowcast --help` lists them. */
export const COMMANDS: readonly CommandEntry[] = [
  {
    name: 'serve',
    term: 'serve [options]',
    description: 'run the flowcast server: WebSocket, SSE, REST API, metrics and dashboard on one port',
    needs: [...SERVER_PACKAGES, ...REDIS_PACKAGES],
    load: async () => (await import('./commands/serve.js')).registerServeCommand,
  },
  {
    name: 'watch',
    term: 'watch [options] [pipeline_id]',
    description: 'watch the runs of a pipeline ("*" for all) or one run live, from a flowcast server',
    needs: ['ws'],
    load: async () => (await import('./commands/watch.js')).registerWatchCommand,
  },
  {
    name: 'run',
    term: 'run [options] <pipeline_id>',
    description: 'start a run of a pipeline on a flowcast server, and with --watch follow it to its end',
    needs: [],
    load: async () => (await import('./commands/run.js')).registerRunCommand,
  },
  {
    name: 'status',
    term: 'status [options] <id>',
    description: "show a run's status and steps (by run id), or a pipeline's latest run (by pipeline id)",
    needs: [],
    load: async () => (await import('./commands/status.js')).registerStatusCommand,
  },
  {
    name: 'history',
    term: 'history [options]',
    description: 'list past runs, newest started first',
    needs: [],
    load: async () => (await import('./commands/history.js')).registerHistoryCommand,
  },
  {
    name: 'worker',
    term: 'worker [options]',
    description: 'run the jobs of a task module on Redis (BullMQ), until SIGINT/SIGTERM',
    needs: [...REDIS_PACKAGES],
    load: async () => (await import('./commands/worker.js')).registerWorkerCommand,
  },
  {
    name: 'demo',
    term: 'demo [options]',
    description: 'run demo pipelines again and again, with a live view of runs and steps',
    needs: [],
    load: async () => (await import('./commands/demo.js')).registerDemoCommand,
  },
];

/** The entry for `name`, or `undefined` when no subcommand has that name. */
export function findCommand(name: string | undefined): CommandEntry | undefined {
  return COMMANDS.find((entry) => entry.name === name);
}
