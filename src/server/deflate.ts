/**
 * permessage-deflate (RFC 7692) for the WebSocket endpoint (seed 000 §9.4: "enable
 * permessage-deflate for large payloads"). Off by default: compression costs CPU per
 * per event compressed and makes frames smaller only for payloads that compress well
 * (docs/server.md, docs/benchmarks.md).
 */
import type { PerMessageDeflateOptions as WsDeflateOptions } from 'ws';
import { InvalidArgumentError } from '../core/errors.js';
import { checkKnownKeys, checkNonNegativeInt, show } from '../core/validate.js';

/** `perMessageDeflate` of the server: `false`, `true` (threshold 1024) or `{ threshold }`. */
export type PerMessageDeflateOption =
  | boolean
  | {
      /**
       * Messages of fewer bytes than this go uncompressed (0 compresses all).
       * @default 1024
       */
      threshold?: number;
    };

/** The threshold `true` stands for (ws's own default). */
export const DEFAULT_DEFLATE_THRESHOLD = 1024;

/**
 * Validates the option and gives what `ws`'s `WebSocketServer` takes: `false`, or the
 * extension's parameters with the threshold.
 *
 * @throws InvalidArgumentError naming the option and the value received.
 */
export function resolveDeflate(value: unknown): false | WsDeflateOptions {
  if (value === undefined || value === false) return false;
  // Without server context takeover each message compresses on its own: the same bytes for
  // every connection, so the server compresses an event once for all (ws-frames.ts), and
  // no connection keeps a zlib context.
  if (value === true) return { threshold: DEFAULT_DEFLATE_THRESHOLD, serverNoContextTakeover: true };
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidArgumentError(`perMessageDeflate must be false, true or { threshold }, received ${show(value)}`);
  }
  checkKnownKeys(value as Record<string, unknown>, ['threshold'], 'perMessageDeflate');
  const { threshold } = value as { threshold?: unknown };
  return { threshold: threshold === undefined ? DEFAULT_DEFLATE_THRESHOLD : checkNonNegativeInt(threshold, 'perMessageDeflate.threshold'), serverNoContextTakeover: true };
}
