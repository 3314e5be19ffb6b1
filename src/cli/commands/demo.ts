import pc from 'picocolors';
import type { Command } from 'commander';
import { positiveInt } from '../options.js';
import { InMemoryBroker } from '../../pipeline/memory-broker.js';
import { HookManager } from '../../events/hook-manager.js';
import { isTerminalEvent } from '../../events/types.js';
import { createDemo } from '../../demo/pipelines.js';
import { runDemo, type DemoRunnerOptions, type DemoSummary } from '../../demo/runner.js';
import { describeError } from '../../core/errors.js';
import { InMemoryPipelineStorage, PipelineTrackingManager, type PipelineMetrics } from '../../tracking/index.js';
import { RunBoard, formatDuration, formatRunLine, startLiveView, type LiveView } from '../terminal-view.js';

/** Options of `flowcast demo`. */
export interface DemoCommandOptions {
  /** Stop after this many runs have ended. @default unlimited (until SIGINT/SIGTERM) */
  runs?: number;
  /** Runs in flight at once. @default 3 */
  concurrency?: number;
}

/** Where the command writes. */
export interface CommandIo {
  stdout: NodeJS.WriteStream;
}

/** Adds `flowcast demo` to the program. */
export function registerDemoCommand(program: Command): Command {
  return program
    .command('demo')
    .description('run demo pipelines again and again, with a live view of runs and steps')
    .option('-n, --runs <count>', 'stop after <count> runs have ended and print a summary', positiveInt)
    .option('-c, --concurrency <count>', 'runs in flight at once', positiveInt, 3)
    .addHelpText(
      'after',
      `
Pipelines: demo_workflow (sequential, map, filter), etl_dag (dataflow), flaky_retry
(fails once, then succeeds on retry), always_fails, log_progress (log lines, progress).

On a terminal the view redraws in place; when stdout is not a terminal (CI, pipes) it
prints one line per finished run. Ctrl-C (or SIGTERM) cancels the runs in flight,
prints a summary and exits 0 (2 on bad arguments).

Examples:
  flowcast demo
  flowcast demo -n 20 -c 5 | tail -n 3`,
    )
    .action(async (options: DemoCommandOptions) => {
      process.exitCode = await demoCommand(options);
    });
}

/**
 * Runs the demo until `options.runs` runs have ended or SIGINT/SIGTERM arrives; then
 * cancels the runs in flight, closes the broker and prints a summary. Resolves with the
 * exit code.
 */
export async function demoCommand(options: DemoCommandOptions, io: CommandIo = { stdout: process.stdout }): Promise<number> {
  const out = io.stdout;
  const live = out.isTTY === true;
  const color = live && pc.isColorSupported;
  const broker = new InMemoryBroker();
  const hooks = new HookManager();
  const board = new RunBoard();
  const tracking = new PipelineTrackingManager().withStorage(new InMemoryPipelineStorage({ maxRuns: 2000 }));
  const demo = createDemo(broker, hooks, tracking);
  let trackingLine = '';
  const refreshTracking = (): Promise<void> =>
    tracking.getMetrics({ days: 1 }).then(
      (m) => void (trackingLine = formatTracking(m)),
      (error: unknown) => void (trackingLine = `Tracking: unavailable (${describeError(error)})`),
    );

  const stop = new AbortController();
  // The reader went away (`flowcast demo | head`): stop like on Ctrl-C, without writing more.
  let outputError: Error | null = null;
  const onOutputError = (error: Error): void => {
    outputError = error;
    stop.abort(new Error(`demo stopped: ${describeError(error)}`));
  };
  out.on('error', onOutputError);
  const write = (text: string): void => {
    if (outputError === null) out.write(text);
  };

  hooks.on('*', (event) => {
    const run = board.apply(event);
    // Without a terminal to redraw, a line per ended run keeps CI logs and pipes readable.
    if (!live && run !== null && isTerminalEvent(event)) write(`${formatRunLine(run, { color: false, now: Date.now() })}\n`);
  });

  const concurrency = options.concurrency ?? 3;
  if (!live) {
    const bound = options.runs === undefined ? 'until SIGINT/SIGTERM' : `for ${options.runs} runs`;
    write(`flowcast demo: ${demo.pipelines.map((p) => p.id).join(', ')}; ${concurrency} at a time, ${bound}\n`);
  }
  const onSignal = (signal: NodeJS.Signals): void => {
    // A second Ctrl-C while the runs are being cancelled: leave at once.
    if (stop.signal.aborted) process.exit(130);
    stop.abort(new Error(`demo stopped by ${signal}`));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  let view: LiveView | null = null;
  let trackingTimer: NodeJS.Timeout | null = null;
  let summary: DemoSummary;
  try {
    if (live) {
      view = startLiveView(board, { stream: out, color, title: 'flowcast demo', footer: () => (trackingLine === '' ? [] : [trackingLine]) });
      // The metrics scan every stored run: once a second is plenty for a footer.
      trackingTimer = setInterval(() => void refreshTracking(), 1000);
      trackingTimer.unref();
    }
    const runnerOptions: DemoRunnerOptions = { concurrency, signal: stop.signal };
    if (options.runs !== undefined) runnerOptions.runs = options.runs;
    summary = await runDemo(demo, runnerOptions);
  } finally {
    if (trackingTimer !== null) clearInterval(trackingTimer);
    await hooks.idle();
    await refreshTracking();
    view?.stop();
    await broker.close();
    await tracking.close();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  write(`${formatSummary(summary, color)}\n`);
  if (!live && trackingLine !== '') write(`${trackingLine}\n`);
  out.off('error', onOutputError);
  const error = outputError as Error | null;
  if (error !== null && (error as NodeJS.ErrnoException).code !== 'EPIPE') {
    process.stderr.write(`flowcast demo: cannot write the output: ${describeError(error)}\n`);
    return 1;
  }
  return 0;
}

/** `Tracking (24h): 42 runs, 81% succeeded, 1.7s on average` */
export function formatTracking(m: PipelineMetrics): string {
  const avg = m.avg_duration_ms === null ? '' : `, ${formatDuration(m.avg_duration_ms)} on average`;
  return `Tracking (24h): ${m.total_pipelines} run${m.total_pipelines === 1 ? '' : 's'}, ${Math.round(m.success_rate * 100)}% succeeded${avg}`;
}

/** `Summary: 6 runs in 8.1s: COMPLETED 4, FAILED 2, CANCELLED 0` */
export function formatSummary(summary: DemoSummary, color: boolean): string {
  const c = pc.createColors(color);
  const ended = summary.COMPLETED + summary.FAILED + summary.CANCELLED;
  return [
    c.bold(`Summary: ${ended} run${ended === 1 ? '' : 's'} in ${formatDuration(summary.durationMs)}: `),
    c.green(`COMPLETED ${summary.COMPLETED}`),
    ', ',
    summary.FAILED > 0 ? c.red(`FAILED ${summary.FAILED}`) : `FAILED ${summary.FAILED}`,
    ', ',
    summary.CANCELLED > 0 ? c.yellow(`CANCELLED ${summary.CANCELLED}`) : `CANCELLED ${summary.CANCELLED}`,
  ].join('');
}
