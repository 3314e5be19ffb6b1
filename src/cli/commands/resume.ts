import { Option, type Command } from 'commander';
import { describeError } from '../../core/errors.js';
import { idOf, nonNegativeInt, urlWith } from '../options.js';
import { UUID, resolveRunPrefix } from '../run-id.js';

/** Options of `flowcast resume`. */
export interface ResumeCommandOptions {
  /** The server. @default "ws://127.0.0.1:8765" */
  url?: string;
  /** @default $FLOWCAST_TOKEN */
  token?: string;
  /** Follow the new attempt live and exit with the run's outcome. */
  watch?: boolean;
  /** NDJSON: the resume answer, then (with `watch`) every event of the new attempt. */
  json?: boolean;
  /** With `watch`: reconnect attempts before giving up. */
  retries?: number;
}

/** Where the command writes. */
export interface ResumeIo {
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
}

const DEFAULT_URL = 'ws://127.0.0.1:8765';

/** Adds `flowcast resume` to the program. Its work is loaded when it runs. */
export function registerResumeCommand(program: Command): Command {
  return program
    .command('resume')
    .description('continue a failed or cancelled run from the steps that did not finish, keeping the results of those that did')
    .argument('<run_id>', 'the run: its whole id or a prefix only one run has (such as the 8 characters flowcast history prints)', idOf('run_id'))
    .addOption(new Option('--url <url>', 'the server (ws://, wss://, http:// or https://)').env('FLOWCAST_URL').argParser(urlWith(['ws:', 'wss:', 'http:', 'https:'])).default(DEFAULT_URL))
    .option('--token <token>', 'a token with the "resume" action on the run\'s pipeline (default: $FLOWCAST_TOKEN)')
    .option('--watch', 'follow the new attempt live, as "flowcast watch --run" does, and exit with the run\'s outcome')
    .option('--json', 'NDJSON on stdout: the resume answer, then (with --watch) every event of the new attempt')
    .option('--retries <count>', 'with --watch: reconnect attempts before giving up with exit code 1', nonNegativeInt)
    .addHelpText(
      'after',
      `
The run keeps its id and its log: a new attempt starts, the steps that completed keep
their results and do not run again, the others run (unlike a retry, which starts a new
run from the beginning). Only a FAILED or CANCELLED run can be resumed. Exit codes: 0
resumed (with --watch: the run completed), 1 refused (the run is running or completed,
unknown, or the server is unreachable), or (with --watch) the run failed or was
cancelled again, 2 on bad arguments.

Examples:
  flowcast resume 3f2a9c1d --watch
  flowcast resume 3f2a9c1d-7b1e-4c55-9d0f-2a6b8e1c4d3a --url https://flowcast.example.com --json`,
    )
    .action(async (runId: string, options: ResumeCommandOptions) => {
      process.exitCode = await resumeCommand(runId, options);
    });
}

/** Resumes the run (and follows it with `watch`); resolves with the exit code. */
export async function resumeCommand(runId: string, options: ResumeCommandOptions, io: ResumeIo = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const { resumeRun, ResumeRunError } = await import('../../client/resume-run.js');
  const url = options.url ?? DEFAULT_URL;
  const token = options.token ?? process.env.FLOWCAST_TOKEN;
  const auth = token === undefined || token === '' ? {} : { token };
  let id = runId;
  if (!UUID.test(runId)) {
    try {
      const found = await resolveRunPrefix({ url, ...auth }, runId);
      if (found === null) {
        io.stderr.write(`flowcast resume: no run id starts with "${runId}" (flowcast history lists the runs)\n`);
        return 1;
      }
      id = found.run_id;
    } catch (error) {
      io.stderr.write(`flowcast resume: ${error instanceof Error ? error.message : describeError(error)}\n`);
      return 1;
    }
  }
  let run;
  try {
    run = await resumeRun(id, { url, ...auth });
  } catch (error) {
    const why = error instanceof ResumeRunError && error.runId !== undefined ? ` (run ${error.runId} holds the slot)` : '';
    io.stderr.write(`flowcast resume: ${error instanceof Error ? error.message : describeError(error)}${why}\n`);
    return 1;
  }
  if (options.json === true) io.stdout.write(`${JSON.stringify({ ...run, type: 'resumed' })}\n`);
  else {
    const kept = run.kept_steps.length === 0 ? 'nothing kept' : `kept ${run.kept_steps.join(', ')}`;
    io.stdout.write(`resumed run ${run.run_id} of ${run.pipeline_id} (attempt ${run.attempt}; ${kept}; running ${run.pending_steps.join(', ') || 'nothing'})\n`);
  }
  if (options.watch !== true) return 0;
  const { watchCommand } = await import('./watch.js');
  return watchCommand(
    null,
    {
      url,
      run: run.run_id,
      // From the resume event on: this attempt, not the one that ended.
      since: Math.max(0, run.seq - 1),
      exitWithOutcome: true,
      commandName: 'resume',
      ...auth,
      ...(options.json === true ? { json: true } : {}),
      ...(options.retries === undefined ? {} : { retries: options.retries }),
    },
    io,
  );
}
