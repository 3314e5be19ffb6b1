import pc from 'picocolors';
import { Option, type Command } from 'commander';
import { WebSocket } from 'ws';
import { describeError } from '../../core/errors.js';
import { isTerminalEvent, type FlowcastEvent } from '../../events/types.js';
import { MonitorError, PipelineMonitor, type StateChange } from '../../client/index.js';
import { idOf, nonNegativeInt, urlWith } from '../options.js';
import { RestCallError, getJson, tokenHint } from '../rest-client.js';
import { UUID, resolveRunPrefix } from '../run-id.js';
import { RunBoard, formatDuration, formatRunLine, startLiveView, type LiveView } from '../terminal-view.js';

/** Options of `flowcast watch`. */
export interface WatchCommandOptions {
  /** The server. @default "ws://127.0.0.1:8765" */
  url?: string;
  /** @default $FLOWCAST_TOKEN */
  token?: string;
  /** One event per line (NDJSON) on stdout. */
  json?: boolean;
  /** Watch one run instead of a pipeline: replay it after `since`, follow it, exit when it ends. */
  run?: string;
  /** With `run`: replay the events after this seq. @default 0 */
  since?: number;
  /**
   * Reconnect attempts after a failed one before giving up with exit code 1.
   * @default unlimited on a terminal, 5 otherwise
   */
  retries?: number;
  /** With `run`: exit with the run's outcome (0 completed, 1 failed or cancelled) instead of 0 whenever it ends. */
  exitWithOutcome?: boolean;
  /** The name in stderr notes. @default "watch" */
  commandName?: string;
}

/** Where the command writes, and (for tests) what stops it like Ctrl-C. */
export interface WatchIo {
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
  signal?: AbortSignal;
}

const DEFAULT_URL = 'ws://127.0.0.1:8765';

/** Adds `flowcast watch` to the program. */
export function registerWatchCommand(program: Command): Command {
  return program
    .command('watch')
    .description('watch the runs of a pipeline ("*" for all) or one run live, from a flowcast server')
    .argument('[pipeline_id]', 'the pipeline to watch, or "*" (quoted) for every pipeline')
    .addOption(new Option('--url <url>', 'the server (ws://, wss://, http:// or https://)').env('FLOWCAST_URL').argParser(wsUrl).default(DEFAULT_URL))
    .option('--token <token>', 'the token the server checks (default: $FLOWCAST_TOKEN)')
    .option('--json', 'one event per line (NDJSON) on stdout, for scripts')
    .option('--run <run_id>', 'watch one run (its id or any unique prefix of it): replay it from the start (or --since), exit when it ends', idOf('--run'))
    .option('--since <seq>', 'with --run: replay the events after this seq', nonNegativeInt)
    .option('--retries <count>', 'reconnect attempts before giving up with exit code 1 (default: unlimited on a terminal, 5 otherwise)', nonNegativeInt)
    .addHelpText(
      'after',
      `
On a terminal the view redraws in place: one block per run with its steps, progress
bars and last log lines. Runs already in flight when watch starts are shown from their
first event. Without a terminal it prints plain lines, or NDJSON with --json; connection
news goes to stderr. --run takes a whole run id (a run that has not started yet is
waited for) or a prefix that only one run has, such as the 8 characters flowcast
history prints. Exit codes: 0 on Ctrl-C (or when the --run run ends), 1 when the server
cannot be reached or rejects the token or no run (or several) fits a --run prefix, 2
on bad arguments.

Examples:
  flowcast watch demo_workflow
  flowcast watch '*' --json | jq .type
  flowcast watch --run 3f2a9c1d --since 10 --json`,
    )
    .action(async (pipelineId: string | undefined, options: WatchCommandOptions, command: Command) => {
      if (pipelineId === undefined && options.run === undefined) command.error('error: give a pipeline id (or "*"), or --run <run_id>', { exitCode: 2 });
      if (pipelineId !== undefined && options.run !== undefined) command.error('error: give a pipeline id or --run <run_id>, not both', { exitCode: 2 });
      if (options.since !== undefined && options.run === undefined) command.error('error: --since needs --run <run_id>: a seq belongs to one run', { exitCode: 2 });
      if (pipelineId !== undefined && pipelineId !== '*' && !/^[A-Za-z0-9_.:\-/@]{1,200}$/.test(pipelineId)) {
        command.error(`error: pipeline_id must be 1-200 letters, digits and _ . : - / @ (or "*"), received "${pipelineId}"`, { exitCode: 2 });
      }
      process.exitCode = await watchCommand(pipelineId ?? null, options);
    });
}

const wsUrl = urlWith(['ws:', 'wss:', 'http:', 'https:']);

/**
 * Watches `pipelineId` (or `options.run`) until Ctrl-C/SIGTERM (or `io.signal`), the
 * watched run's end, or a connection that cannot be made. Resolves with the exit code.
 */
export async function watchCommand(pipelineId: string | null, options: WatchCommandOptions, io: WatchIo = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const { stdout: out, stderr: err } = io;
  const name = options.commandName ?? 'watch';
  const url = options.url ?? DEFAULT_URL;
  const token = options.token ?? process.env.FLOWCAST_TOKEN;
  if (options.run !== undefined && !UUID.test(options.run)) {
    // A short id: the server knows which run it names (a whole UUID is taken as given,
    // so that a run that has not started yet can be waited for).
    try {
      const found = await resolveRunPrefix({ url, ...(token === undefined || token === '' ? {} : { token }) }, options.run);
      if (found === null) {
        err.write(`flowcast watch: no run id starts with "${options.run}" (flowcast history lists the runs; give a whole id to wait for a run that has not started)\n`);
        return 1;
      }
      options = { ...options, run: found.run_id };
    } catch (error) {
      err.write(`flowcast watch: ${error instanceof RestCallError || error instanceof Error ? error.message : describeError(error)}\n`);
      return 1;
    }
  }
  const mode = options.json === true ? 'json' : out.isTTY === true ? 'live' : 'plain';
  const interactive = mode === 'live';
  const color = interactive && pc.isColorSupported;
  const target = options.run !== undefined ? `run ${options.run}` : pipelineId === '*' ? 'every pipeline' : `${pipelineId}`;
  const retries = options.retries ?? (interactive ? undefined : 5);
  const restTarget = { url, ...(token === undefined || token === '' ? {} : { token }) };
  const monitor = new PipelineMonitor(url, {
    WebSocket,
    ...(token === undefined || token === '' ? {} : { token }),
    lateJoin: 'replay',
    reconnect: { initialDelayMs: 500, maxDelayMs: 10_000, ...(retries === undefined ? {} : { maxAttempts: retries + 1 }) },
  });

  let finish!: (code: number) => void;
  const finished = new Promise<number>((resolve) => (finish = resolve));
  // Said after the live view's last frame, so that it stays on screen.
  let fatal: string | null = null;
  const fail = (message: string): void => {
    fatal ??= message;
    finish(1);
  };
  // The reader went away (`flowcast watch x | head`): stop quietly.
  let outputError: Error | null = null;
  const onOutputError = (error: Error): void => {
    outputError = error;
    finish(0);
  };
  out.on('error', onOutputError);
  const write = (text: string): void => {
    if (outputError === null) out.write(text);
  };
  const note = (text: string): void => {
    if (mode !== 'live') err.write(`flowcast ${name}: ${text}\n`);
  };

  const board = new RunBoard({ maxRuns: 12, logLines: 3 });
  let connection = `connecting to ${url}…`;
  let view: LiveView | null = null;
  let announced = false;

  monitor.on('state', (change) => {
    connection = describeState(change, url);
    if (change.to === 'reconnecting' || (change.to === 'open' && announced)) note(connection);
    if (change.to === 'closed' && change.error !== undefined) {
      const refused = change.error instanceof MonitorError && change.error.code === 'FLOWCAST_ERR_UNAUTHORIZED';
      fail(refused ? `${change.error.message}: ${tokenHint(token !== undefined && token !== '')}` : change.error.message);
    }
  });
  monitor.on('error', (error) => {
    // Fatal errors arrive with the 'closed' state; the others are worth a line.
    if (error instanceof MonitorError && (error.code === 'FLOWCAST_ERR_UNAUTHORIZED' || error.code === 'FLOWCAST_ERR_CONNECTION_FAILED')) return;
    note(describeError(error));
  });
  monitor.on('*', (event) => {
    const run = board.apply(event);
    if (mode === 'json') write(`${JSON.stringify(event)}\n`);
    else if (mode === 'plain') for (const line of plainLines(event, run === null ? null : formatRunLine(run, { color: false, now: Date.now() }))) write(`${line}\n`);
    if (options.run !== undefined && event.run_id === options.run && isTerminalEvent(event)) {
      finish(options.exitWithOutcome === true && event.type !== 'PipelineCompleteEvent' ? 1 : 0);
    }
  });
  monitor.on('replay_complete', (r) => {
    if (r.run_id !== options.run) return;
    if (r.last_seq === 0) note(`run ${r.run_id} has no events (yet): waiting for them`);
    // A --since at or past the end of a run that ended replays nothing: its end is not coming again.
    else void endedBefore(restTarget, r.run_id, r.last_seq).then((status) => {
      if (status === null) return;
      note(`run ${r.run_id} ended (${status}): no events after seq ${r.last_seq}`);
      finish(options.exitWithOutcome === true && status !== 'COMPLETED' ? 1 : 0);
    });
  });

  const onSignal = (signal: NodeJS.Signals): void => {
    if (signal === 'SIGINT' && interactive) out.write('\n');
    finish(0);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const onAbort = (): void => finish(0);
  io.signal?.addEventListener('abort', onAbort, { once: true });
  if (io.signal?.aborted === true) finish(0);

  if (interactive) {
    view = startLiveView(board, { stream: out, color, title: `flowcast ${name} ${target}`, footer: () => [connection] });
  }
  const subscription =
    options.run !== undefined ? monitor.subscribe({ runId: options.run, since: options.since ?? 0 }) : monitor.subscribe(pipelineId === '*' ? '*' : (pipelineId as string));
  subscription.then(
    () => {
      announced = true;
      note(`connected to ${url}, watching ${target}`);
    },
    (error: unknown) => {
      // Closed before the server confirmed: the state listener already said why.
      if (error instanceof MonitorError && error.serverCode === undefined) return;
      fail(error instanceof Error ? error.message : describeError(error));
    },
  );
  monitor.connect().catch(() => undefined);

  const code = await finished;
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  io.signal?.removeEventListener('abort', onAbort);
  await monitor.close();
  view?.stop();
  out.off('error', onOutputError);
  const reason = fatal as string | null;
  if (reason !== null) err.write(`flowcast ${name}: ${reason}\n`);
  const error = outputError as Error | null;
  if (error !== null && (error as NodeJS.ErrnoException).code !== 'EPIPE') {
    err.write(`flowcast ${name}: cannot write the output: ${describeError(error)}\n`);
    return 1;
  }
  return code;
}

/** The final status of `runId` when it ended at or before `seq` (its log says so), else null (also when the server cannot say). */
async function endedBefore(target: { url: string; token?: string }, runId: string, seq: number): Promise<string | null> {
  try {
    const log = await getJson<{ ended?: boolean; last_seq?: number }>(target, `/api/runs/${encodeURIComponent(runId)}/events`, { since: seq, limit: 1 });
    if (log.ended !== true || (log.last_seq ?? Infinity) > seq) return null;
    const run = await getJson<{ status?: string }>(target, `/api/runs/${encodeURIComponent(runId)}`);
    return typeof run.status === 'string' ? run.status : null;
  } catch {
    return null;
  }
}


function describeState(change: StateChange, url: string): string {
  switch (change.to) {
    case 'connecting':
      return change.attempt !== undefined && change.attempt > 1 ? `connecting to ${url} (attempt ${change.attempt})…` : `connecting to ${url}…`;
    case 'open':
      return `connected to ${url}`;
    case 'reconnecting': {
      const why = change.code === undefined ? '' : ` (${change.reason ?? change.code})`;
      const what = change.from === 'open' ? `connection to ${url} lost` : `could not connect to ${url}`;
      return `${what}${why}; trying again in ${formatDuration(change.delayMs ?? 0)}`;
    }
    default:
      return `disconnected from ${url}`;
  }
}

/**
 * Plain lines for logs and pipes: `12:00:01.234 demo_workflow 3f2a9c1d step fetch completed in 120ms`;
 * a run's end is its summary line (`runLine`).
 */
export function plainLines(event: FlowcastEvent, runLine: string | null): string[] {
  const prefix = `${event.timestamp.slice(11, 23)} ${event.pipeline_id} ${event.run_id.slice(0, 8)} `;
  switch (event.type) {
    case 'PipelineStartEvent':
      return [`${prefix}started (${event.pipeline_type}, ${event.steps.length} step${event.steps.length === 1 ? '' : 's'})`];
    case 'StepStartEvent':
      return [`${prefix}step ${event.step_name} started${event.attempt > 1 ? ` (attempt ${event.attempt})` : ''}${event.items === undefined ? '' : ` (${event.items} items)`}`];
    case 'StepProgressEvent':
      return [`${prefix}step ${event.step_name} ${Math.round(event.progress * 100)}%${event.message === undefined ? '' : ` ${event.message}`}`];
    case 'StepLogEvent':
      return event.lines.map((line) => `${prefix}${event.step_name} › ${line}`);
    case 'StepRetryEvent':
      return [`${prefix}step ${event.step_name} failed (${event.error}); attempt ${event.attempt} in ${formatDuration(event.delay_ms)}`];
    case 'StepCompleteEvent':
      return [`${prefix}step ${event.step_name} completed in ${formatDuration(event.duration_ms)}`];
    case 'StepErrorEvent':
      return [`${prefix}step ${event.step_name} failed: ${event.error}`];
    case 'StepSkipEvent':
      return [`${prefix}step ${event.step_name} skipped: ${event.reason}`];
    default:
      return [runLine ?? `${prefix}${event.type}`];
  }
}
