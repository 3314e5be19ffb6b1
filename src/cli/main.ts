#!/usr/bin/env node
/**
 * The `flowcast` command. Each subcommand lives in `commands/<name>.ts` and registers
 * itself on the program; usage errors (unknown command or option, bad value) exit 2.
 */
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { describeError } from '../core/errors.js';
import { registerDemoCommand } from './commands/demo.js';
import { registerWatchCommand } from './commands/watch.js';
import { registerServeCommand } from './commands/serve.js';
import { registerStatusCommand } from './commands/status.js';
import { registerHistoryCommand } from './commands/history.js';
import { registerWorkerCommand } from './commands/worker.js';
import { registerRunCommand } from './commands/run.js';
import { registerResumeCommand } from './commands/resume.js';

/** Builds the program with every subcommand. Throws `CommanderError` instead of exiting. */
function createProgram(): Command {
  // Same relative path from src/cli/ (tsx) and dist/cli/ (built).
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  const program = new Command('flowcast')
    .description('Task pipelines for Node.js with truthful lifecycle events')
    .version(pkg.version)
    .showHelpAfterError('(run "flowcast --help" for usage)')
    .exitOverride()
    .addHelpText(
      'after',
      `
Exit codes (every command):
  0  done (watch and serve: stopped by Ctrl-C or SIGTERM)
  1  failure: the server cannot be reached or refuses the token, no run fits the id, ...
  2  usage: unknown command or option, bad option value, missing argument
  130 worker only: stopped by a second Ctrl-C, without waiting for running jobs

Examples:
  flowcast demo
  flowcast serve --demo
  flowcast history
  flowcast status 3f2a9c1d
  flowcast resume 3f2a9c1d --watch`,
    );
  registerServeCommand(program);
  registerWatchCommand(program);
  registerRunCommand(program);
  registerResumeCommand(program);
  registerStatusCommand(program);
  registerHistoryCommand(program);
  registerWorkerCommand(program);
  registerDemoCommand(program);
  return program;
}

/** Runs the command line and resolves with the exit code. */
async function main(argv: readonly string[]): Promise<number> {
  const program = createProgram();
  try {
    await program.parseAsync([...argv]);
  } catch (error) {
    // Commander already printed the message (or the help/version that was asked for).
    if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : 2;
    process.stderr.write(`flowcast: ${describeError(error)}\n`);
    return 1;
  }
  return typeof process.exitCode === 'number' ? process.exitCode : 0;
}

process.exitCode = await main(process.argv);
