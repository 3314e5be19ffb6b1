/**
 * Parsers of command-line option values shared by the subcommands. Each throws
 * commander's `InvalidArgumentError`, which commander reports as a usage error (exit 2).
 */
import { InvalidArgumentError as UsageError } from 'commander';

/** A whole number >= 1. */
export function positiveInt(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < 1) throw new UsageError(`expected a whole number >= 1, received "${value}"`);
  return n;
}

/** A whole number >= 0. */
export function nonNegativeInt(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n)) throw new UsageError(`expected a whole number >= 0, received "${value}"`);
  return n;
}

/** A TCP port, 0-65535 (0: any free port). */
export function port(value: string): number {
  const n = nonNegativeInt(value);
  if (n > 65535) throw new UsageError(`expected a port 0-65535, received "${value}"`);
  return n;
}

/** A URL with one of `protocols` (e.g. `['ws:', 'wss:', 'http:', 'https:']`). */
export function urlWith(protocols: readonly string[]): (value: string) => string {
  const listed = protocols.map((p) => `${p}//`);
  const names = listed.length === 1 ? (listed[0] as string) : `${listed.slice(0, -1).join(', ')} or ${listed[listed.length - 1] as string}`;
  return (value: string): string => {
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      throw new UsageError(`expected a ${names} URL, received "${value}"`);
    }
    if (!protocols.includes(url.protocol)) throw new UsageError(`expected a ${names} URL, received "${value}"`);
    return value;
  };
}

/** Collects a repeatable option into an array. */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

const ID = /^[A-Za-z0-9_.:\-/@]{1,200}$/;

/** A pipeline or run id (or a run id's prefix): 1-200 letters, digits and `_ . : - / @`, as the server accepts. */
export function idOf(what: string): (value: string) => string {
  return (value: string): string => {
    if (!ID.test(value)) throw new UsageError(`${what} must be 1-200 letters, digits and _ . : - / @, received "${value}"`);
    return value;
  };
}

/** A time, as the server's `since` takes it: ISO 8601 (`2026-11-28`, `2026-11-28T10:00:00Z`) or epoch milliseconds. */
export function time(value: string): string {
  const d = /^\d{1,15}$/.test(value) ? new Date(Number(value)) : /^\d{4}-\d{2}-\d{2}/.test(value) ? new Date(value) : null;
  if (d === null || Number.isNaN(d.getTime())) throw new UsageError(`expected an ISO 8601 time (2026-11-28T10:00:00Z) or epoch milliseconds, received "${value}"`);
  return value;
}
