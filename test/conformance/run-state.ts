/**
 * The contract every RunStateStore keeps (memory now, Redis next): atomic transitions
 * whose events land in the run's log in the same step, copies on read, NOT_FOUND for
 * unknown runs. Usage: `runStateConformance('memory', () => ({ store, transport }))`.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCodes } from '../../src/core/errors.js';
import type { PipelinePlan } from '../../src/pipeline/plan.js';
import type { RunStateStore } from '../../src/pipeline/run-state.js';
import { beginRun, cancelRun, newRunRecord } from '../../src/pipeline/transitions.js';
import type { EventTransport } from '../../src/transport/transport.js';

export interface RunStateFixture {
  store: RunStateStore;
  transport: EventTransport;
  close?: () => Promise<void>;
}

const plan: PipelinePlan = {
  pipeline_id: 'conformance',
  pipeline_type: 'sequential',
  failure_policy: 'fail_fast',
  steps: [
    { name: 'a', index: 0, kind: 'call', tasks: ['t'], depends_on: [], retries: 0, retry_delay_ms: 0, backoff: 'fixed' },
    { name: 'b', index: 1, kind: 'call', tasks: ['t'], depends_on: ['a'], retries: 0, retry_delay_ms: 0, backoff: 'fixed' },
  ],
};

let n = 0;

export function runStateConformance(name: string, make: () => Promise<RunStateFixture> | RunStateFixture): void {
  describe(`RunStateStore conformance: ${name}`, () => {
    const fixtures: RunStateFixture[] = [];
    const open = async (): Promise<RunStateFixture> => {
      const f = await make();
      fixtures.push(f);
      return f;
    };
    afterEach(async () => {
      for (const f of fixtures.splice(0)) {
        await f.store.close();
        await f.transport.close();
        await f.close?.();
      }
    });

    const started = async (f: RunStateFixture): Promise<string> => {
      const runId = `run-${n++}-${Date.now()}`;
      const rec = newRunRecord(runId, plan, { x: 1 }, Date.now());
      const { events } = beginRun(rec, Date.now());
      const appended = await f.store.create(rec, events);
      expect(appended.map((e) => [e.type, e.seq])).toEqual([['PipelineStartEvent', 1]]);
      return runId;
    };

    it('#create stores the run and appends its first events', async () => {
      const f = await open();
      const runId = await started(f);
      const rec = await f.store.get(runId);
      expect(rec?.status).toBe('RUNNING');
      expect(rec?.steps.a?.phase).toBe('ACTIVE');
      expect(rec?.inflight).toBe(1);
      expect((await f.transport.read(runId)).last_seq).toBe(1);
    });

    it('#get returns a copy and #getSummary the outcome', async () => {
      const f = await open();
      const runId = await started(f);
      const copy = await f.store.get(runId);
      copy!.status = 'FAILED';
      expect((await f.store.get(runId))?.status).toBe('RUNNING');
      expect(await f.store.getSummary(runId)).toEqual({ run_id: runId, pipeline_id: 'conformance', status: 'RUNNING', result: null, error: null });
      expect(await f.store.get('missing')).toBeNull();
      expect(await f.store.getSummary('missing')).toBeNull();
    });

    it('#transition applies the change and appends its events with the next seqs', async () => {
      const f = await open();
      const runId = await started(f);
      const first = await f.store.transition(runId, (r) => cancelRun(r, 'stop', Date.now()));
      expect(first.value).toBe(true);
      // Step a was sent but never started, step b never became ready: both never ran.
      expect(first.events.map((e) => [e.type, e.seq])).toEqual([
        ['StepSkipEvent', 2],
        ['StepSkipEvent', 3],
        ['PipelineCancelledEvent', 4],
      ]);
      const second = await f.store.transition(runId, (r) => cancelRun(r, 'again', Date.now()));
      expect(second).toEqual({ value: false, events: [] });
      expect((await f.store.getSummary(runId))?.status).toBe('CANCELLED');
    });

    it('#transition is atomic under concurrency: each sees the previous one', async () => {
      const f = await open();
      const runId = await started(f);
      const seen = await Promise.all(
        Array.from({ length: 20 }, () =>
          f.store.transition(runId, (r) => {
            r.inflight += 1;
            return { value: r.inflight, events: [] };
          }),
        ),
      );
      expect(seen.map((s) => s.value).sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i + 2));
    });

    it('#transition rejects an unknown run with NOT_FOUND', async () => {
      const f = await open();
      await expect(f.store.transition('missing', () => ({ value: 1, events: [] }))).rejects.toMatchObject({ code: ErrorCodes.NOT_FOUND });
    });
  });
}
