/**
 * Metrics (seed 001 §7): throughput over time, success rate, duration percentiles,
 * slowest steps, failure reasons, busy hours. From `GET /api/metrics` and, for the
 * throughput series, `GET /api/history`; reloaded when a run ends (told by the
 * WebSocket, never by polling).
 */
import type { JSX } from 'preact';
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import type { ChartConfiguration } from 'chart.js';
import { getHistory, getMetrics, type PipelineMetrics, type PipelineStatus } from '../api.js';
import { ChartCanvas } from '../components/Chart.js';
import { FailureReasons } from '../components/FailureReasons.js';
import { formatDuration } from '../format.js';
import { subscribeQuietly, useMonitor } from '../live.js';
import { throughputSeries } from '../series.js';

const COLORS = { COMPLETED: '#1f8a4c', FAILED: '#c23b3b', CANCELLED: '#b7791f', bar: '#2b6cd4' };
function bucketName(ms: number): string {
  const names: Record<number, string> = { 60_000: 'minute', 300_000: '5 minutes', 900_000: '15 minutes', 3_600_000: 'hour', 21_600_000: '6 hours', 86_400_000: 'day' };
  return names[ms] ?? formatDuration(ms);
}

/** A scale titled `title` (each axis says once what it measures; the legend and card heading do not repeat it). */
function titled(title: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { title: { display: true, text: title }, ...extra };
}

/** One series of bars: `category` names the axis of the labels, `value` the axis of the numbers. */
function bar(labels: string[], data: number[], axes: { category: string; value: string }, horizontal = false, color = COLORS.bar): ChartConfiguration {
  const [c, v] = horizontal ? ['y', 'x'] : ['x', 'y'];
  return {
    type: 'bar',
    data: { labels, datasets: [{ label: axes.value, data, backgroundColor: color }] },
    options: {
      indexAxis: horizontal ? 'y' : 'x',
      plugins: { legend: { display: false } },
      scales: { [c]: titled(axes.category), [v]: titled(axes.value, { beginAtZero: true }) },
    },
  };
}

export function Metrics(): JSX.Element {
  const [days, setDays] = useState(7);
  const [metrics, setMetrics] = useState<PipelineMetrics | null>(null);
  const [history, setHistory] = useState<PipelineStatus[]>([]);
  const [error, setError] = useState<string | null>(null);
  const timer = useRef<ReturnType<typeof setTimeout> | null>(null);
  const load = (): void => {
    Promise.all([getMetrics(days), getHistory(1000)]).then(
      ([m, h]) => {
        setMetrics(m);
        setHistory(h.runs);
        setError(null);
      },
      (e: Error) => setError(e.message),
    );
  };
  const loadRef = useRef(load);
  loadRef.current = load;
  useEffect(load, [days]);
  useEffect(() => () => void (timer.current !== null && clearTimeout(timer.current)), []);
  useMonitor(
    (monitor) => {
      // A run that ends changes the numbers: reload, at most once per 2 s.
      monitor.on('*', () => {
        if (timer.current !== null) return;
        timer.current = setTimeout(() => {
          timer.current = null;
          loadRef.current();
        }, 2000);
      });
      subscribeQuietly(monitor, '*');
    },
    [],
    { eventTypes: ['PipelineCompleteEvent', 'PipelineErrorEvent', 'PipelineCancelledEvent'], onReconnect: () => loadRef.current() },
  );

  const charts = useMemo(() => {
    if (metrics === null) return null;
    const t = throughputSeries(history, Date.now());
    const throughput: ChartConfiguration = {
      type: 'bar',
      data: {
        labels: t.labels,
        datasets: (['COMPLETED', 'FAILED', 'CANCELLED'] as const).map((s) => ({ label: s.toLowerCase(), data: t.series[s], backgroundColor: COLORS[s] })),
      },
      options: { scales: { x: titled(`${bucketName(t.bucketMs)} ended`, { stacked: true }), y: titled('runs', { stacked: true, beginAtZero: true }) } },
    };
    const ended = metrics.completed + metrics.failed + metrics.cancelled;
    const success: ChartConfiguration = {
      type: 'doughnut',
      data: {
        labels: ['completed', 'failed', 'cancelled'],
        datasets: [{ data: [metrics.completed, metrics.failed, metrics.cancelled], backgroundColor: [COLORS.COMPLETED, COLORS.FAILED, COLORS.CANCELLED] }],
      },
      options: { plugins: { legend: { position: 'right' } } },
    };
    const durations = bar(['mean', 'p50', 'p95'], [metrics.avg_duration_ms ?? 0, metrics.p50_duration_ms ?? 0, metrics.p95_duration_ms ?? 0], {
      category: 'statistic',
      value: 'duration (ms)',
    });
    const slowest = bar(
      metrics.slowest_steps.map((s) => s.step_name),
      metrics.slowest_steps.map((s) => Math.round(s.avg_duration_ms)),
      { category: 'step', value: 'mean duration (ms)' },
      true,
    );
    const hours = bar(
      metrics.busy_hours.map((_, h) => `${String(h).padStart(2, '0')}h`),
      metrics.busy_hours,
      { category: 'hour of the day (UTC)', value: 'runs started' },
    );
    return { throughput, success, durations, slowest, hours, ended, bucketMs: t.bucketMs };
  }, [metrics, history]);

  return (
    <section aria-labelledby="metrics-title" data-testid="metrics">
      <div class="page-head">
        <h1 id="metrics-title">Metrics</h1>
        <label>
          Window{' '}
          <select value={days} onChange={(e) => setDays(Number((e.target as HTMLSelectElement).value))}>
            <option value={1}>1 day</option>
            <option value={7}>7 days</option>
            <option value={30}>30 days</option>
          </select>
        </label>
      </div>
      {error !== null && <p class="error" role="alert">Could not load metrics: {error}</p>}
      {metrics === null || charts === null ? (
        <p class="muted">Loading…</p>
      ) : (
        <>
          <div class="cards">
            <div class="card stat">
              <span class="stat-label">Runs</span>
              <span class="stat-value" data-testid="total-runs">{metrics.total_pipelines}</span>
              <span class="muted">{metrics.running} running</span>
            </div>
            <div class="card stat">
              <span class="stat-label">Success rate</span>
              <span class="stat-value">{charts.ended === 0 ? '—' : `${(metrics.success_rate * 100).toFixed(1)}%`}</span>
              <span class="muted">of {charts.ended} ended</span>
            </div>
            <div class="card stat">
              <span class="stat-label">Throughput</span>
              <span class="stat-value">{metrics.throughput_per_minute.toFixed(1)}</span>
              <span class="muted">runs / minute</span>
            </div>
            <div class="card stat">
              <span class="stat-label">p95 duration</span>
              <span class="stat-value">{formatDuration(metrics.p95_duration_ms)}</span>
              <span class="muted">p50 {formatDuration(metrics.p50_duration_ms)}</span>
            </div>
          </div>
          <div class="grid2">
            <div class="card">
              <h2>Throughput over time</h2>
              <p class="muted small">Of the last 1,000 runs, by status</p>
              <ChartCanvas config={charts.throughput} label="Ended runs over time, by status" />
            </div>
            <div class="card">
              <h2>Success rate</h2>
              <ChartCanvas config={charts.success} label={`Success rate ${(metrics.success_rate * 100).toFixed(1)}%`} />
            </div>
            <div class="card">
              <h2>Duration percentiles</h2>
              <ChartCanvas config={charts.durations} label="Mean, median and 95th percentile run duration in ms" />
            </div>
            <div class="card">
              <h2>Slowest steps</h2>
              <ChartCanvas config={charts.slowest} label="Steps with the highest mean duration" />
            </div>
            <div class="card">
              <h2>Failure reasons</h2>
              <FailureReasons reasons={metrics.failure_reasons} />
            </div>
            <div class="card">
              <h2>Busy hours</h2>
              <ChartCanvas config={charts.hours} label="Runs started per hour of the day" />
            </div>
          </div>
        </>
      )}
    </section>
  );
}
