/**
 * The contract every Broker keeps (in-memory now, BullMQ next): task registration,
 * standalone calls, delayed jobs, the run processor, and close().
 * Usage: `brokerConformance('memory', () => new InMemoryBroker())`.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCodes } from '../../src/core/errors.js';
import type { Broker, BrokerJob, StepJob } from '../../src/pipeline/broker.js';

let seq = 0;
const unique = (stem: string): string => `${stem}_${process.pid}_${seq++}`;

function stepJob(jobId: string): StepJob {
  return { kind: 'step', job_id: jobId, run_id: 'r', pipeline_id: 'p', step: 's', step_index: 0, task: 't', attempt: 1, input: null };
}

export function brokerConformance(name: string, make: () => Promise<Broker> | Broker): void {
  describe(`Broker conformance: ${name}`, () => {
    const opened: Broker[] = [];
    const open = async (): Promise<Broker> => {
      const b = await make();
      opened.push(b);
      return b;
    };
    afterEach(async () => {
      await Promise.all(opened.splice(0).map((b) => b.close()));
    });

    it('#task registers a typed task whose kiq() result can be awaited', async () => {
      const broker = await open();
      const n = unique('double');
      const double = broker.task(n, (x: number) => x * 2);
      expect(double.taskName).toBe(n);
      expect(broker.getTask(n)?.name).toBe(n);
      expect(broker.taskNames()).toContain(n);
      const handle = await double.kiq(21);
      expect(typeof handle.taskId).toBe('string');
      await expect(handle.waitResult({ timeoutMs: 10_000 })).resolves.toBe(42);
    });

    it('#task refuses a second task with the same name', async () => {
      const broker = await open();
      const n = unique('dup');
      broker.task(n, () => 1);
      expect(() => broker.task(n, () => 2)).toThrow(expect.objectContaining({ code: ErrorCodes.DUPLICATE_TASK }) as Error);
    });

    it('kiq() refuses non-JSON input at the call', async () => {
      const broker = await open();
      const t = broker.task(unique('json'), (x: unknown) => x as number);
      await expect(t.kiq({ when: new Date() } as never)).rejects.toMatchObject({ code: ErrorCodes.NOT_JSON });
      await expect(t.kiq((() => 1) as never)).rejects.toMatchObject({ code: ErrorCodes.NOT_JSON });
    });

    it('waitResult() rejects with the task error, and after its own timeout', async () => {
      const broker = await open();
      const bad = broker.task(unique('bad'), () => {
        throw new Error('nope');
      });
      await expect((await bad.kiq(null)).waitResult({ timeoutMs: 10_000 })).rejects.toThrow('nope');
      const slow = broker.task(unique('slow'), () => new Promise<number>((r) => setTimeout(() => r(1), 400)));
      await expect((await slow.kiq(null)).waitResult({ timeoutMs: 20 })).rejects.toMatchObject({ code: ErrorCodes.WAIT_TIMEOUT });
    });

    it('delivers run jobs to the run processor, delayed ones after their delay, and drops removed ones', async () => {
      const broker = await open();
      const seen: string[] = [];
      let done!: () => void;
      const finished = new Promise<void>((r) => (done = r));
      broker.setRunProcessor((job: BrokerJob) => {
        seen.push(job.job_id);
        if (seen.length === 2) done();
        return Promise.resolve(null);
      });
      // A delay long enough that 'now' is certainly enqueued and run first, on a busy machine too.
      await broker.enqueue(stepJob('later'), { delayMs: 1_000 });
      await broker.enqueue(stepJob('removed'), { delayMs: 1_000 });
      await broker.removeDelayed('removed');
      await broker.enqueue(stepJob('now'));
      await finished;
      // 'removed' was due with 'later': give it time to show up, were it not removed.
      await new Promise((r) => setTimeout(r, 300));
      expect(seen).toEqual(['now', 'later']);
    });

    it('#close is idempotent and refuses new jobs', async () => {
      const broker = await open();
      await broker.close();
      await broker.close();
      await expect(broker.enqueue(stepJob('x'))).rejects.toMatchObject({ code: ErrorCodes.CLOSED });
    });
  });
}
