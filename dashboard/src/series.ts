/** Time series the metrics page draws, built from tracked runs. Pure: no DOM. */
import { isEndedStatus, type PipelineStatus } from '../../src/tracking/models.js';

const BUCKETS = [60_000, 300_000, 900_000, 3_600_000, 6 * 3_600_000, 86_400_000];

/**
 * Ended runs per time bucket, by final status, from the first run's end to `now`: the
 * bucket is the smallest of 1 min, 5 min, 15 min, 1 h, 6 h, 1 day that gives at most
 * 60 buckets (a day past that).
 */
export function throughputSeries(runs: PipelineStatus[], now: number): { labels: string[]; series: Record<'COMPLETED' | 'FAILED' | 'CANCELLED', number[]>; bucketMs: number } {
  const ended = runs.filter((r) => r.completed_at !== null && isEndedStatus(r.status));
  const first = Math.min(now, ...ended.map((r) => Date.parse(r.completed_at as string)));
  const bucketMs = BUCKETS.find((b) => (now - first) / b <= 60) ?? 86_400_000;
  const start = Math.floor(first / bucketMs) * bucketMs;
  const n = Math.max(1, Math.floor((now - start) / bucketMs) + 1);
  const series = { COMPLETED: new Array<number>(n).fill(0), FAILED: new Array<number>(n).fill(0), CANCELLED: new Array<number>(n).fill(0) };
  for (const r of ended) {
    const i = Math.floor((Date.parse(r.completed_at as string) - start) / bucketMs);
    const s = series[r.status as keyof typeof series];
    if (i >= 0 && i < n) s[i] = (s[i] ?? 0) + 1;
  }
  const labels = Array.from({ length: n }, (_, i) => {
    const d = new Date(start + i * bucketMs);
    // Hour buckets and wider span days: their labels carry the date, so that no two read the same.
    if (bucketMs >= 86_400_000) return d.toLocaleDateString();
    if (bucketMs >= 3_600_000) return d.toLocaleString(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', hour12: false });
    return d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', hour12: false });
  });
  return { labels, series, bucketMs };
}

