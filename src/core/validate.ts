import { InvalidArgumentError } from './errors.js';

/** Shared checks for option validation: each throws an error naming the option and the value received. */
/**
 * A value for an error message: JSON, cut to a short prefix (a message must never echo
 * back a megabyte it was sent).
 */
export function show(value: unknown): string {
  if (typeof value === 'string') return value.length > 80 ? `${JSON.stringify(value.slice(0, 64))}... (${value.length} characters)` : JSON.stringify(value);
  if (typeof value === 'function') return 'a function';
  if (value === undefined) return 'undefined';
  try {
    const s = JSON.stringify(value);
    return s.length > 80 ? `${s.slice(0, 77)}...` : s;
  } catch {
    return Object.prototype.toString.call(value);
  }
}

/** `value` if it is a non-empty string, else an InvalidArgumentError naming `name`. */
export function checkNonEmptyString(value: unknown, name: string): string {
  if (typeof value !== 'string' || value.length === 0) {
    throw new InvalidArgumentError(`${name} must be a non-empty string, received ${show(value)}`);
  }
  return value;
}

/** `value` if it is an id: 1-200 characters of letters, digits and `_ . : - / @`. */
export function checkId(value: unknown, name: string): string {
  checkNonEmptyString(value, name);
  const s = value as string;
  if (s.length > 200 || !/^[A-Za-z0-9_.:\-/@]+$/.test(s)) {
    throw new InvalidArgumentError(
      `${name} must be 1-200 characters of letters, digits and _ . : - / @, received ${show(value)}`,
    );
  }
  return s;
}

/** `value` if it is a finite number >= 0. */
export function checkNonNegativeNumber(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new InvalidArgumentError(`${name} must be a finite number >= 0, received ${show(value)}`);
  }
  return value;
}

/** `value` if it is a finite number > 0. */
export function checkPositiveNumber(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new InvalidArgumentError(`${name} must be a finite number > 0, received ${show(value)}`);
  }
  return value;
}

/** `value` if it is an integer >= 0. */
export function checkNonNegativeInt(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) {
    throw new InvalidArgumentError(`${name} must be an integer >= 0, received ${show(value)}`);
  }
  return value;
}

/** `value` if it is an integer >= 1. */
export function checkPositiveInt(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw new InvalidArgumentError(`${name} must be an integer >= 1, received ${show(value)}`);
  }
  return value;
}

/** `value` if it is one of `allowed`. */
export function checkOneOf<T extends string>(value: unknown, allowed: readonly T[], name: string): T {
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    throw new InvalidArgumentError(`${name} must be one of ${allowed.map((a) => `"${a}"`).join(', ')}, received ${show(value)}`);
  }
  return value as T;
}

/** `value` if it is a plain object (not null, not an array). */
export function checkObject(value: unknown, name: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidArgumentError(`${name} must be an object, received ${show(value)}`);
  }
  return value as Record<string, unknown>;
}

/** Rejects keys that the options type does not know, so typos are caught. */
export function checkKnownKeys(value: Record<string, unknown>, known: readonly string[], name: string): void {
  for (const key of Object.keys(value)) {
    if (!known.includes(key)) {
      throw new InvalidArgumentError(`${name} has an unknown option "${key}" (known: ${known.join(', ')})`);
    }
  }
}
