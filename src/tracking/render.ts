import pc from 'picocolors';
import { InvalidArgumentError } from '../core/errors.js';
import { checkKnownKeys, checkObject, show } from '../core/validate.js';
import type { PipelineStatus, StepRunStatus, StepStatus } from './models.js';

/** Options of {@link renderStatus}. */
export interface RenderStatusOptions {
  /** ANSI colours (status words, bars, errors). @default false */
  color?: boolean;
  /** Width of the output in columns; bars are scaled to fit. At least 40. @default 60 */
  width?: number;
}

/**
 * A duration for people: `"850ms"`, `"1.2s"`, `"2m 03s"`, `"1h 05m"`; `"-"` for `null`.
 *
 * @example
 * formatDuration(123_456); // "2m 03s"
 */
export function formatDuration(ms: number | null): string {
  if (ms === null) return '-';
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) {
    throw new InvalidArgumentError(`formatDuration(ms): ms must be a finite number >= 0 or null, received ${show(ms)}`);
  }
  if (Math.round(ms) < 1000) return `${Math.round(ms)}ms`;
  if (ms < 59_950) return `${(ms / 1000).toFixed(1)}s`;
  const totalSeconds = Math.round(ms / 1000);
  if (totalSeconds < 3600) {
    return `${Math.floor(totalSeconds / 60)}m ${String(totalSeconds % 60).padStart(2, '0')}s`;
  }
  const totalMinutes = Math.floor(totalSeconds / 60);
  return `${Math.floor(totalMinutes / 60)}h ${String(totalMinutes % 60).padStart(2, '0')}m`;
}

const NAME_MAX = 30;
const MIN_BAR = 5;
const INDENT = '  ';

/**
 * The console view of seed 001 §9.1: a rule of `=`, the pipeline, run, status and
 * duration, then one line per step with a bar of `█` proportional to its duration
 * (scaled so the longest step fills the space left by `width`) and the duration. Steps
 * that did not run show their status instead; failed steps show their error below.
 *
 * @example
 * console.log(renderStatus(await tracking.getStatus(runId), { color: true }));
 */
export function renderStatus(status: PipelineStatus, options: RenderStatusOptions = {}): string {
  if (typeof status !== 'object' || status === null || !Array.isArray(status.steps)) {
    throw new InvalidArgumentError(`renderStatus(status): status must be a PipelineStatus, received ${show(status)}`);
  }
  checkKnownKeys(checkObject(options, 'renderStatus options'), ['color', 'width'], 'renderStatus options');
  const { color = false, width = 60 } = options;
  if (typeof color !== 'boolean') throw new InvalidArgumentError(`color must be a boolean, received ${show(color)}`);
  if (typeof width !== 'number' || !Number.isInteger(width) || width < 40) {
    throw new InvalidArgumentError(`width must be an integer >= 40, received ${show(width)}`);
  }
  const c = pc.createColors(color);
  const paint = (s: string, st: StepRunStatus | PipelineStatus['status']): string => {
    if (st === 'COMPLETED') return c.green(s);
    if (st === 'FAILED') return c.red(s);
    if (st === 'RUNNING' || st === 'RETRYING') return c.cyan(s);
    if (st === 'CANCELLED') return c.yellow(s);
    return c.dim(s);
  };

  const lines: string[] = [];
  lines.push('='.repeat(width));
  lines.push(`Pipeline: ${c.bold(fit(status.pipeline_id, width - 10))}`);
  lines.push(`Run:      ${fit(status.run_id, width - 10)}`);
  let statusLine = `Status:   ${paint(status.status, status.status)}`;
  if (status.status === 'RUNNING' && status.steps.length > 0) {
    const done = Math.round(status.progress * status.steps.length);
    statusLine += ` (${done}/${status.steps.length} steps${status.current_step === null ? '' : `, at ${status.current_step}`})`;
  }
  lines.push(statusLine);
  lines.push(`Duration: ${formatDuration(status.duration_ms)}`);
  if (status.error !== null && status.status !== 'COMPLETED') lines.push(`Error:    ${c.red(firstLine(status.error, width - 10))}`);
  lines.push('Steps:');
  if (status.steps.length === 0) lines.push(`${INDENT}(none)`);

  const labels = status.steps.map(stepLabel);
  const labelWidth = Math.max(0, ...labels.map((l) => l.length));
  // Line: indent, name, space, bar, space, label. Names give way (truncated with …) so a bar of MIN_BAR fits.
  const longestName = Math.max(0, ...status.steps.map((s) => s.step_name.length));
  const nameWidth = Math.max(4, Math.min(NAME_MAX, longestName, width - INDENT.length - 2 - labelWidth - MIN_BAR));
  const barSpace = Math.max(1, width - INDENT.length - nameWidth - 2 - labelWidth);
  const longest = Math.max(0, ...status.steps.map((s) => s.duration_ms ?? 0));

  status.steps.forEach((step, i) => {
    const label = labels[i] as string;
    const name = fit(step.step_name, nameWidth).padEnd(nameWidth);
    let cells = 0;
    if (step.duration_ms !== null && longest > 0) {
      cells = Math.round((step.duration_ms / longest) * barSpace);
      // A step that took any time gets a visible bar.
      if (cells === 0 && step.duration_ms > 0) cells = 1;
    }
    const bar = '█'.repeat(cells) + ' '.repeat(barSpace - cells);
    lines.push(`${INDENT}${name} ${paint(bar, step.status)} ${paint(label, step.status)}`.trimEnd());
    if (step.status === 'FAILED' && step.error !== null) {
      lines.push(`${INDENT}${INDENT}${c.red(`✗ ${firstLine(step.error, width - 6)}`)}`);
    }
  });
  return lines.join('\n');
}

function stepLabel(step: StepStatus): string {
  const retries = step.attempts > 1 ? ` (${step.attempts} attempts)` : '';
  switch (step.status) {
    case 'COMPLETED':
      return `${formatDuration(step.duration_ms)}${retries}`;
    case 'FAILED':
      return `FAILED ${formatDuration(step.duration_ms)}${retries}`;
    case 'RUNNING':
      return step.progress > 0 ? `RUNNING ${Math.round(step.progress * 100)}%` : 'RUNNING';
    case 'RETRYING':
      return `RETRYING${retries}`;
    case 'CANCELLED':
      return step.duration_ms === null ? 'CANCELLED' : `CANCELLED ${formatDuration(step.duration_ms)}`;
    default:
      return step.status;
  }
}

function fit(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, max - 1)}…`;
}

function firstLine(s: string, max: number): string {
  const nl = s.indexOf('\n');
  return fit(nl === -1 ? s : s.slice(0, nl), Math.max(10, max));
}
