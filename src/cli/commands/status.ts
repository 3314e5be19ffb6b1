import pc from 'picocolors';
import { Option, type Command } from 'commander';
import { describeError } from '../../core/errors.js';
import { renderStatus } from '../../tracking/render.js';
import type { PipelineStatus } from '../../tracking/models.js';
import { RestCallError, getJson, type RestTarget } from '../rest-client.js';
import { idOf, urlWith } from '../options.js';
import { AmbiguousRunIdError, runsWithPrefix } from '../run-id.js';

/** Options of `flowcast status`. */
export interface StatusCommandOptions {
  /** @default "http://127.0.0.1:8765" */
  url?: string;
  /** @default $FLOWCAST_TOKEN */
  token?: string;
  json?: boolean;
}

/** Where the command writes. */
export interface CliIo {
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream;
}

/** The server the CLI's HTTP commands ask when neither --url nor FLOWCAST_URL says. */
export const DEFAULT_HTTP_URL = 'http://127.0.0.1:8765';
/** Parses a --url value: an http(s) or ws(s) URL of a flowcast server. */
export const serverUrl = urlWith(['http:', 'https:', 'ws:', 'wss:']);

/** Adds `flowcast status` to the program. */
export function registerStatusCommand(program: Command): Command {
  return program
    .command('status')
    .description("show a run's status and steps (by run id), or a pipeline's latest run (by pipeline id)")
    .argument('<id>', 'a run id or any unique prefix of it (the 8 characters flowcast history prints), or a pipeline id for its latest run', idOf('the id'))
    .addOption(new Option('--url <url>', 'the server').env('FLOWCAST_URL').argParser(serverUrl).default(DEFAULT_HTTP_URL))
    .option('--token <token>', 'the token the server checks (default: $FLOWCAST_TOKEN)')
    .option('--json', 'print the status document as JSON')
    .addHelpText(
      'after',
      `
A run id may be shortened to any prefix that only one run has. Exit codes: 0 when
found, 1 when no run or pipeline has this id (or the prefix fits several runs: they are
listed), the server cannot be reached or refuses the token, 2 on bad arguments.

Examples:
  flowcast status 3f2a9c1d
  flowcast status 3f2a9c1d-7b1e-4c55-9d0f-2a6b8e1c4d3a
  flowcast status demo_workflow --json | jq .steps`,
    )
    .action(async (id: string, options: StatusCommandOptions) => {
      process.exitCode = await statusCommand(id, options);
    });
}

/** Fetches and prints the status; resolves with the exit code. */
export async function statusCommand(id: string, options: StatusCommandOptions, io: CliIo = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const target: RestTarget = { url: options.url ?? DEFAULT_HTTP_URL };
  const token = options.token ?? process.env.FLOWCAST_TOKEN;
  if (token !== undefined && token !== '') target.token = token;
  let status: PipelineStatus;
  try {
    status = await fetchStatus(target, id);
  } catch (error) {
    io.stderr.write(`flowcast status: ${error instanceof RestCallError ? error.message : describeError(error)}\n`);
    return 1;
  }
  if (options.json === true) io.stdout.write(`${JSON.stringify(status, null, 2)}\n`);
  else {
    const tty = io.stdout.isTTY === true;
    const width = tty ? Math.max(40, Math.min(100, (io.stdout as NodeJS.WriteStream).columns ?? 80)) : 60;
    io.stdout.write(`${renderStatus(status, { color: tty && pc.isColorSupported, width })}\n`);
    // A start waiting its turn (concurrency.onLimit "queue"): GET /api/runs/{id} says where.
    const queued = status as PipelineStatus & { queue_position?: number; waiting_for?: string[] };
    if ((status.status as string) === 'QUEUED') {
      const behind = queued.waiting_for === undefined || queued.waiting_for.length === 0 ? '' : `, waiting for run ${queued.waiting_for.join(', ')}`;
      io.stdout.write(`Queued:   ${queued.queue_position === 0 ? 'starting now' : `position ${queued.queue_position ?? '?'}`}${behind}\n`);
    }
  }
  return 0;
}

/**
 * A run by id, else the latest run of a pipeline by that id, else the one run whose id
 * starts with it. Throws {@link AmbiguousRunIdError} when several runs' ids start with it.
 */
export async function fetchStatus(target: RestTarget, id: string): Promise<PipelineStatus> {
  const path = encodeURIComponent(id);
  try {
    return await getJson<PipelineStatus>(target, `api/runs/${path}`);
  } catch (error) {
    if (!(error instanceof RestCallError) || (error.status !== 404 && error.status !== 400 && error.status !== 503)) throw error;
  }
  try {
    return await getJson<PipelineStatus>(target, `api/pipelines/${path}/status`);
  } catch (error) {
    if (!(error instanceof RestCallError) || (error.status !== 404 && error.status !== 400)) throw error;
  }
  const runs = (await runsWithPrefix(target, id)) ?? [];
  if (runs.length === 1) return runs[0] as PipelineStatus;
  if (runs.length > 1) throw new AmbiguousRunIdError(id, runs, runs.length > 10);
  throw new RestCallError(404, 'not_found', `no run and no pipeline has the id "${id}", and no run id starts with it (flowcast history lists the runs)`);
}
