/**
 * Failure reasons grouped by what they say, not by the values in them: "Timeout after
 * 120ms on job 3f2a9c1d-…" and "Timeout after 95ms on job 77b0e2aa-…" are one reason.
 * Quoted values, UUIDs, long hexadecimal ids, ids that mix letters and digits, and
 * numbers are masked; the raw messages stay with their group as examples.
 */

/** One group: the masked message, its total count, and the raw messages behind it (most frequent first). */
export interface FailureGroup {
  reason: string;
  count: number;
  examples: { message: string; count: number }[];
}

// A quote opens after a non-word character and closes before one: the apostrophes of
// "can't" and "user's" quote nothing.
const QUOTED = /(?<!\w)(?:"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|`[^`\n]*`)(?!\w)/g;
const UUID = /\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b/gi;
const HEX = /\b(?:0x)?[0-9a-f]*\d[0-9a-f]*\b/gi;
const MIXED = /\b(?=[A-Za-z_-]*\d)(?=[\d_-]*[A-Za-z])[A-Za-z0-9_-]{6,}\b/g;
const NUMBER = /[-+]?\b\d+(?:[.,]\d+)*(?:e[-+]?\d+)?/gi;

/** How flowcast words a run's failure: the step's name is kept (it tells reasons apart), the rest is masked. */
const STEP_PREFIX = /^(Pipeline failed at step '[^'\n]*': )([^]*)$/;

/**
 * The message with its variable parts masked: `"…"` for quoted values, `<id>` for ids,
 * `<n>` for numbers. The step name of flowcast's own "Pipeline failed at step 'x': "
 * prefix is kept.
 */
export function normaliseReason(message: string): string {
  const step = STEP_PREFIX.exec(message);
  if (step !== null) return `${step[1] as string}${mask(step[2] as string)}`;
  return mask(message);
}

function mask(message: string): string {
  return message
    .replace(QUOTED, (q) => `${q[0] as string}…${q[0] as string}`)
    .replace(UUID, '<id>')
    .replace(HEX, (h) => (h.length >= 8 && /[a-f]/i.test(h) ? '<id>' : h))
    // Two digits or more make an id, unless it is a number with a unit (`3000ms`).
    .replace(MIXED, (w) => (/\d.*\d/.test(w) && !/^\d+[A-Za-z]{1,4}$/.test(w) ? '<id>' : w))
    .replace(NUMBER, '<n>')
    .replace(/\s+/g, ' ')
    .trim();
}

/** `reasons` (message → count, as `/api/metrics` gives them) grouped by {@link normaliseReason}, largest group first. */
export function groupFailureReasons(reasons: Record<string, number>): FailureGroup[] {
  const groups = new Map<string, FailureGroup>();
  for (const [message, count] of Object.entries(reasons)) {
    const reason = normaliseReason(message);
    let group = groups.get(reason);
    if (group === undefined) {
      group = { reason, count: 0, examples: [] };
      groups.set(reason, group);
    }
    group.count += count;
    group.examples.push({ message, count });
  }
  const list = [...groups.values()];
  for (const g of list) g.examples.sort((a, b) => b.count - a.count || a.message.localeCompare(b.message));
  return list.sort((a, b) => b.count - a.count || a.reason.localeCompare(b.reason));
}
