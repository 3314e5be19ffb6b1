import { checkNonEmptyString, checkPositiveNumber } from '../core/validate.js';
import { InvalidArgumentError } from '../core/errors.js';
import { isEndedStatus, type PipelineStatus } from './models.js';

/** One entry of {@link PipelineMetrics.slowest_steps}. */
export interface SlowStep {
  step_name: string;
  avg_duration_ms: number;
  max_duration_ms: number;
  /** Number of step executions measured. */
  count: number;
}

/** Per-pipeline numbers of {@link PipelineMetrics.by_pipeline}. */
export interface PipelineBreakdown {
  total: number;
  completed: number;
  failed: number;
  /** Mean duration of its ended runs, `null` when none ended. */
  avg_duration_ms: number | null;
}

/**
 * Statistics over the runs that started in the last `period_days` (seed 001 §7). See
 * docs/tracking.md for the exact definitions.
 */
export interface PipelineMetrics {
  period_days: number;
  /** Start of the window (ISO): runs that started at or after it are counted. */
  since: string;
  total_pipelines: number;
  completed: number;
  failed: number;
  cancelled: number;
  /** Runs not ended yet (`RUNNING` or `PENDING`). */
  running: number;
  /** completed / (completed + failed + cancelled), 0..1; 0 when no run ended. */
  success_rate: number;
  /** Mean duration of ended runs; `null` when none ended. */
  avg_duration_ms: number | null;
  /** Median duration of ended runs (nearest rank); `null` when none ended. */
  p50_duration_ms: number | null;
  /** 95th percentile duration of ended runs (nearest rank); `null` when none ended. */
  p95_duration_ms: number | null;
  /** Failed runs per error, normalised by {@link normalizeFailureReason}. */
  failure_reasons: Record<string, number>;
  /** Ended runs per minute of activity: from the first start to the last end (now while runs are running), at least one minute. */
  throughput_per_minute: number;
  /** Mean duration per step name, over completed and failed steps. */
  avg_step_duration_ms: Record<string, number>;
  /** The 10 step names with the highest mean duration, slowest first. */
  slowest_steps: SlowStep[];
  /** Runs started per hour of the day, UTC: index 0 is 00:00-00:59. */
  busy_hours: number[];
  by_pipeline: Record<string, PipelineBreakdown>;
}

/** Options of {@link computeMetrics}. */
export interface ComputeMetricsOptions {
  /** Size of the window, in days (fractions allowed). @default 7 */
  days?: number;
  /** Only runs of this pipeline. @default every pipeline */
  pipelineId?: string;
  /** End of the window. @default new Date() */
  now?: Date;
}

const DAY_MS = 86_400_000;
const MINUTE_MS = 60_000;
const MAX_REASON = 200;

/** A failure reason as counted in `failure_reasons`: the first non-blank line of the error, trimmed, at most 200 characters. */
export function normalizeFailureReason(error: string | null): string {
  if (error === null) return 'unknown error';
  const text = error.trim();
  const nl = text.indexOf('\n');
  const line = (nl === -1 ? text : text.slice(0, nl)).trim();
  if (line === '') return 'unknown error';
  return line.length > MAX_REASON ? line.slice(0, MAX_REASON) : line;
}

/** Nearest-rank percentile of ascending `sorted` (non-empty). */
function percentile(sorted: number[], p: number): number {
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1] as number;
}

function mean(sum: number, count: number): number | null {
  return count === 0 ? null : sum / count;
}

interface StepAcc {
  sum: number;
  max: number;
  count: number;
}

interface PipelineAcc {
  total: number;
  completed: number;
  failed: number;
  sum: number;
  ended: number;
}

/**
 * Computes {@link PipelineMetrics} from any list of statuses (it filters the window
 * itself), so every storage gets metrics from `listPipelines`.
 *
 * @example
 * const m = computeMetrics(await storage.listPipelines(), { days: 1 });
 */
export function computeMetrics(statuses: Iterable<PipelineStatus>, options: ComputeMetricsOptions = {}): PipelineMetrics {
  const days = options.days === undefined ? 7 : checkPositiveNumber(options.days, 'days');
  const pipelineId = options.pipelineId === undefined ? undefined : checkNonEmptyString(options.pipelineId, 'pipelineId');
  const now = options.now ?? new Date();
  if (!(now instanceof Date) || Number.isNaN(now.getTime())) {
    throw new InvalidArgumentError('computeMetrics(): now must be a valid Date');
  }
  const nowMs = now.getTime();
  const sinceMs = nowMs - days * DAY_MS;

  let total = 0;
  let completed = 0;
  let failed = 0;
  let cancelled = 0;
  let running = 0;
  const durations: number[] = [];
  let durationSum = 0;
  const reasons = new Map<string, number>();
  const steps = new Map<string, StepAcc>();
  const busy = new Array<number>(24).fill(0);
  const pipelines = new Map<string, PipelineAcc>();
  let firstStart = Infinity;
  let lastEnd = -Infinity;

  for (const s of statuses) {
    if (pipelineId !== undefined && s.pipeline_id !== pipelineId) continue;
    if (s.started_at === null) continue;
    const startMs = Date.parse(s.started_at);
    if (Number.isNaN(startMs) || startMs < sinceMs) continue;

    total++;
    if (startMs < firstStart) firstStart = startMs;
    const hour = new Date(startMs).getUTCHours();
    busy[hour] = (busy[hour] as number) + 1;
    let p = pipelines.get(s.pipeline_id);
    if (p === undefined) {
      p = { total: 0, completed: 0, failed: 0, sum: 0, ended: 0 };
      pipelines.set(s.pipeline_id, p);
    }
    p.total++;

    const ended = isEndedStatus(s.status);
    if (s.status === 'COMPLETED') {
      completed++;
      p.completed++;
    } else if (s.status === 'FAILED') {
      failed++;
      p.failed++;
      const reason = normalizeFailureReason(s.error);
      reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
    } else if (s.status === 'CANCELLED') {
      cancelled++;
    } else {
      running++;
    }
    if (ended) {
      if (s.duration_ms !== null) {
        durations.push(s.duration_ms);
        durationSum += s.duration_ms;
        p.sum += s.duration_ms;
        p.ended++;
      }
      const endMs = s.completed_at === null ? NaN : Date.parse(s.completed_at);
      const end = Number.isNaN(endMs) ? startMs + (s.duration_ms ?? 0) : endMs;
      if (end > lastEnd) lastEnd = end;
    }

    for (const st of s.steps) {
      if ((st.status !== 'COMPLETED' && st.status !== 'FAILED') || st.duration_ms === null) continue;
      let acc = steps.get(st.step_name);
      if (acc === undefined) {
        acc = { sum: 0, max: 0, count: 0 };
        steps.set(st.step_name, acc);
      }
      acc.sum += st.duration_ms;
      acc.count++;
      if (st.duration_ms > acc.max) acc.max = st.duration_ms;
    }
  }

  const endedCount = completed + failed + cancelled;
  durations.sort((a, b) => a - b);
  const spanEnd = running > 0 ? nowMs : lastEnd;
  const spanMinutes = Math.max(1, (spanEnd - firstStart) / MINUTE_MS);

  const stepAvg: [string, number][] = [];
  const slow: SlowStep[] = [];
  for (const [name, acc] of steps) {
    const avg = acc.sum / acc.count;
    stepAvg.push([name, avg]);
    slow.push({ step_name: name, avg_duration_ms: avg, max_duration_ms: acc.max, count: acc.count });
  }
  slow.sort((a, b) => b.avg_duration_ms - a.avg_duration_ms || (a.step_name < b.step_name ? -1 : 1));

  const byPipeline: [string, PipelineBreakdown][] = [];
  for (const [id, p] of pipelines) {
    byPipeline.push([id, { total: p.total, completed: p.completed, failed: p.failed, avg_duration_ms: mean(p.sum, p.ended) }]);
  }

  return {
    period_days: days,
    since: new Date(sinceMs).toISOString(),
    total_pipelines: total,
    completed,
    failed,
    cancelled,
    running,
    success_rate: endedCount === 0 ? 0 : completed / endedCount,
    avg_duration_ms: mean(durationSum, durations.length),
    p50_duration_ms: durations.length === 0 ? null : percentile(durations, 50),
    p95_duration_ms: durations.length === 0 ? null : percentile(durations, 95),
    // Object.fromEntries defines own properties, so a reason or name like "__proto__" stays data.
    failure_reasons: Object.fromEntries(reasons),
    throughput_per_minute: endedCount === 0 ? 0 : endedCount / spanMinutes,
    avg_step_duration_ms: Object.fromEntries(stepAvg),
    slowest_steps: slow.slice(0, 10),
    busy_hours: busy,
    by_pipeline: Object.fromEntries(byPipeline),
  };
}
