/** Status badges and progress bars: the status is always written out, never colour alone. */
import type { JSX } from 'preact';
import { pct } from '../format.js';

const ICONS: Record<string, string> = {
  PENDING: '○',
  QUEUED: '⧗',
  RUNNING: '▶',
  RETRYING: '↻',
  COMPLETED: '✓',
  FAILED: '✕',
  CANCELLED: '⊘',
  SKIPPED: '↷',
};

export const LABELS: Record<string, string> = {
  PENDING: 'Pending',
  QUEUED: 'Queued',
  RUNNING: 'Running',
  RETRYING: 'Retrying',
  COMPLETED: 'Completed',
  FAILED: 'Failed',
  CANCELLED: 'Cancelled',
  SKIPPED: 'Skipped',
};

export function StatusBadge({ status }: { status: string }): JSX.Element {
  return (
    <span class={`badge s-${status.toLowerCase()}`} data-status={status}>
      <span aria-hidden="true">{ICONS[status] ?? '•'}</span> {LABELS[status] ?? status}
    </span>
  );
}

export function Progress({ value, label }: { value: number; label: string }): JSX.Element {
  return (
    <span class="progress">
      <progress max={1} value={value} aria-label={label} />
      <span class="progress-text">{pct(value)}</span>
    </span>
  );
}
