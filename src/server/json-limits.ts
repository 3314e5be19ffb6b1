/**
 * Nesting depth of JSON text, measured before it is parsed: a body or message nested
 * thousands deep makes recursive code (validators, serialisers) overflow the stack, so
 * it is refused with a 400 / `bad_message` instead of becoming a 500.
 */

/** The deepest nesting a body or message may have. */
export const MAX_JSON_DEPTH = 32;

/** The nesting depth of `text` (0 for a scalar), counting only brackets outside strings; stops early past `limit`. */
export function jsonDepth(text: string, limit = MAX_JSON_DEPTH): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
      continue;
    }
    if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      depth++;
      if (depth > max) {
        max = depth;
        if (max > limit) return max;
      }
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
  return max;
}

/** The error message for text nested past {@link MAX_JSON_DEPTH}. */
export function tooDeepMessage(): string {
  return `JSON nested deeper than ${MAX_JSON_DEPTH} levels`;
}
