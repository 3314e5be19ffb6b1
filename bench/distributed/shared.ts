/**
 * What the distributed bench's processes share: the IPC peer the orchestrator drives its
 * children with, the pipelines and tasks every process registers, and small helpers.
 */
import type { Broker } from '../../src/pipeline/broker.js';
import type { TaskContext } from '../../src/core/task.js';
import { Pipeline } from '../../src/pipeline/pipeline.js';
import { PIPELINE_ID, nowUs } from '../fanout/shared.js';

/** The pipeline of no-op steps of the throughput part. */
export const NOOP_PIPELINE = 'bench_distributed';
/** The pipeline whose one step emits log events (the fan-out clients follow this id). */
export const EMIT_PIPELINE = PIPELINE_ID;
/** BullMQ queue name of the raw BullMQ side (its own queue, same Redis and prefix). */
export const RAW_QUEUE = 'bench_raw';

/** What a worker child reports: completions so far and when the last one happened. */
export interface CountReport {
  /** Raw: jobs completed. Flowcast: runs completed (PipelineCompleteEvent seen here). */
  completed: number;
  /** Flowcast: steps completed (StepCompleteEvent seen here); raw: same as `completed`. */
  steps: number;
  /** Events the hooks saw (flowcast). */
  events: number;
  /** System-wide monotonic µs of the last completion (0 when none). */
  lastUs: number;
}

/** Input of the `bench.emit` task: `rate` 0 emits `events` log lines as fast as the worker goes. */
export type EmitInput = {
  events: number;
  /** Events per second, or 0 for a burst. */
  rate: number;
};

/** The same pipeline, attached to hooks only (`--untracked`). */
export const UNTRACKED_PIPELINE = 'bench_distributed_untracked';

/**
 * Two sequential pipelines of `steps` no-op steps (the task returns its input): `tracked`
 * and `untracked` (ids {@link NOOP_PIPELINE}, {@link UNTRACKED_PIPELINE}); the caller
 * attaches hooks and tracking.
 */
export function noopPipelines(broker: Broker, steps: number): { tracked: Pipeline<number, number>; untracked: Pipeline<number, number> } {
  const noop = broker.task('bench.noop', (n: number) => n);
  const make = (id: string): Pipeline<number, number> => {
    let p = new Pipeline<number, number>(broker, { id });
    for (let i = 0; i < steps; i++) p = p.callNext<number>(noop);
    return p;
  };
  return { tracked: make(NOOP_PIPELINE), untracked: make(UNTRACKED_PIPELINE) };
}

const yieldTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * One log line whose first characters are the emit time in µs (system-wide monotonic
 * clock): the fan-out clients read it for latency without parsing the event.
 */
function emitLine(ctx: TaskContext, i: number): void {
  ctx.log(`${nowUs()} batch ${i}: 500 rows ok`);
}

/** A one-step pipeline whose task writes log lines (burst, or paced at `rate` per second) through `ctx.log`. */
export function emitPipeline(broker: Broker): Pipeline<EmitInput, number> {
  const emit = broker.task('bench.emit', async (input: EmitInput, ctx) => {
    const { events, rate } = input;
    let sent = 0;
    if (rate === 0) {
      // 10 events back to back, then a turn of the event loop (as the fan-out bench does).
      while (sent < events) {
        const n = Math.min(10, events - sent);
        for (let i = 0; i < n; i++) emitLine(ctx, sent++);
        await yieldTurn();
      }
      return sent;
    }
    const startUs = nowUs();
    while (sent < events) {
      const due = Math.min(events, Math.floor(((nowUs() - startUs) * rate) / 1e6) + 1);
      while (sent < due) emitLine(ctx, sent++);
      if (sent < events) await sleep(1);
    }
    return sent;
  });
  return new Pipeline<EmitInput, number>(broker, { id: EMIT_PIPELINE }).callNext<number>(emit);
}

/** Events a run of the emit pipeline sends besides its log lines: pipeline started, step started, step complete, pipeline complete. */
export const EMIT_LIFECYCLE_EVENTS = 4;

/** The pipeline of the memory part (goal 7): runs of a known shape. */
export const MEMORY_PIPELINE = 'bench_memory';

/**
 * A sequential pipeline of `steps` steps whose task writes `lines` log lines
 * (`ctx.log`, one line each, about 40 bytes) and returns its input: runs of a known
 * shape for the memory part.
 */
export function memoryPipeline(broker: Broker, steps: number, lines: number): Pipeline<number, number> {
  const task = broker.task('bench.memory', (n: number, ctx) => {
    for (let i = 0; i < lines; i++) ctx.log(`batch ${i} of run input ${n}: 500 rows ok`);
    return n;
  });
  let p = new Pipeline<number, number>(broker, { id: MEMORY_PIPELINE });
  for (let i = 0; i < steps; i++) p = p.callNext<number>(task);
  return p;
}
