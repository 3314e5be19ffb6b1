/**
 * Server-Sent Events (`GET /api/events`, issue 3 item 1): the WebSocket stream over plain
 * HTTP, read here with fetch streaming as a script (or an EventSource) would. Events carry
 * `id: <run_id>:<seq>`; a client that reconnects with `Last-Event-ID` resumes that run
 * exactly: no gap, no duplicate. Same auth rules as the WebSocket.
 */
import { describe, expect, it } from 'vitest';
import type { FlowcastEvent } from '../src/index.js';
import { logHolds, onCleanup, startFixture, type Fixture } from './helpers/server-fixture.js';
import { seqs } from './helpers/ws-client.js';

/** One SSE message: its fields as sent. */
interface SseMessage {
  id?: string;
  event?: string;
  data: string;
}

/** An open SSE stream: every message so far, comments counted, waits bounded by a timeout. */
class SseStream {
  readonly messages: SseMessage[] = [];
  comments = 0;
  retry: number | null = null;
  ended = false;
  readonly #abort: AbortController;
  readonly #wakers = new Set<() => void>();

  constructor(
    readonly response: Response,
    abort: AbortController,
  ) {
    this.#abort = abort;
    void this.#read();
  }

  async #read(): Promise<void> {
    const body = this.response.body;
    if (body === null) return;
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          this.#block(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
        this.#wake();
      }
    } catch {
      // Aborted by the test.
    }
    this.ended = true;
    this.#wake();
  }

  #block(block: string): void {
    const message: SseMessage = { data: '' };
    let data: string[] | null = null;
    for (const line of block.split('\n')) {
      if (line.startsWith(':')) {
        this.comments++;
        continue;
      }
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'data') (data ??= []).push(value);
      else if (field === 'id') message.id = value;
      else if (field === 'event') message.event = value;
      else if (field === 'retry') this.retry = Number(value);
    }
    if (data === null) return;
    message.data = data.join('\n');
    this.messages.push(message);
  }

  #wake(): void {
    for (const w of [...this.#wakers]) w();
  }

  /** The run events received (messages without an `event:` field), parsed. */
  events(runId?: string): FlowcastEvent[] {
    return this.messages
      .filter((m) => m.event === undefined)
      .map((m) => JSON.parse(m.data) as FlowcastEvent)
      .filter((e) => runId === undefined || e.run_id === runId);
  }

  /** The control messages (`event: control`), parsed. */
  controls(type?: string): Record<string, unknown>[] {
    return this.messages
      .filter((m) => m.event === 'control')
      .map((m) => JSON.parse(m.data) as Record<string, unknown>)
      .filter((c) => type === undefined || c.type === type);
  }

  /** The id of the last event received. */
  lastEventId(): string | undefined {
    return this.messages.filter((m) => m.id !== undefined).at(-1)?.id;
  }

  until(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
    if (condition()) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const check = (): void => {
        if (condition()) {
          clearTimeout(timer);
          this.#wakers.delete(check);
          resolve();
        } else if (this.ended) {
          clearTimeout(timer);
          this.#wakers.delete(check);
          reject(new Error(`${what}: the stream ended first; got ${this.messages.length} messages`));
        }
      };
      const timer = setTimeout(() => {
        this.#wakers.delete(check);
        reject(new Error(`${what} did not happen within ${timeoutMs}ms; got ${this.messages.length} messages`));
      }, timeoutMs);
      this.#wakers.add(check);
    });
  }

  /** Resolves once the run's terminal event arrived. */
  untilEnd(runId: string): Promise<void> {
    return this.until(() => this.events(runId).some((e) => e.type === 'PipelineCompleteEvent' || e.type === 'PipelineErrorEvent' || e.type === 'PipelineCancelledEvent'), `the end of run ${runId}`);
  }

  /** Drops the connection, as a network failure or a closed tab would. */
  close(): void {
    this.#abort.abort();
  }
}

/** Opens `GET /api/events?<query>`; the stream is closed after the test. */
async function openSse(f: Fixture, query: string, headers: Record<string, string> = {}): Promise<SseStream> {
  const abort = new AbortController();
  const response = await fetch(`${f.server.httpUrl}/api/events?${query}`, { headers: { accept: 'text/event-stream', ...headers }, signal: abort.signal });
  const stream = new SseStream(response, abort);
  onCleanup(() => stream.close());
  return stream;
}

describe('GET /api/events', () => {
  it('streams a pipeline\'s runs as text/event-stream: id <run_id>:<seq>, data the event as on the WebSocket', async () => {
    const f = await startFixture();
    const sse = await openSse(f, 'pipeline_id=alpha');
    expect(sse.response.status).toBe(200);
    expect(sse.response.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expect(sse.response.headers.get('cache-control')).toContain('no-cache');
    await sse.until(() => sse.controls('subscribed').length === 1, 'subscribed');
    expect(sse.controls('subscribed')[0]).toMatchObject({ type: 'subscribed', pipeline_id: 'alpha' });
    const runId = await f.runToEnd(f.alpha);
    await sse.untilEnd(runId);
    const log = await f.log(runId);
    expect(sse.events(runId)).toEqual(log);
    expect(sse.messages.filter((m) => m.event === undefined).map((m) => m.id)).toEqual(log.map((e) => `${runId}:${e.seq}`));
    expect(sse.retry).toBeGreaterThan(0);
  });

  it('"*" and event_types', async () => {
    const f = await startFixture();
    const all = await openSse(f, 'pipeline_id=*');
    const ends = await openSse(f, 'pipeline_id=*&event_types=PipelineCompleteEvent,PipelineStartEvent');
    for (const s of [all, ends]) await s.until(() => s.controls('subscribed').length === 1, 'subscribed');
    const a = await f.runToEnd(f.alpha);
    const b = await f.runToEnd(f.beta);
    for (const runId of [a, b]) {
      await all.untilEnd(runId);
      await ends.untilEnd(runId);
      expect(all.events(runId)).toEqual(await f.log(runId));
      expect(ends.events(runId).map((e) => e.type)).toEqual(['PipelineStartEvent', 'PipelineCompleteEvent']);
    }
  });

  it('a late joiner gets the snapshot (event: control), then the events after its last_seq', async () => {
    const f = await startFixture();
    const run = await f.startGated({ key: 'k', phases: [4, 4] });
    await logHolds(f, run.runId, 6);
    const sse = await openSse(f, 'pipeline_id=gated');
    await sse.until(() => sse.controls('snapshot').length === 1, 'the snapshot');
    expect(sse.controls('snapshot')[0]).toMatchObject({ run_id: run.runId, last_seq: 6 });
    f.open('k', 0);
    await run.waitResult({ timeoutMs: 10_000 });
    await sse.untilEnd(run.runId);
    expect(sse.events(run.runId)).toEqual((await f.log(run.runId)).slice(6));
  });

  it('run_id with since replays from the log, then follows live', async () => {
    const f = await startFixture();
    const run = await f.startGated({ key: 'k', phases: [5, 5] });
    await logHolds(f, run.runId, 7);
    const sse = await openSse(f, `run_id=${run.runId}&since=2`);
    await sse.until(() => sse.controls('replay_complete').length === 1, 'replay_complete');
    f.open('k', 0);
    await run.waitResult({ timeoutMs: 10_000 });
    await sse.untilEnd(run.runId);
    expect(sse.events(run.runId)).toEqual((await f.log(run.runId)).slice(2));
  });

  it('Last-Event-ID resumes a run exactly after a dropped connection (run_id stream)', async () => {
    const f = await startFixture();
    const run = await f.startGated({ key: 'k', phases: [3, 7, 5] });
    const first = await openSse(f, `run_id=${run.runId}&since=0`);
    await first.until(() => first.events(run.runId).length === 5, 'five events');
    f.open('k', 0);
    await first.until(() => first.events(run.runId).length === 12, 'twelve events');
    const lastId = first.lastEventId();
    expect(lastId).toBe(`${run.runId}:12`);
    first.close();
    f.open('k', 1);
    await run.waitResult({ timeoutMs: 10_000 });
    // An EventSource sends the id of the last event it saw; the query is the one it was opened with.
    const second = await openSse(f, `run_id=${run.runId}&since=0`, { 'last-event-id': lastId as string });
    await second.untilEnd(run.runId);
    const log = await f.log(run.runId);
    expect(seqs(second.events(run.runId))).toEqual(seqs(log).slice(12));
    expect([...first.events(run.runId), ...second.events(run.runId)]).toEqual(log);
  });

  it('Last-Event-ID resumes a run exactly on a pipeline stream, and later runs follow', async () => {
    const f = await startFixture();
    const run = await f.startGated({ key: 'k', phases: [2, 6, 2] });
    await logHolds(f, run.runId, 4);
    const first = await openSse(f, 'pipeline_id=gated');
    await first.until(() => first.controls('snapshot').length === 1, 'the snapshot');
    f.open('k', 0);
    await first.until(() => first.events(run.runId).length === 6, 'six events');
    const lastId = first.lastEventId() as string;
    first.close();
    f.open('k', 1);
    await logHolds(f, run.runId, 16);
    const second = await openSse(f, 'pipeline_id=gated', { 'last-event-id': lastId });
    await second.until(() => second.controls('replay_complete').length === 1, 'replay_complete');
    const next = await f.startGated({ key: 'n', phases: [1] });
    await Promise.all([run.waitResult({ timeoutMs: 10_000 }), next.waitResult({ timeoutMs: 10_000 })]);
    await second.untilEnd(run.runId);
    await second.untilEnd(next.runId);
    const log = await f.log(run.runId);
    expect([...first.events(run.runId), ...second.events(run.runId)]).toEqual(log.slice(4));
    expect(second.events(next.runId)).toEqual(await f.log(next.runId));
  });

  it('answers 400 with a JSON error for bad parameters', async () => {
    const f = await startFixture();
    for (const query of ['', 'pipeline_id=a&run_id=b', 'pipeline_id=alpha&since=3', 'run_id=r&since=-1', 'run_id=r&since=x', 'pipeline_id=alpha&event_types=Nope', 'pipeline_id=alpha&event_types=']) {
      const res = await fetch(`${f.server.httpUrl}/api/events?${query}`);
      expect(res.status, query).toBe(400);
      expect(((await res.json()) as { error: { code: string } }).error.code, query).toBe('bad_request');
    }
  });

  it('with auth: 401 without a valid token, 403 for a forbidden pipeline, and "*" carries only readable pipelines', async () => {
    const f = await startFixture({ server: { auth: { apiKeys: { all: { id: 'all' }, alpha: { id: 'a', pipelines: ['alpha'] } } } } });
    expect((await fetch(`${f.server.httpUrl}/api/events?pipeline_id=alpha`)).status).toBe(401);
    expect((await fetch(`${f.server.httpUrl}/api/events?pipeline_id=alpha&token=nope`)).status).toBe(401);
    const forbidden = await fetch(`${f.server.httpUrl}/api/events?pipeline_id=beta&token=alpha`);
    expect(forbidden.status).toBe(403);
    expect(((await forbidden.json()) as { error: { code: string } }).error.code).toBe('forbidden');
    const limited = await openSse(f, 'pipeline_id=*', { authorization: 'Bearer alpha' });
    const full = await openSse(f, 'pipeline_id=*&token=all');
    for (const s of [limited, full]) await s.until(() => s.controls('subscribed').length === 1, 'subscribed');
    const betaRuns: string[] = [];
    for (let i = 0; i < 5; i++) betaRuns.push(await f.runToEnd(f.beta, i));
    const alphaRun = await f.runToEnd(f.alpha);
    for (const runId of betaRuns) await full.untilEnd(runId);
    await limited.untilEnd(alphaRun);
    expect(limited.events(alphaRun)).toEqual(await f.log(alphaRun));
    expect(limited.events().filter((e) => e.pipeline_id === 'beta')).toEqual([]);
    expect(full.events().filter((e) => e.pipeline_id === 'beta')).toHaveLength(30);
  });

  it('server.close() ends the open streams and resolves', async () => {
    const f = await startFixture();
    const sse = await openSse(f, 'pipeline_id=*');
    await sse.until(() => sse.controls('subscribed').length === 1, 'subscribed');
    await f.server.close();
    await sse.until(() => sse.ended, 'the end of the stream');
  });
});
