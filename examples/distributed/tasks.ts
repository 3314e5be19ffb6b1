/**
 * The example's task module: `flowcast worker --tasks examples/distributed/tasks.ts` loads
 * it (its default export registers the tasks on the worker's broker), and the producer in
 * `start.ts` imports it too, to build the pipeline from the typed task handles.
 *
 * Each worker process is named by WORKER_NAME (start.ts sets worker-a and worker-b): the
 * squares say which worker computed them, so the run's result shows the work spread.
 */
import { Pipeline, PipelineTrackingManager, type Broker } from '../../src/index.js';

/** How long each task pretends to work, so the steps spread over both workers. */
const WORK_MS = Number(process.env.WORK_MS ?? 300);

const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => (clearTimeout(timer), reject(signal.reason as Error)), { once: true });
  });

/** A square, and the worker that computed it. */
export type Square = { value: number; worker: string };

/** Registers the tasks on `broker` and returns their handles. */
export function tasks(broker: Broker) {
  const worker = process.env.WORKER_NAME ?? `pid ${process.pid}`;
  return {
    fetchRows: broker.task('fetch_rows', async (n: number, ctx) => {
      ctx.log(`[${worker}] fetching ${n} rows`);
      await sleep(WORK_MS, ctx.signal);
      return Array.from({ length: n }, (_, i) => i + 1);
    }),
    square: broker.task('square', async (x: number, ctx): Promise<Square> => {
      ctx.log(`[${worker}] squaring ${x}`);
      await sleep(WORK_MS, ctx.signal);
      return { value: x * x, worker };
    }),
    summarize: broker.task('summarize', (squares: Square[], ctx) => {
      const byWorker: Record<string, number> = {};
      for (const s of squares) byWorker[s.worker] = (byWorker[s.worker] ?? 0) + 1;
      ctx.log(`[${worker}] ${squares.length} squares, by worker: ${JSON.stringify(byWorker)}`);
      return { sum: squares.reduce((total, s) => total + s.value, 0), by_worker: byWorker };
    }),
  };
}

/** The pipeline `squares`: rows, a square of each (one job per item, on any worker), a summary. */
export function squaresPipeline(broker: Broker, tracking: PipelineTrackingManager) {
  const t = tasks(broker);
  return new Pipeline(broker, { id: 'squares' }).callNext(t.fetchRows).map(t.square).callNext(t.summarize).withTracking(tracking);
}

/** What `flowcast worker --tasks` calls: the tasks, and the pipeline with tracking in Redis so every step shows up in it. */
export default function register(broker: Broker): void {
  squaresPipeline(broker, new PipelineTrackingManager().withAutoStorage(broker));
}
