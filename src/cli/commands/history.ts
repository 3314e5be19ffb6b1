import pc from 'picocolors';
import { Option, type Command } from 'commander';
import { describeError } from '../../core/errors.js';
import { formatDuration } from '../../tracking/render.js';
import type { PipelineStatus } from '../../tracking/models.js';
import { RestCallError, getJson, type RestTarget } from '../rest-client.js';
import { idOf, positiveInt, time } from '../options.js';
import { DEFAULT_HTTP_URL, serverUrl, type CliIo } from './status.js';

/** Options of `flowcast history`. */
export interface HistoryCommandOptions {
  url?: string;
  token?: string;
  /** Only this pipeline's runs. */
  pipeline?: string;
  /** Only runs started at or after this time (ISO 8601 or epoch ms). */
  since?: string;
  /** Only ended runs. */
  ended?: boolean;
  /** @default 20 */
  limit?: number;
  json?: boolean;
}

/** Adds `flowcast history` to the program. */
export function registerHistoryCommand(program: Command): Command {
  return program
    .command('history')
    .description('list past runs, newest started first')
    .addOption(new Option('--url <url>', 'the server').env('FLOWCAST_URL').argParser(serverUrl).default(DEFAULT_HTTP_URL))
    .option('--token <token>', 'the token the server checks (default: $FLOWCAST_TOKEN)')
    .option('--pipeline <pipeline_id>', "only this pipeline's runs", idOf('--pipeline'))
    .option('--since <time>', 'only runs started at or after this time (ISO 8601 or epoch milliseconds)', time)
    .option('--ended', 'only ended runs (COMPLETED, FAILED, CANCELLED)')
    .option('-n, --limit <count>', 'at most this many runs (1-1000)', positiveInt, 20)
    .option('--json', 'print the runs as a JSON array')
    .addHelpText(
      'after',
      `
The RUN column shows the first 8 characters of each run id: flowcast status and
flowcast watch --run take them (or any prefix that only one run has). Exit codes: 0
ok, 1 when the server cannot be reached or refuses the token, 2 on bad arguments.

Examples:
  flowcast history
  flowcast history --pipeline etl_dag --ended -n 50
  flowcast history --since 2026-11-28T00:00:00Z --json | jq '.[] | select(.status == "FAILED")'`,
    )
    .action(async (options: HistoryCommandOptions) => {
      process.exitCode = await historyCommand(options);
    });
}

/** Fetches and prints the history; resolves with the exit code. */
export async function historyCommand(options: HistoryCommandOptions, io: CliIo = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const target: RestTarget = { url: options.url ?? DEFAULT_HTTP_URL };
  const token = options.token ?? process.env.FLOWCAST_TOKEN;
  if (token !== undefined && token !== '') target.token = token;
  let runs: PipelineStatus[];
  try {
    const answer = await getJson<{ runs: PipelineStatus[] }>(target, 'api/history', {
      limit: options.limit ?? 20,
      pipeline_id: options.pipeline,
      since: options.since,
      ended_only: options.ended === true ? true : undefined,
    });
    runs = answer.runs;
  } catch (error) {
    io.stderr.write(`flowcast history: ${error instanceof RestCallError ? error.message : describeError(error)}\n`);
    return 1;
  }
  if (options.json === true) {
    io.stdout.write(`${JSON.stringify(runs, null, 2)}\n`);
    return 0;
  }
  if (runs.length === 0) {
    io.stdout.write('No runs.\n');
    return 0;
  }
  io.stdout.write(`${formatHistory(runs, io.stdout.isTTY === true && pc.isColorSupported)}\n`);
  return 0;
}

const STATUS_COLOR = { COMPLETED: 'green', FAILED: 'red', CANCELLED: 'yellow', RUNNING: 'cyan', PENDING: 'dim' } as const;

/** A table: started, pipeline, run, status, duration, steps done. */
export function formatHistory(runs: readonly PipelineStatus[], color = false): string {
  const c = pc.createColors(color);
  const rows = runs.map((r) => {
    const done = r.steps.filter((s) => s.status === 'COMPLETED' || s.status === 'SKIPPED').length;
    return [
      r.started_at === null ? '-' : r.started_at.replace('T', ' ').slice(0, 19),
      r.pipeline_id,
      r.run_id.slice(0, 8),
      r.status,
      formatDuration(r.duration_ms),
      `${done}/${r.steps.length}`,
    ];
  });
  const header = ['STARTED (UTC)', 'PIPELINE', 'RUN', 'STATUS', 'DURATION', 'STEPS'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] as string).length)));
  const line = (cells: string[], paint?: (s: string) => string): string =>
    cells
      .map((cell, i) => {
        const padded = cell.padEnd(widths[i] as number);
        return i === 3 && paint !== undefined ? paint(padded) : padded;
      })
      .join('  ')
      .trimEnd();
  return [
    c.bold(line(header)),
    ...rows.map((row) => {
      const key = STATUS_COLOR[row[3] as keyof typeof STATUS_COLOR] ?? 'dim';
      return line(row, (s) => c[key](s));
    }),
  ].join('\n');
}
