import { readFileSync } from 'node:fs';
import { InvalidArgumentError as UsageError, Option, type Command } from 'commander';
import { describeError } from '../../core/errors.js';
import { nonNegativeInt, urlWith } from '../options.js';

/** Options of `flowcast run`. */
export interface RunCommandOptions {
  /** The server. @default "ws://127.0.0.1:8765" */
  url?: string;
  /** @default $FLOWCAST_TOKEN */
  token?: string;
  /** The run's input (parsed JSON). @default the defaults of the pipeline's input schema, else null */
  input?: unknown;
  /** The concurrency key (`concurrency_key`). */
  key?: string;
  /** The idempotency key (`idempotency_key`). */
  idempotencyKey?: string;
  /** Follow the run live and exit with its outcome. */
  watch?: boolean;
  /** NDJSON: the start answer, then (with `watch`) every event. */
  json?: boolean;
  /** With `watch`: reconnect attempts before giving up. */
  retries?: number;
}

/** Where the command writes. */
export interface RunIo {
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
}

const DEFAULT_URL = 'ws://127.0.0.1:8765';

/** `--input`: JSON, or `@path` of a JSON file. */
function inputValue(value: string): unknown {
  let text = value;
  if (value.startsWith('@')) {
    try {
      text = readFileSync(value.slice(1), 'utf8');
    } catch (error) {
      throw new UsageError(`cannot read the input file "${value.slice(1)}": ${describeError(error)}`);
    }
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new UsageError(`expected JSON or @file, received ${text.length > 80 ? `${text.slice(0, 80)}…` : text} (${describeError(error)})`);
  }
}

/** Adds `flowcast run` to the program. Its work is loaded when it runs. */
export function registerRunCommand(program: Command): Command {
  return program
    .command('run')
    .description('start a run of a pipeline on a flowcast server, and with --watch follow it to its end')
    .argument('<pipeline_id>', 'the pipeline to start (one the server was given: getWebSocketServer({ pipelines }))')
    .addOption(new Option('--url <url>', 'the server (ws://, wss://, http:// or https://)').env('FLOWCAST_URL').argParser(urlWith(['ws:', 'wss:', 'http:', 'https:'])).default(DEFAULT_URL))
    .option('--token <token>', 'a token with the "start" action on the pipeline (default: $FLOWCAST_TOKEN)')
    .option('--input <json|@file>', 'the run\'s input: JSON, or @path of a JSON file (default: the defaults of the pipeline\'s input schema, else null)', inputValue)
    .option('--key <key>', 'the concurrency key (at most N runs in flight per key, as the pipeline says)')
    .option('--idempotency-key <key>', 'a key the server remembers (24 h by default): the same key answers the same run')
    .option('--watch', 'follow the run live, as "flowcast watch --run" does, and exit with its outcome')
    .option('--json', 'NDJSON on stdout: the start answer, then (with --watch) every event')
    .option('--retries <count>', 'with --watch: reconnect attempts before giving up with exit code 1', nonNegativeInt)
    .addHelpText(
      'after',
      `
Prints the new run's id. A start refused because the pipeline's concurrency limit is
reached says which run is in the way. When the pipeline queues starts over its limit
(concurrency.onLimit "queue"), the run is queued: it prints its place and, with --watch,
waits for its turn, then follows it. Exit codes: 0 started (with --watch: the run
completed), 1 refused, unreachable, or (with --watch) the run failed or was cancelled,
2 on bad arguments.

Examples:
  flowcast run reports --input '{"month":"2026-11"}' --watch
  flowcast run import --input @job.json --key customer-42 --idempotency-key click-7f3a
  FLOWCAST_TOKEN=secret flowcast run nightly --url https://flowcast.example.com --json`,
    )
    .action(async (pipelineId: string, options: RunCommandOptions) => {
      process.exitCode = await runCommand(pipelineId, options);
    });
}

/** ` (position 2, waiting for run 3f2a…)` for a queued start. */
function queuedPlace(position: number | undefined, waitingFor: string[] | undefined): string {
  const parts: string[] = [];
  if (position !== undefined) parts.push(`position ${position}`);
  if (waitingFor !== undefined && waitingFor.length > 0) parts.push(`waiting for run ${waitingFor.join(', ')}`);
  return parts.length === 0 ? '' : ` (${parts.join(', ')})`;
}

/** Starts the run (and follows it with `watch`); resolves with the exit code. */
export async function runCommand(pipelineId: string, options: RunCommandOptions, io: RunIo = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const { startRun, StartRunError } = await import('../../client/start-run.js');
  const url = options.url ?? DEFAULT_URL;
  const token = options.token ?? process.env.FLOWCAST_TOKEN;
  let run;
  try {
    run = await startRun(pipelineId, options.input, {
      url,
      ...(token === undefined || token === '' ? {} : { token }),
      ...(options.key === undefined ? {} : { concurrencyKey: options.key }),
      ...(options.idempotencyKey === undefined ? {} : { idempotencyKey: options.idempotencyKey }),
    });
  } catch (error) {
    if (error instanceof StartRunError && error.runId !== undefined) {
      io.stderr.write(`flowcast run: ${pipelineId} is already running (run ${error.runId}): ${error.message}\n`);
    } else {
      io.stderr.write(`flowcast run: ${error instanceof Error ? error.message : describeError(error)}\n`);
    }
    return 1;
  }
  if (options.json === true) io.stdout.write(`${JSON.stringify({ ...run, type: 'started' })}\n`);
  else if (run.deduplicated) io.stdout.write(`run ${run.run_id} of ${run.pipeline_id} (already started with this idempotency key, ${run.status})\n`);
  else if (run.status === 'QUEUED') io.stdout.write(`queued run ${run.run_id} of ${run.pipeline_id}${queuedPlace(run.queuePosition, run.waitingFor)}: it starts when a slot frees\n`);
  else io.stdout.write(`started run ${run.run_id} of ${run.pipeline_id}\n`);
  if (options.watch !== true) return 0;
  const { watchCommand } = await import('./watch.js');
  return watchCommand(
    null,
    {
      url,
      run: run.run_id,
      since: 0,
      exitWithOutcome: true,
      commandName: 'run',
      ...(token === undefined || token === '' ? {} : { token }),
      ...(options.json === true ? { json: true } : {}),
      ...(options.retries === undefined ? {} : { retries: options.retries }),
    },
    io,
  );
}
