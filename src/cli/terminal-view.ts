import pc from 'picocolors';
import { createLogUpdate } from 'log-update';
import { checkKnownKeys, checkObject, checkPositiveInt } from '../core/validate.js';
import type { RunBoard, RunView, RunViewStatus, StepView, StepViewStatus } from './run-board.js';

export { RunBoard } from './run-board.js';
export type { RunBoardOptions, RunView, RunViewStatus, StepView, StepViewStatus, LogLine, BoardTotals } from './run-board.js';

/** Options of {@link render}. */
export interface RenderOptions {
  /** Columns available: no line is longer. */
  width: number;
  /** `false`: plain text, no ANSI escape codes at all. */
  color: boolean;
  /** The current time (epoch ms), for the elapsed time of running runs and steps. */
  now: number;
  /**
   * Rows available. When the runs do not fit, ended runs shrink to one line each (the
   * oldest first), then the oldest runs are left out with a "… N more" line.
   * @default unlimited
   */
  height?: number;
  /** @default "flowcast" */
  title?: string;
  /** Lines under the runs. @default ["Ctrl-C to stop"] */
  footer?: readonly string[];
}

/** Cells of a progress bar. */
export const BAR_WIDTH = 20;

type Style = (s: string) => string;
type Colors = ReturnType<typeof pc.createColors>;
/** A piece of a line and how to colour it. */
type Seg = readonly [text: string, style?: Style | undefined];

const RUN_LABEL: Record<RunViewStatus, string> = {
  RUNNING: 'RUNNING',
  COMPLETED: 'COMPLETED',
  FAILED: 'FAILED',
  CANCELLED: 'CANCELLED',
};
const BADGE_WIDTH = 11;

const STEP_ICON: Record<StepViewStatus, string> = {
  PENDING: '·',
  RUNNING: '▸',
  RETRYING: '↻',
  COMPLETED: '✓',
  FAILED: '✗',
  SKIPPED: '⊘',
  STOPPED: '■',
};

/**
 * Renders the board as text for a terminal: a header with totals and events/s, one
 * block per run (status badge with its label, pipeline id, short run id, duration,
 * current step; then one line per step with a progress bar, duration, attempt and
 * error or skip reason; then the run's last log lines), and a footer. Pure: the same
 * board and options give the same string.
 *
 * @example
 * process.stdout.write(render(board, { width: process.stdout.columns, color: true, now: Date.now() }) + '\n');
 */
export function render(board: RunBoard, options: RenderOptions): string {
  checkKnownKeys(checkObject(options, 'render options'), ['width', 'color', 'now', 'height', 'title', 'footer'], 'render options');
  const width = Math.max(20, Math.floor(options.width));
  const c = pc.createColors(options.color);
  const runs = board.runs;
  // Columns shared by every run, so that bars line up from one run to the next.
  const ctx: Ctx = {
    width,
    c,
    color: options.color,
    now: options.now,
    idWidth: Math.min(24, Math.max(0, ...runs.map((r) => r.pipelineId.length))),
    nameWidth: Math.min(20, Math.max(0, ...runs.flatMap((r) => r.steps.map((s) => s.name.length)))),
  };

  const head = [header(board, ctx, options.title ?? 'flowcast'), ''];
  const foot = ['', ...(options.footer ?? ['Ctrl-C to stop']).map((f) => line([[f, c.dim]], ctx))];
  if (runs.length === 0) head.push(line([['waiting for the first run…', c.dim]], ctx));

  const blocks = runs.map((run) => ({ run, compact: false }));
  // A blank line around every full block; one-line (compact) runs stack without one.
  const body = (): string[] =>
    blocks.flatMap((b, i) => {
      const lines = b.compact ? [runHeader(b.run, ctx)] : runBlock(b.run, ctx);
      const prev = blocks[i - 1];
      return prev !== undefined && (!b.compact || !prev.compact) ? ['', ...lines] : lines;
    });
  let lines = body();
  const height = options.height;
  const fits = (): boolean => height === undefined || head.length + lines.length + foot.length <= height;
  // Shrink ended runs to one line, the oldest first, until the screen holds them all...
  for (let i = blocks.length - 1; i >= 0 && !fits(); i--) {
    const b = blocks[i] as (typeof blocks)[number];
    if (b.run.status !== 'RUNNING') {
      b.compact = true;
      lines = body();
    }
  }
  // ...then leave out the oldest runs, saying how many.
  let hidden = 0;
  const total = (): number => head.length + lines.length + foot.length + (hidden > 0 ? 1 : 0);
  while (blocks.length > 0 && height !== undefined && total() > height) {
    blocks.pop();
    hidden++;
    lines = body();
  }
  if (hidden > 0) lines.push(line([[`… ${hidden} more run${hidden === 1 ? '' : 's'}`, c.dim]], ctx));
  return [...head, ...lines, ...foot].join('\n');
}

/**
 * One plain line about a run, for logs and pipes: badge, pipeline id, short run id,
 * duration and outcome, e.g.
 * `FAILED     always_fails   3f2a9c1d  0.9s  failed at validate_schema: Error: …`.
 */
export function formatRunLine(run: RunView, options: { color: boolean; now: number; width?: number }): string {
  const c = pc.createColors(options.color);
  const ctx: Ctx = { width: options.width ?? Number.POSITIVE_INFINITY, c, color: options.color, now: options.now, idWidth: 14, nameWidth: 0 };
  return runHeader(run, ctx);
}

interface Ctx {
  width: number;
  c: Colors;
  color: boolean;
  now: number;
  idWidth: number;
  nameWidth: number;
}

function header(board: RunBoard, ctx: Ctx, title: string): string {
  const { c } = ctx;
  const t = board.totals;
  const rate = board.eventsPerSecond(ctx.now);
  return line(
    [
      [title, c.bold],
      ['  '],
      [`${t.running} running`, c.cyan],
      [' · '],
      [`${t.completed} completed`, c.green],
      [' · '],
      [`${t.failed} failed`, t.failed > 0 ? c.red : undefined],
      ...(t.cancelled > 0 ? ([[' · '], [`${t.cancelled} cancelled`, c.yellow]] as const) : []),
      [' · '],
      [`${rate < 10 ? rate.toFixed(1) : Math.round(rate)} events/s`, c.dim],
    ],
    ctx,
  );
}

function badge(status: RunViewStatus, ctx: Ctx): Seg {
  const { c } = ctx;
  const label = RUN_LABEL[status];
  if (!ctx.color) return [`[${label}]`.padEnd(BADGE_WIDTH)];
  const text = ` ${label} `.padEnd(BADGE_WIDTH);
  const style: Style =
    status === 'RUNNING'
      ? (s) => c.bgCyan(c.black(s))
      : status === 'COMPLETED'
        ? (s) => c.bgGreen(c.black(s))
        : status === 'FAILED'
          ? (s) => c.bgRed(c.white(s))
          : (s) => c.bgYellow(c.black(s));
  return [text, style];
}

function runHeader(run: RunView, ctx: Ctx): string {
  const { c } = ctx;
  const elapsed = (run.durationMs ?? ctx.now - run.startedAt);
  const segs: Seg[] = [
    badge(run.status, ctx),
    [' '],
    [run.pipelineId.padEnd(ctx.idWidth), c.bold],
    ['  '],
    [run.runId.slice(0, 8), c.dim],
    ['  '],
    [formatDuration(elapsed).padStart(6)],
    ['  '],
  ];
  const done = run.steps.filter((s) => s.status === 'COMPLETED').length;
  if (run.status === 'RUNNING') {
    const current = run.steps.filter((s) => s.status === 'RUNNING' || s.status === 'RETRYING');
    if (current.length > 0) segs.push([`▸ ${current.map((s) => stepSummary(s)).join(', ')}`, c.cyan]);
    else segs.push(['starting…', c.dim]);
  } else if (run.status === 'COMPLETED') {
    segs.push([`${done}/${run.steps.length} steps`, c.green]);
    if (run.retries > 0) segs.push([`, ${run.retries} ${run.retries === 1 ? 'retry' : 'retries'}`, c.yellow]);
  } else if (run.status === 'FAILED') {
    segs.push([run.failedStep === null ? 'failed: ' : `failed at ${run.failedStep}: `, c.red], [clean(stepError(run)), c.red]);
  } else {
    segs.push([`cancelled: ${clean(run.error ?? '')}`, c.yellow]);
  }
  return line(segs, ctx);
}

function stepSummary(s: StepView): string {
  if (s.status === 'RETRYING') return `${s.name} (retry ${s.attempt})`;
  if (s.items !== null) return `${s.name} ${Math.round(s.progress * s.items)}/${s.items}`;
  return s.attempt > 1 ? `${s.name} (attempt ${s.attempt})` : s.name;
}

/** The failed step's own error reads better than the run's wrapper around it. */
function stepError(run: RunView): string {
  const step = run.steps.find((s) => s.name === run.failedStep);
  return step?.error ?? run.error ?? 'unknown error';
}

function runBlock(run: RunView, ctx: Ctx): string[] {
  const { c } = ctx;
  const out = [runHeader(run, ctx)];
  for (const step of run.steps) out.push(stepLine(step, ctx.nameWidth, ctx));
  for (const log of run.logs) out.push(line([['    '], [`${log.step} › `, c.dim], [clean(log.line), c.dim]], ctx));
  return out;
}

function stepLine(step: StepView, nameWidth: number, ctx: Ctx): string {
  const { c } = ctx;
  const tone = stepStyle(step.status, c);
  const filled = step.status === 'COMPLETED' ? BAR_WIDTH : Math.round(step.progress * BAR_WIDTH);
  const name = step.name.length > nameWidth ? `${step.name.slice(0, nameWidth - 1)}…` : step.name.padEnd(nameWidth);
  const segs: Seg[] = [
    ['  '],
    [STEP_ICON[step.status], tone],
    [' '],
    [name],
    [' '],
    ['█'.repeat(filled), tone],
    ['░'.repeat(BAR_WIDTH - filled), c.dim],
    [' '],
    [`${Math.round((step.status === 'COMPLETED' ? 1 : step.progress) * 100)}%`.padStart(4)],
    ['  '],
    [stepDuration(step, ctx.now).padStart(6)],
  ];
  if (step.attempt > 1 && step.status !== 'RETRYING') segs.push(['  '], [`attempt ${step.attempt}`, c.yellow]);
  switch (step.status) {
    case 'RUNNING':
      if (step.message !== null) segs.push(['  '], [clean(step.message), c.dim]);
      break;
    case 'RETRYING': {
      const wait = step.retryAt === null ? 0 : Math.max(0, step.retryAt - ctx.now);
      segs.push(['  '], [`attempt ${step.attempt} in ${formatDuration(wait)} after ${clean(step.error ?? '')}`, c.yellow]);
      break;
    }
    case 'FAILED':
      segs.push(['  '], [`failed: ${clean(step.error ?? '')}`, c.red]);
      break;
    case 'SKIPPED':
      segs.push(['  '], [`skipped: ${clean(step.skipReason ?? '')}`, c.dim]);
      break;
    case 'STOPPED':
      segs.push(['  '], ['stopped', c.yellow]);
      break;
    case 'PENDING':
      segs.push(['  '], ['pending', c.dim]);
      break;
    case 'COMPLETED':
      if (step.items !== null) segs.push(['  '], [`${step.items} items`, c.dim]);
      break;
  }
  return line(segs, ctx);
}

function stepStyle(status: StepViewStatus, c: Colors): Style {
  switch (status) {
    case 'COMPLETED':
      return c.green;
    case 'RUNNING':
      return c.cyan;
    case 'RETRYING':
    case 'STOPPED':
      return c.yellow;
    case 'FAILED':
      return c.red;
    default:
      return c.dim;
  }
}

function stepDuration(step: StepView, now: number): string {
  // Between attempts nothing runs: no clock to show.
  if (step.status === 'RETRYING') return '';
  if (step.durationMs !== null && (step.status === 'COMPLETED' || step.status === 'FAILED')) return formatDuration(step.durationMs);
  if (step.startedAt === null) return '';
  return formatDuration((step.endedAt ?? now) - step.startedAt);
}

/** `840ms`, `1.2s`, `12.3s`, `2m05s`, `1h02m`. */
export function formatDuration(ms: number): string {
  const n = Math.max(0, Math.round(ms));
  if (n < 1000) return `${n}ms`;
  if (n < 60_000) return `${(n / 1000).toFixed(1)}s`;
  const s = Math.floor(n / 1000);
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor(s / 60) % 60).padStart(2, '0')}m`;
}

/** Joins segments, cutting the text at `ctx.width` columns (with `…`) before colouring it. */
function line(segs: readonly Seg[], ctx: { width: number; color: boolean }): string {
  let out = '';
  let left = ctx.width;
  for (let i = 0; i < segs.length && left > 0; i++) {
    const [text, style] = segs[i] as Seg;
    let t = text;
    if (t.length > left) t = `${t.slice(0, left - 1)}…`;
    left -= t.length;
    out += ctx.color && style !== undefined && t.length > 0 ? style(t) : t;
  }
  return ctx.color ? out : out.trimEnd();
}

/** Text from tasks (logs, errors) must not move the cursor or recolour the screen. */
function clean(text: string): string {
  // eslint-disable-next-line no-control-regex -- matching control characters is the point
  return text.replace(/\u001b\[[0-9;?]*[ -/]*[@-~]/g, '').replace(/[\u0000-\u001f\u007f-\u009f]+/g, ' ');
}

/** Options of {@link startLiveView}. */
export interface LiveViewOptions {
  /** @default process.stdout */
  stream?: NodeJS.WriteStream;
  /**
   * Time between redraws, in milliseconds: the view redraws at most this often.
   * @default 100
   */
  intervalMs?: number;
  /** @default whether the stream supports colours (`NO_COLOR`, `FORCE_COLOR` honoured) */
  color?: boolean;
  /** @default "flowcast" */
  title?: string;
  /** Extra lines above "Ctrl-C to stop" (read at each redraw). */
  footer?: () => readonly string[];
}

/** A running live view. */
export interface LiveView {
  /** Stops redrawing and leaves the last frame on screen (without the Ctrl-C hint). Idempotent. */
  stop(): void;
}

/**
 * Redraws the board in place on a terminal, at most every `intervalMs`, sized to the
 * terminal (lines cut to its width, runs fitted to its height). Only redraws when the
 * text changed.
 *
 * @example
 * const view = startLiveView(board, { title: 'flowcast demo' });
 * // ... later
 * view.stop();
 */
export function startLiveView(board: RunBoard, options: LiveViewOptions = {}): LiveView {
  checkKnownKeys(checkObject(options, 'startLiveView options'), ['stream', 'intervalMs', 'color', 'title', 'footer'], 'startLiveView options');
  const stream = options.stream ?? process.stdout;
  const intervalMs = checkPositiveInt(options.intervalMs ?? 100, 'intervalMs');
  const color = options.color ?? pc.isColorSupported;
  const update = createLogUpdate(stream);
  const draw = (final: boolean): void => {
    const extra = options.footer?.() ?? [];
    update(
      render(board, {
        width: stream.columns ?? 80,
        // log-update cuts from the top when the text is taller than the screen: keep the
        // header by fitting the runs to the height ourselves (one row is the cursor's).
        height: Math.max(8, (stream.rows ?? 24) - 1),
        color,
        now: Date.now(),
        title: options.title ?? 'flowcast',
        footer: final ? extra : [...extra, 'Ctrl-C to stop'],
      }),
    );
  };
  draw(false);
  const timer = setInterval(() => draw(false), intervalMs);
  timer.unref();
  let stopped = false;
  return {
    stop(): void {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      draw(true);
      update.done();
    },
  };
}
