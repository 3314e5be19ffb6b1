/**
 * The contract every EventTransport keeps (memory now, Redis next): seq assignment,
 * the one-terminal-event rule, retention reporting, and live fan-out per channel.
 * Usage: `eventTransportConformance('memory', () => new InMemoryTransport({...}))`.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { EventDraft, FlowcastEvent } from '../../src/events/types.js';
import { ErrorCodes } from '../../src/core/errors.js';
import type { EventTransport } from '../../src/transport/transport.js';
import { InMemoryTransport } from '../../src/transport/memory-transport.js';

export interface TransportFactoryOptions {
  /** Events kept per run: the suite asks for 5 to test trimming. */
  maxEventsPerRun?: number;
  /** Markers kept per run stream: the suite asks for 3 to test trimming. */
  runStreamLength?: number;
}

let counter = 0;

function draftFor(runId: string, pipelineId: string, type: 'log' | 'start' | 'end' = 'log'): EventDraft {
  const base = { pipeline_id: pipelineId, run_id: runId, timestamp: new Date().toISOString() };
  if (type === 'start') {
    return { type: 'PipelineStartEvent', ...base, pipeline_type: 'sequential', input: null, steps: [] };
  }
  if (type === 'end') {
    return { type: 'PipelineCompleteEvent', ...base, pipeline_type: 'sequential', status: 'COMPLETED', duration_ms: 1, result: null };
  }
  return { type: 'StepLogEvent', ...base, step_name: 's', step_index: 0, task_id: 't', attempt: 1, lines: [`line ${counter++}`] };
}

export function eventTransportConformance(
  name: string,
  make: (options: TransportFactoryOptions) => Promise<EventTransport> | EventTransport,
): void {
  describe(`EventTransport conformance: ${name}`, () => {
    const opened: EventTransport[] = [];
    const open = async (options: TransportFactoryOptions = {}): Promise<EventTransport> => {
      const t = await make(options);
      opened.push(t);
      return t;
    };
    afterEach(async () => {
      await Promise.all(opened.splice(0).map((t) => t.close()));
    });

    describe('#append', () => {
      it('gives each run its own gapless seq from 1, with v and a unique event_id', async () => {
        const t = await open();
        const a: FlowcastEvent[] = [];
        const b: FlowcastEvent[] = [];
        for (let i = 0; i < 5; i++) {
          a.push((await t.append(draftFor('run-a', 'p')))!);
          b.push((await t.append(draftFor('run-b', 'p')))!);
        }
        expect(a.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5]);
        expect(b.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5]);
        expect(a.every((e) => e.v === 1)).toBe(true);
        expect(new Set([...a, ...b].map((e) => e.event_id)).size).toBe(10);
      });

      it('assigns distinct seqs to concurrent appends of one run', async () => {
        const t = await open();
        const events = await Promise.all(Array.from({ length: 50 }, () => t.append(draftFor('run-c', 'p'))));
        expect(events.map((e) => e!.seq).sort((x, y) => x - y)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
      });

      it('refuses every event after a terminal one', async () => {
        const t = await open();
        await t.append(draftFor('run-d', 'p', 'start'));
        const end = await t.append(draftFor('run-d', 'p', 'end'));
        expect(end?.seq).toBe(2);
        expect(await t.append(draftFor('run-d', 'p'))).toBeNull();
        expect(await t.append(draftFor('run-d', 'p', 'end'))).toBeNull();
        const read = await t.read('run-d');
        expect(read.events.map((e) => e.type)).toEqual(['PipelineStartEvent', 'PipelineCompleteEvent']);
        expect(read.ended).toBe(true);
      });
    });

    describe('#read', () => {
      it('returns the events after `since`, with first_seq and last_seq', async () => {
        const t = await open();
        for (let i = 0; i < 6; i++) await t.append(draftFor('run-e', 'p'));
        const all = await t.read('run-e');
        expect(all.events.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6]);
        expect(all).toMatchObject({ first_seq: 1, last_seq: 6, complete: true, ended: false });
        const tail = await t.read('run-e', { since: 4 });
        expect(tail.events.map((e) => e.seq)).toEqual([5, 6]);
        const limited = await t.read('run-e', { since: 1, limit: 2 });
        expect(limited.events.map((e) => e.seq)).toEqual([2, 3]);
        const none = await t.read('run-e', { since: 6 });
        expect(none.events).toEqual([]);
      });

      it('says when retention trimmed what was asked for', async () => {
        const t = await open({ maxEventsPerRun: 5 });
        for (let i = 0; i < 12; i++) await t.append(draftFor('run-f', 'p'));
        const read = await t.read('run-f');
        expect(read.complete).toBe(false);
        expect(read.first_seq).toBe(8);
        expect(read.last_seq).toBe(12);
        expect(read.events.map((e) => e.seq)).toEqual([8, 9, 10, 11, 12]);
        const fromHeld = await t.read('run-f', { since: 7 });
        expect(fromHeld.complete).toBe(true);
        expect(fromHeld.events).toHaveLength(5);
      });

      it('answers an unknown run with an empty log', async () => {
        const t = await open();
        const read = await t.read('nobody');
        expect(read).toMatchObject({ events: [], first_seq: 0, last_seq: 0, ended: false });
      });
    });

    describe('#runs (run streams)', () => {
      it('marks each run start before its first event and its end after its terminal event, per pipeline and in "*", at gapless offsets', async () => {
        const t = await open();
        const runs = t.runs;
        if (runs === undefined) throw new Error(`${name}: the transport has no run streams`);
        const live: string[] = [];
        const off = runs.subscribe('pipe-m', (m) => live.push(`${m.offset} ${m.kind} ${m.run_id}`));
        await t.subscribed?.();
        const before = await runs.read('pipe-m');
        expect(before).toMatchObject({ markers: [], last_offset: 0, first_offset: 1 });
        expect(typeof before.epoch).toBe('string');
        expect(before.epoch).toBe(await t.epoch?.());
        await t.append(draftFor('run-m1', 'pipe-m', 'start'));
        await t.append(draftFor('run-m2', 'pipe-m', 'start'));
        await t.append(draftFor('run-m1', 'pipe-m'));
        await t.append(draftFor('run-m1', 'pipe-m', 'end'));
        await t.append(draftFor('run-o', 'other', 'start'));
        const mine = await runs.read('pipe-m');
        // The end marker of run-m1 may be written just after its append resolves: wait for it.
        for (let i = 0; i < 200 && (await runs.read('pipe-m')).last_offset < 3; i++) await new Promise((r) => setTimeout(r, 10));
        const all = await runs.read('pipe-m');
        expect(all.markers.map((m) => [m.offset, m.kind, m.run_id, m.pipeline_id])).toEqual([
          [1, 'start', 'run-m1', 'pipe-m'],
          [2, 'start', 'run-m2', 'pipe-m'],
          [3, 'end', 'run-m1', 'pipe-m'],
        ]);
        expect(all).toMatchObject({ first_offset: 1, last_offset: 3 });
        expect(mine.markers.length).toBeGreaterThanOrEqual(2);
        expect((await runs.read('pipe-m', { after: 1, limit: 1 })).markers.map((m) => m.offset)).toEqual([2]);
        expect((await runs.read('pipe-m', { after: 3 })).markers).toEqual([]);
        for (let i = 0; i < 200 && (await runs.read('*')).last_offset < 4; i++) await new Promise((r) => setTimeout(r, 10));
        const every = await runs.read('*');
        expect(every.markers.map((m) => `${m.kind} ${m.run_id}`)).toEqual(['start run-m1', 'start run-m2', 'end run-m1', 'start run-o']);
        expect(every.markers.map((m) => m.offset)).toEqual([1, 2, 3, 4]);
        for (let i = 0; i < 200 && live.length < 3; i++) await new Promise((r) => setTimeout(r, 10));
        expect(live).toEqual(['1 start run-m1', '2 start run-m2', '3 end run-m1']);
        off();
        await expect(Promise.resolve().then(() => runs.read('not a pipeline id'))).rejects.toThrow(/stream/);
      });

      it('trims each stream to its length and says from which offset it holds', async () => {
        const t = await open({ runStreamLength: 3 });
        for (let i = 0; i < 5; i++) await t.append(draftFor(`run-t${i}`, 'pipe-t', 'start'));
        const read = await t.runs!.read('pipe-t');
        expect(read).toMatchObject({ first_offset: 3, last_offset: 5 });
        expect(read.markers.map((m) => m.run_id)).toEqual(['run-t2', 'run-t3', 'run-t4']);
      });
    });

    describe('#subscribe / #publish', () => {
      it('delivers to run, pipeline and wildcard channels, and stops after the disposer', async () => {
        const t = await open();
        const byRun: number[] = [];
        const byPipeline: string[] = [];
        const all: string[] = [];
        const offRun = t.subscribe({ runId: 'run-g' }, (e) => byRun.push(e.seq));
        t.subscribe({ pipelineId: 'pipe-g' }, (e) => byPipeline.push(e.run_id));
        t.subscribe('*', (e) => all.push(e.run_id));
        const e1 = (await t.append(draftFor('run-g', 'pipe-g')))!;
        const e2 = (await t.append(draftFor('run-h', 'other')))!;
        await t.publish(e1);
        await t.publish(e2);
        offRun();
        const e3 = (await t.append(draftFor('run-g', 'pipe-g')))!;
        await t.publish(e3);
        await new Promise((r) => setTimeout(r, 50));
        expect(byRun).toEqual([1]);
        expect(byPipeline).toEqual(['run-g', 'run-g']);
        expect(all).toEqual(['run-g', 'run-h', 'run-g']);
      });

      it('keeps delivering to others when a listener throws', async () => {
        const t = await open();
        const seen: number[] = [];
        t.subscribe('*', () => {
          throw new Error('listener bug');
        });
        t.subscribe('*', (e) => seen.push(e.seq));
        const e = (await t.append(draftFor('run-i', 'p')))!;
        await t.publish(e);
        await new Promise((r) => setTimeout(r, 50));
        expect(seen).toEqual([1]);
      });
    });

    describe('bad arguments', () => {
      // The same mistake gets the same error, with the same message, from every transport.
      it('refuses a bad listener, channel, since or limit with InvalidArgumentError and one message', async () => {
        const t = await open();
        const fn = (): undefined => undefined;
        expect(() => t.subscribe('*', 'f' as never)).toThrow(expect.objectContaining({ code: ErrorCodes.INVALID_ARGUMENT, message: 'subscribe(channel, listener): listener must be a function, received "f"' }) as Error);
        expect(() => t.subscribe('all' as never, fn)).toThrow(expect.objectContaining({ code: ErrorCodes.INVALID_ARGUMENT, message: 'subscribe(channel): channel must be "*", { runId } or { pipelineId }, received "all"' }) as Error);
        expect(() => t.subscribe({ runId: '' }, fn)).toThrow(expect.objectContaining({ code: ErrorCodes.INVALID_ARGUMENT, message: 'subscribe(channel): runId must be a non-empty string, received ""' }) as Error);
        expect(() => t.subscribe({ pipelineId: 'a b' }, fn)).toThrow(/^subscribe\(channel\): pipelineId must be 1-200 characters/);
        await expect(t.read('r', { since: -1 })).rejects.toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT, message: 'read(runId, options): since must be a finite number >= 0, received -1' });
        await expect(t.read('r', { limit: 0 })).rejects.toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT, message: 'read(runId, options): limit must be an integer >= 1, received 0' });
      });
    });

    describe('#ingest', () => {
      it('stores events of another log under their own seq (gaps allowed), once, never after the end, and publishes them', async () => {
        const t = await open();
        expect(typeof t.ingest).toBe('function');
        const ingest = (e: FlowcastEvent): Promise<boolean> => Promise.resolve(t.ingest!(e));
        const got: number[] = [];
        t.subscribe({ pipelineId: 'pipe-j' }, (e) => got.push(e.seq));
        await t.subscribed?.();
        const source = new InMemoryTransport();
        const [e1, e2, e3, e4] = [draftFor('run-j', 'pipe-j', 'start'), draftFor('run-j', 'pipe-j'), draftFor('run-j', 'pipe-j'), draftFor('run-j', 'pipe-j', 'end')].map((d) => source.appendSync(d)!) as [FlowcastEvent, FlowcastEvent, FlowcastEvent, FlowcastEvent];
        // e2 filtered out upstream: the log gets a gap.
        expect(await ingest(e1)).toBe(true);
        expect(await ingest(e3)).toBe(true);
        expect(await ingest(e3)).toBe(false);
        expect(await ingest(e2)).toBe(false);
        expect(await ingest(e4)).toBe(true);
        expect(await ingest({ ...e2, seq: 9 })).toBe(false);
        const read = await t.read('run-j');
        expect(read.events.map((e) => [e.seq, e.event_id])).toEqual([e1, e3, e4].map((e) => [e.seq, e.event_id]));
        expect(read).toMatchObject({ first_seq: 1, last_seq: 4, ended: true });
        const deadline = Date.now() + 5000;
        while (got.length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
        expect(got).toEqual([1, 3, 4]);
      });
    });
  });
}
