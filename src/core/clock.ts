let lastMs = -1;
let lastIso = '';

/**
 * `new Date(ms).toISOString()`, cached for the last millisecond seen: events come in
 * bursts within one millisecond, and formatting dates is a measurable part of the
 * engine's cost per step.
 */
export function isoTime(ms: number = Date.now()): string {
  if (ms !== lastMs) {
    lastMs = ms;
    lastIso = new Date(ms).toISOString();
  }
  return lastIso;
}
