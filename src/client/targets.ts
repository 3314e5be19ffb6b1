import { InvalidArgumentError } from '../core/errors.js';
import { checkId, checkKnownKeys, checkNonNegativeInt, checkObject, show } from '../core/validate.js';
import { ALL_KEY, pipelineKey, runKey } from '../events/subscription.js';

/** A subscription target, checked and keyed. */
export interface Target {
  /** `all`, `p:<pipeline>`, `r:<run>` or `c:<channel>`. */
  key: string;
  /** For messages: `"demo"`, `"*"`, `{ runId: "…" }`. */
  label: string;
  message: { pipeline_id: string } | { run_id: string } | { channel: 'engine' };
  runId: string | null;
  since: number | undefined;
}

/** The server's URL: `ws(s)://`, or `http(s)://` taken as `ws(s)://`. */
export function parseUrl(value: unknown): URL {
  if (typeof value !== 'string' && !(value instanceof URL)) throw new InvalidArgumentError(`url must be a string or a URL, received ${show(value)}`);
  let url: URL;
  try {
    url = new URL(value instanceof URL ? value.href : value);
  } catch {
    throw new InvalidArgumentError(`url must be an absolute ws://, wss://, http:// or https:// URL, received ${show(value)}`);
  }
  if (url.protocol === 'http:') url.protocol = 'ws:';
  else if (url.protocol === 'https:') url.protocol = 'wss:';
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') throw new InvalidArgumentError(`url must use ws:// or wss:// (or http(s)://), received ${show(value)}`);
  return url;
}

/** The URL as people write it: `ws://host:8765`, without the lone `/` that `URL` adds. */
export function displayUrl(url: URL): string {
  return url.pathname === '/' && url.search === '' && url.hash === '' ? url.href.slice(0, -1) : url.href;
}

/** A pipeline id, `"*"`, `{ pipelineId }` or `{ runId, since? }`, checked. */
export function parseTarget(target: unknown, method: 'subscribe' | 'unsubscribe'): Target {
  if (target === '*') return { key: ALL_KEY, label: '"*"', message: { pipeline_id: '*' }, runId: null, since: undefined };
  if (typeof target === 'string') {
    const id = checkId(target, `${method}() pipeline id`);
    return { key: pipelineKey(id), label: `"${id}"`, message: { pipeline_id: id }, runId: null, since: undefined };
  }
  const obj = checkObject(target, `${method}() target`);
  if ('channel' in obj) {
    checkKnownKeys(obj, ['channel'], `${method}() target`);
    if (obj.channel !== 'engine') throw new InvalidArgumentError(`${method}() channel must be "engine", received ${show(obj.channel)}`);
    return { key: 'c:engine', label: '{ channel: "engine" }', message: { channel: 'engine' }, runId: null, since: undefined };
  }
  if ('pipelineId' in obj) {
    checkKnownKeys(obj, ['pipelineId'], `${method}() target`);
    return parseTarget(obj.pipelineId === '*' ? '*' : checkId(obj.pipelineId, `${method}() pipelineId`), method);
  }
  if (!('runId' in obj)) throw new InvalidArgumentError(`${method}() takes a pipeline id, "*", { pipelineId }, { runId, since? } or { channel: "engine" }, received ${show(target)}`);
  checkKnownKeys(obj, method === 'subscribe' ? ['runId', 'since'] : ['runId'], `${method}() target`);
  const runId = checkId(obj.runId, `${method}() runId`);
  const since = obj.since === undefined ? undefined : checkNonNegativeInt(obj.since, `${method}() since`);
  const label = `{ runId: "${runId}"${since === undefined ? '' : `, since: ${since}`} }`;
  return { key: runKey(runId), label, message: { run_id: runId }, runId, since };
}

/**
 * The arguments after the URL of `new PipelineMonitor(url, …)`: `(options?)`, or seed
 * 000 §4.1's `(pipelineId, options?)` whose pipeline (or `"*"`) is followed from the start.
 */
export function monitorArguments<O>(second: string | O | undefined, third: O | undefined): { target: Target | null; options: O | Record<string, never> } {
  if (typeof second === 'string') {
    const target = parseTarget(second === '*' ? '*' : checkId(second, 'PipelineMonitor(url, pipelineId): pipelineId'), 'subscribe');
    return { target, options: third ?? {} };
  }
  if (third !== undefined) throw new InvalidArgumentError(`PipelineMonitor(url, options): a third argument is taken only after a pipeline id, received ${show(third)}`);
  return { target: null, options: second ?? {} };
}
