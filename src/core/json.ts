import { NotJsonError } from './errors.js';

/** A value that survives `JSON.stringify` / `JSON.parse` unchanged. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

const MAX_DEPTH = 100;

/**
 * Throws a {@link NotJsonError} naming the path of the first part of `value` that is not
 * JSON: functions, `undefined`, symbols, bigints, non-finite numbers, class instances
 * (Date, Map, Buffer...), cycles and nesting deeper than 100.
 */
export function assertJson(value: unknown, what: string): asserts value is JsonValue {
  check(value, what, '$', 0, undefined);
}

function check(value: unknown, what: string, path: string, depth: number, seen: Set<object> | undefined): void {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return;
    case 'number':
      if (!Number.isFinite(value)) throw new NotJsonError(what, path, `is ${String(value)}, not a finite number`);
      return;
    case 'object':
      break;
    default:
      throw new NotJsonError(what, path, `is a ${typeof value}`);
  }
  if (value === null) return;
  if (depth >= MAX_DEPTH) throw new NotJsonError(what, path, `is nested deeper than ${MAX_DEPTH} levels`);
  const set = seen ?? new Set<object>();
  if (set.has(value)) throw new NotJsonError(what, path, 'is a circular reference');
  set.add(value);
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) check(value[i], what, `${path}[${i}]`, depth + 1, set);
  } else {
    const proto: unknown = Object.getPrototypeOf(value);
    if (proto !== Object.prototype && proto !== null) {
      const name = (value as { constructor?: { name?: string } }).constructor?.name ?? 'unknown';
      throw new NotJsonError(what, path, `is a ${name} instance, not a plain object`);
    }
    for (const key of Object.keys(value)) {
      check((value as Record<string, unknown>)[key], what, `${path}.${key}`, depth + 1, set);
    }
  }
  set.delete(value);
}

/** `true` when `value` is JSON (see {@link assertJson}). */
export function isJson(value: unknown): value is JsonValue {
  try {
    assertJson(value, 'value');
    return true;
  } catch {
    return false;
  }
}
