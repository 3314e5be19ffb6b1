/** The steps of a run as a timeline: one row per step, one bar per attempt (retries visible). */
import type { JSX } from 'preact';
import type { PipelineStatus } from '../../../src/tracking/models.js';
import { formatDuration } from '../format.js';
import type { Attempt } from '../run-model.js';
import { StatusBadge } from './Status.js';

const OUTCOME: Record<Attempt['outcome'], string> = {
  running: 'running',
  completed: 'completed',
  failed: 'failed',
  retried: 'failed, retried',
  cancelled: 'cancelled',
};

export function Gantt({ status, attempts, now }: { status: PipelineStatus; attempts: Attempt[]; now: number }): JSX.Element {
  const t0 = status.started_at === null ? (attempts[0]?.start ?? now) : Date.parse(status.started_at);
  const t1 = status.completed_at === null ? Math.max(now, ...attempts.map((a) => a.end ?? now)) : Date.parse(status.completed_at);
  const span = Math.max(1, t1 - t0);
  return (
    <div class="gantt" role="table" aria-label="Step timeline" data-testid="gantt">
      <div class="gantt-scale" aria-hidden="true">
        <span>0</span>
        <span>{formatDuration(span / 2)}</span>
        <span>{formatDuration(span)}</span>
      </div>
      {status.steps.map((step) => {
        const mine = attempts.filter((a) => a.step === step.step_name);
        return (
          <div class="gantt-row" role="row" key={step.step_name}>
            <div class="gantt-label" role="rowheader">
              <span class="ellipsis">{step.step_name}</span>
              <StatusBadge status={step.status} />
              {step.attempts > 1 && <span class="muted"> {step.attempts} attempts</span>}
            </div>
            <div class="gantt-track" role="cell">
              {mine.map((a, i) => {
                const left = ((a.start - t0) / span) * 100;
                const width = Math.max(0.6, (((a.end ?? now) - a.start) / span) * 100);
                const label = `${step.step_name} attempt ${a.attempt}: ${OUTCOME[a.outcome]}, ${formatDuration((a.end ?? now) - a.start)}${a.error === null ? '' : ` — ${a.error}`}`;
                return (
                  <span
                    key={i}
                    class={`bar o-${a.outcome}`}
                    style={{ left: `${Math.max(0, Math.min(100, left))}%`, width: `${Math.min(100 - Math.max(0, left), width)}%` }}
                    title={label}
                    aria-label={label}
                  >
                    {a.outcome === 'retried' ? '↻' : a.outcome === 'failed' ? '✕' : ''}
                  </span>
                );
              })}
              {step.status === 'SKIPPED' && <span class="muted small">skipped{step.skip_reason === null ? '' : `: ${step.skip_reason}`}</span>}
            </div>
            <div class="gantt-dur" role="cell">
              {formatDuration(step.duration_ms ?? (mine.at(-1)?.end === null && mine.length > 0 ? now - (mine.at(-1) as Attempt).start : null))}
            </div>
          </div>
        );
      })}
    </div>
  );
}
