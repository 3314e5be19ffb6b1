/**
 * The client SDK's pure parts: full-jitter backoff, option validation (every error names
 * the option and the value received), and the typed event map.
 */
import { describe, expect, expectTypeOf, it } from 'vitest';
import { WebSocket } from 'ws';
import { ErrorCodes, fullJitterDelay, PipelineMonitor, RECONNECT_DEFAULTS, type MonitorEventMap, type StateChange } from '../src/client/index.js';
import type { FlowcastEvent, PipelineErrorEvent, StepCompleteEvent, StepLogEvent } from '../src/index.js';

describe('fullJitterDelay', () => {
  const opts = { initialDelayMs: 500, maxDelayMs: 15_000 };

  it('draws from [0, initialDelayMs * 2^attempt), capped at maxDelayMs', () => {
    const top = (attempt: number): number => fullJitterDelay(attempt, opts, () => 0.999999);
    expect([0, 1, 2, 3, 4, 5, 6, 40].map(top)).toEqual([499, 999, 1999, 3999, 7999, 14999, 14999, 14999]);
    for (const attempt of [0, 3, 10]) expect(fullJitterDelay(attempt, opts, () => 0)).toBe(0);
    expect(fullJitterDelay(2, opts, () => 0.5)).toBe(1000);
  });

  it('spreads retries over the whole window (Math.random)', () => {
    const draws = Array.from({ length: 2000 }, () => fullJitterDelay(3, opts));
    expect(Math.min(...draws)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...draws)).toBeLessThan(4000);
    // Both halves of the window are used: it is not a fixed delay with a little noise.
    expect(draws.some((d) => d < 1000)).toBe(true);
    expect(draws.some((d) => d > 3000)).toBe(true);
  });

  it('rejects a negative or fractional attempt', () => {
    expect(() => fullJitterDelay(-1, opts)).toThrow('attempt must be an integer >= 0, received -1');
    expect(() => fullJitterDelay(1.5, opts)).toThrow('attempt must be an integer >= 0, received 1.5');
  });

  it('defaults: 500 ms doubling up to 15 s, forever, reset after 5 s open', () => {
    expect(RECONNECT_DEFAULTS).toEqual({ initialDelayMs: 500, maxDelayMs: 15_000, maxAttempts: Number.POSITIVE_INFINITY, stableAfterMs: 5000 });
  });
});

describe('new PipelineMonitor', () => {
  const make = (url: unknown, options: Record<string, unknown> = {}): PipelineMonitor =>
    new PipelineMonitor(url as string, { WebSocket, ...options });

  it.each([
    ['ftp://x', {}, 'url must use ws:// or wss:// (or http(s)://), received "ftp://x"'],
    ['localhost:8765/ws x', {}, 'url must'],
    [42, {}, 'url must be a string or a URL, received 42'],
    ['ws://x', { token: '' }, 'token must be a non-empty string or a function returning one, received ""'],
    ['ws://x', { token: 7 }, 'token must be a non-empty string or a function returning one, received 7'],
    ['ws://x', { WebSocket: 'ws' }, 'WebSocket must be a WebSocket class'],
    ['ws://x', { reconnect: { initialDelayMs: 0 } }, 'reconnect.initialDelayMs must be an integer >= 1, received 0'],
    ['ws://x', { reconnect: { initialDelayMs: 100, maxDelayMs: 50 } }, 'reconnect.maxDelayMs must be >= reconnect.initialDelayMs (100), received 50'],
    ['ws://x', { reconnect: { maxAttempts: 0 } }, 'reconnect.maxAttempts must be an integer >= 1, received 0'],
    ['ws://x', { reconnect: { delay: 1 } }, 'reconnect has an unknown option "delay"'],
    ['ws://x', { protocols: ['a b'] }, 'protocols must be an array of subprotocol names, received ["a b"]'],
    ['ws://x', { eventTypes: [] }, 'eventTypes must be a non-empty array of event type names, received []'],
    ['ws://x', { lateJoin: 'all' }, 'lateJoin must be one of "snapshot", "replay", received "all"'],
    ['ws://x', { connectTimeoutMs: -1 }, 'connectTimeoutMs must be an integer >= 1, received -1'],
    ['ws://x', { rateLimit: { burst: 0 } }, 'rateLimit.burst must be an integer >= 1, received 0'],
    ['ws://x', { maxRuns: 0.5 }, 'maxRuns must be an integer >= 1, received 0.5'],
    ['ws://x', { tokne: 'x' }, 'PipelineMonitor options has an unknown option "tokne"'],
  ])('%s %j → %s', (url, options, message) => {
    expect(() => make(url, options)).toThrow(message);
    try {
      make(url, options);
    } catch (error) {
      expect(error).toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT });
    }
  });

  it('takes http(s):// as ws(s)://, and needs no WebSocket class where there is no global one (the ws package is loaded at connect)', () => {
    expect(make('http://127.0.0.1:1/ws').url).toBe('ws://127.0.0.1:1/ws');
    expect(make('ws://127.0.0.1:1/').url).toBe('ws://127.0.0.1:1');
    expect(make(new URL('https://example.com')).url).toBe('wss://example.com');
    const global = globalThis as { WebSocket?: unknown };
    const saved = global.WebSocket;
    delete global.WebSocket;
    try {
      expect(new PipelineMonitor('ws://x').state).toBe('idle');
      global.WebSocket = WebSocket;
      expect(new PipelineMonitor('ws://x').state).toBe('idle');
    } finally {
      if (saved === undefined) delete global.WebSocket;
      else global.WebSocket = saved;
    }
  });

  it('checks subscribe targets, listeners and iterator options', () => {
    const m = make('ws://127.0.0.1:1');
    expect(() => m.subscribe('bad id!')).toThrow('subscribe() pipeline id must be 1-200 characters');
    expect(() => m.subscribe({ runId: 'r', since: -1 })).toThrow('subscribe() since must be an integer >= 0, received -1');
    expect(() => m.subscribe({ runId: 'r', sinse: 1 } as never)).toThrow('subscribe() target has an unknown option "sinse"');
    expect(() => m.subscribe({ run: 'r' } as never)).toThrow('subscribe() takes a pipeline id, "*", { pipelineId }, { runId, since? } or { channel: "engine" }, received {"run":"r"}');
    expect(() => m.unsubscribe({ runId: 'r', since: 1 })).toThrow('unsubscribe() target has an unknown option "since"');
    expect(() => m.on('*', 'f' as never)).toThrow('listener must be a function, received "f"');
    expect(() => m.events({ bufferSize: 0 })).toThrow('bufferSize must be an integer >= 1, received 0');
    expect(() => m.events({ signal: 'x' as never })).toThrow('signal must be an AbortSignal, received "x"');
    expect(() => m.ping({ timeoutMs: 0 })).toThrow('timeoutMs must be an integer >= 1, received 0');
  });
});

describe('types', () => {
  it('events({ types }) types the iterator by the types asked for (docs/client.md iterates StepCompleteEvents)', () => {
    const m = new PipelineMonitor('ws://127.0.0.1:1', { WebSocket });
    expectTypeOf(m.events({ types: ['StepCompleteEvent'] })).toEqualTypeOf<AsyncIterableIterator<StepCompleteEvent>>();
    expectTypeOf(m.events({ types: ['StepLogEvent', 'PipelineErrorEvent'] })).toEqualTypeOf<AsyncIterableIterator<StepLogEvent | PipelineErrorEvent>>();
    expectTypeOf(m.events()).toEqualTypeOf<AsyncIterableIterator<FlowcastEvent>>();
    // @ts-expect-error: not an event type
    m.events({ types: ['StepDone'] });
  });

  it('on() gives each listener its payload type', () => {
    expectTypeOf<MonitorEventMap['StepLogEvent']>().toEqualTypeOf<StepLogEvent>();
    expectTypeOf<MonitorEventMap['PipelineErrorEvent']>().toEqualTypeOf<PipelineErrorEvent>();
    expectTypeOf<MonitorEventMap['*']>().toEqualTypeOf<FlowcastEvent>();
    expectTypeOf<MonitorEventMap['state']>().toEqualTypeOf<StateChange>();
    expectTypeOf<PipelineMonitor['on']>().toBeFunction();
    const m = new PipelineMonitor('ws://127.0.0.1:1', { WebSocket });
    const off = m.on('StepLogEvent', (e) => expectTypeOf(e.lines).toEqualTypeOf<string[]>());
    expectTypeOf(off).toEqualTypeOf<() => void>();
    // @ts-expect-error: not an event name
    m.on('StepLog', () => undefined);
    m.on('StepLogEvent', (e) => {
      // @ts-expect-error: a StepLogEvent has no duration_ms
      void e.duration_ms;
    });
  });
});
