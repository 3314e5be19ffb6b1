/**
 * Failure reasons as a list of groups (see ../failure-groups.ts): each group's masked
 * message, wrapped (never clipped), a bar for its share and its count; a click on it
 * shows the raw messages behind it.
 */
import type { JSX } from 'preact';
import { groupFailureReasons } from '../failure-groups.js';

/** At most this many groups, largest first; the rest are summed on one line. */
const SHOWN = 10;

export function FailureReasons({ reasons }: { reasons: Record<string, number> }): JSX.Element {
  const groups = groupFailureReasons(reasons);
  if (groups.length === 0) return <p class="muted">No failures in this window.</p>;
  const shown = groups.slice(0, SHOWN);
  const rest = groups.slice(SHOWN).reduce((n, g) => n + g.count, 0);
  const max = Math.max(...shown.map((g) => g.count));
  return (
    <div class="reasons" aria-label="Failed runs per reason">
      {shown.map((g) => (
        <details class="reason" data-testid="failure-group" key={g.reason}>
          <summary title={`${g.count} failed run${g.count === 1 ? '' : 's'}; ${g.examples.length} distinct message${g.examples.length === 1 ? '' : 's'}: click to see them`}>
            <span class="reason-label">{g.reason}</span>
            <span class="reason-bar" aria-hidden="true">
              <span style={{ width: `${(100 * g.count) / max}%` }} />
            </span>
            <span class="reason-count">{g.count}</span>
          </summary>
          <ul class="reason-examples">
            {g.examples.map((e) => (
              <li key={e.message}>
                <code class="reason-example">{e.message}</code>
                <span class="muted small"> × {e.count}</span>
              </li>
            ))}
          </ul>
        </details>
      ))}
      {rest > 0 && <p class="muted small">{rest} more failed runs in {groups.length - SHOWN} other groups</p>}
      <p class="muted small">Failed runs per reason; numbers, ids and quoted values masked. Click a reason for its messages.</p>
    </div>
  );
}
