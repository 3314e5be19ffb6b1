/**
 * `new PipelineMonitor(...)`'s arguments, checked (fail closed: a malformed option is
 * refused with the option's name) and resolved into the connection's settings.
 */
import { InvalidArgumentError } from '../core/errors.js';
import { checkKnownKeys, checkObject, checkOneOf, checkPositiveInt, show } from '../core/validate.js';
import type { EventType } from '../events/types.js';
import { resolveReconnect } from './backoff.js';
import { PROTOCOL_SAFE, type ConnectionSettings } from './connection.js';
import { monitorArguments, parseUrl, type Target } from './targets.js';
import type { PipelineMonitorOptions, WebSocketConstructor } from './types.js';

const KNOWN_OPTIONS = ['token', 'WebSocket', 'reconnect', 'protocols', 'eventTypes', 'lateJoin', 'connectTimeoutMs', 'rateLimit', 'maxRuns'] as const;

/** What the monitor is made of, from its constructor's arguments. */
export interface ResolvedMonitorOptions {
  /** The seed form's pipeline (`new PipelineMonitor(url, pipelineId)`), else `null`. */
  target: Target | null;
  settings: ConnectionSettings;
  eventTypes: readonly EventType[] | undefined;
  lateJoin: 'snapshot' | 'replay';
  maxRuns: number;
}

/** Checks and resolves `new PipelineMonitor(url, second, third)`'s arguments. */
export function resolveMonitorOptions(
  url: string | URL | readonly (string | URL)[],
  second: string | PipelineMonitorOptions | undefined,
  third: PipelineMonitorOptions | undefined,
): ResolvedMonitorOptions {
  const { target, options } = monitorArguments<PipelineMonitorOptions>(second, third);
  const urls = Array.isArray(url) ? (url as readonly (string | URL)[]) : [url as string | URL];
  if (urls.length === 0 || urls.length > 100) throw new InvalidArgumentError(`PipelineMonitor needs 1-100 server URLs, received ${show(url)}`);
  const parsed = urls.map((u) => parseUrl(u));
  checkKnownKeys(checkObject(options, 'PipelineMonitor options'), KNOWN_OPTIONS, 'PipelineMonitor options');
  const { token } = options;
  if (token !== undefined && typeof token !== 'function' && (typeof token !== 'string' || token === '')) {
    throw new InvalidArgumentError(`token must be a non-empty string or a function returning one, received ${show(token)}`);
  }
  if (options.WebSocket !== undefined && typeof options.WebSocket !== 'function') {
    throw new InvalidArgumentError(`WebSocket must be a WebSocket class, received ${show(options.WebSocket)}`);
  }
  // Without one here (Node 20), the connection loads the `ws` package at its first attempt.
  const global = (globalThis as { WebSocket?: unknown }).WebSocket;
  const WebSocketClass = options.WebSocket ?? (typeof global === 'function' ? (global as WebSocketConstructor) : null);
  const protocols = options.protocols ?? [];
  if (!Array.isArray(protocols) || protocols.some((p) => typeof p !== 'string' || !PROTOCOL_SAFE.test(p))) {
    throw new InvalidArgumentError(`protocols must be an array of subprotocol names, received ${show(protocols)}`);
  }
  const types = options.eventTypes;
  if (types !== undefined) {
    if (!Array.isArray(types) || types.length === 0 || types.some((t) => typeof t !== 'string' || !/^[A-Za-z]+Event$/.test(t))) {
      throw new InvalidArgumentError(`eventTypes must be a non-empty array of event type names, received ${show(types)}`);
    }
  }
  const lateJoin = checkOneOf(options.lateJoin ?? 'snapshot', ['snapshot', 'replay'], 'lateJoin');
  const rate = checkObject(options.rateLimit ?? {}, 'rateLimit');
  checkKnownKeys(rate, ['messagesPerSecond', 'burst'], 'rateLimit');
  const maxRuns = checkPositiveInt(options.maxRuns ?? 10_000, 'maxRuns');
  const settings: ConnectionSettings = {
    urls: parsed,
    token,
    WebSocket: WebSocketClass,
    reconnect: resolveReconnect(options.reconnect),
    protocols,
    connectTimeoutMs: checkPositiveInt(options.connectTimeoutMs ?? 10_000, 'connectTimeoutMs'),
    rate: {
      messagesPerSecond: checkPositiveInt(rate.messagesPerSecond ?? 40, 'rateLimit.messagesPerSecond'),
      burst: checkPositiveInt(rate.burst ?? 80, 'rateLimit.burst'),
    },
  };
  return { target, settings, eventTypes: types === undefined ? undefined : [...new Set(types)], lateJoin, maxRuns };
}
