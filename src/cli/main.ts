#!/usr/bin/env node
/**
 * The `flowcast` command. Each subcommand lives in `commands/<name>.ts` and is imported
 * only when it runs (command-table.ts); usage errors (unknown command or option, bad
 * value) exit 2, a missing optional package exits 1 with one line saying what to install.
 */
import { CommanderError } from 'commander';
import { describeError } from '../core/errors.js';
import { MissingPackagesError } from './peers.js';
import { createProgram } from './program.js';

/** Runs the command line and resolves with the exit code. */
async function main(argv: readonly string[]): Promise<number> {
  try {
    const program = await createProgram(argv);
    await program.parseAsync([...argv]);
  } catch (error) {
    // Commander already printed the message (or the help/version that was asked for).
    if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : 2;
    process.stderr.write(error instanceof MissingPackagesError ? `${error.message}\n` : `flowcast: ${describeError(error)}\n`);
    return 1;
  }
  return typeof process.exitCode === 'number' ? process.exitCode : 0;
}

process.exitCode = await main(process.argv);
