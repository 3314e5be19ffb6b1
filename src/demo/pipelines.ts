import { setTimeout as sleep } from 'node:timers/promises';
import { Type } from '@sinclair/typebox';
import type { Broker } from '../pipeline/broker.js';
import type { TaskContext } from '../core/task.js';
import type { EventDispatcher, EventRecorder } from '../pipeline/engine.js';
import type { RunHandle } from '../pipeline/base.js';
import { Pipeline } from '../pipeline/pipeline.js';
import { DataflowPipeline } from '../pipeline/dataflow.js';

/** One pipeline of the demo, ready to start runs with fresh inputs. */
export interface DemoPipeline {
  /** The pipeline id every event of its runs carries, e.g. `"etl_dag"`. */
  readonly id: string;
  /** One line saying what the pipeline shows. */
  readonly description: string;
  /** Starts one run with a freshly made input. */
  start(): Promise<RunHandle>;
}

/** The demo pipelines, in the order a runner takes turns over them. */
export interface Demo {
  readonly pipelines: readonly DemoPipeline[];
  /**
   * Every pipeline of the demo, to give a server (`getWebSocketServer({ pipelines })`) so
   * its REST API and dashboard can start them with any input: the runner's five and
   * `tail_task`, which only people start.
   */
  readonly startable: readonly (Pipeline | DataflowPipeline)[];
}

/** The ids of the demo pipelines a runner takes turns over. */
export const DEMO_PIPELINE_IDS = ['demo_workflow', 'etl_dag', 'flaky_retry', 'always_fails', 'log_progress'] as const;

/** The demo pipeline started on demand only: seed 003's long task, one run at a time. */
export const DEMO_TAIL_TASK_ID = 'tail_task';

const SourceSchema = (source: string, count: number, maxCount: number) =>
  Type.Object(
    {
      source: Type.String({ minLength: 1, maxLength: 200, default: source, description: 'Where the records come from' }),
      count: Type.Integer({ minimum: 1, maximum: maxCount, default: count, description: 'How many records' }),
    },
    { additionalProperties: false },
  );

/** The input of `tail_task`. */
type TailInput = { messages: number; interval_ms?: number; level?: 'info' | 'warn'; timestamps?: boolean };

const TailSchema = Type.Object(
  {
    messages: Type.Integer({ minimum: 1, maximum: 200, default: 20, description: 'Log lines to write' }),
    interval_ms: Type.Optional(Type.Integer({ minimum: 50, maximum: 10_000, default: 1000, description: 'Pause before each line, in ms' })),
    level: Type.Optional(Type.Union([Type.Literal('info'), Type.Literal('warn')], { default: 'info', description: 'Prefix of each line' })),
    timestamps: Type.Optional(Type.Boolean({ default: false, description: 'Start each line with the time' })),
  },
  { additionalProperties: false },
);

type Source = { source: string; count: number };
type Row = { id: number; name: string; score: number };
type GradedRow = { id: number; name: string; score: number; grade: string };
type User = { id: number; name: string };
type Order = { id: number; user_id: number; amount: number };
type UserTotal = { user: string; orders: number; amount: number };

const NAMES = ['ada', 'linus', 'grace', 'ken', 'barbara', 'dennis', 'margaret', 'guido', 'bjarne', 'radia'];

function between(min: number, max: number): number {
  return Math.round(min + Math.random() * (max - min));
}

/** Waits 100-600ms (or the given bounds); rejects at once when the run is cancelled. */
async function work(ctx: TaskContext, min = 100, max = 600): Promise<void> {
  await sleep(between(min, max), undefined, { signal: ctx.signal });
}

function pick<T>(list: readonly T[], i: number): T {
  return list[i % list.length] as T;
}

/**
 * Registers the demo's tasks on `broker` and builds its five pipelines, attached to
 * `hooks` (and to `tracking` when given):
 *
 * - `demo_workflow`: sequential fetch → map `transform` → filter `validate` → `save`;
 * - `etl_dag`: `extract_users` and `extract_orders` in parallel → `join` → `report`,
 *   plus an unconnected `audit` step;
 * - `flaky_retry`: its `charge` step fails on attempt 1 and succeeds on attempt 2;
 * - `always_fails`: fails for good at its middle step, `validate_schema`;
 * - `log_progress`: `crunch` writes ten log lines and progress 0.1 … 1.0 over ~2s;
 * - `tail_task` (started on demand, never by the runner): seed 003's long task, a
 *   `Task message i` log line per second (by default 20), at most one run at a time.
 *
 * Each has an input schema (TypeBox), so a server given `demo.startable` shows a form
 * for it and refuses a bad input.
 *
 * Every task sleeps with `ctx.signal`, so cancelling a run stops it at once. Task names
 * start with `demo.`; call this once per broker (task names are unique per broker).
 *
 * @example
 * const broker = new InMemoryBroker();
 * const hooks = new HookManager();
 * hooks.on('*', (e) => console.log(e.pipeline_id, e.type));
 * const demo = createDemo(broker, hooks);
 * for (const p of demo.pipelines) await p.start();
 */
export function createDemo(broker: Broker, hooks: EventDispatcher, tracking?: EventRecorder): Demo {
  const attach = <P extends Pipeline | DataflowPipeline>(p: P): P => {
    p.withHooks(hooks);
    if (tracking !== undefined) p.withTracking(tracking);
    return p;
  };

  // demo_workflow: sequential, with a map and a filter step whose bars fill item by item.
  const fetchRecords = broker.task<Source, Row[]>('demo.fetch_records', async (input, ctx) => {
    await work(ctx);
    const offset = between(0, NAMES.length);
    const rows = Array.from({ length: input.count }, (_, i) => ({ id: i + 1, name: pick(NAMES, offset + i), score: between(0, 100) }));
    ctx.log(`fetched ${rows.length} records from ${input.source}`);
    return rows;
  });
  const transform = broker.task<Row, GradedRow>('demo.transform_record', async (row, ctx) => {
    await work(ctx);
    return { ...row, grade: row.score >= 50 ? 'pass' : 'retake' };
  });
  const validate = broker.task<GradedRow, boolean>('demo.validate_record', async (row, ctx) => {
    await work(ctx, 100, 300);
    return row.score >= 20;
  });
  const save = broker.task<{ table: string; rows: GradedRow[] }, { table: string; saved: number }>('demo.save_rows', async (input, ctx) => {
    await work(ctx);
    ctx.log(`saved ${input.rows.length} rows to ${input.table}`);
    return { table: input.table, saved: input.rows.length };
  });
  const workflow = attach(
    new Pipeline<Source>(broker, {
      id: 'demo_workflow',
      maxParallel: 3,
      description: 'Fetches records, grades each (map), keeps the valid ones (filter) and saves them',
      inputSchema: SourceSchema('https://example.com/scores.json', 8, 50),
    })
      .callNext(fetchRecords, { name: 'fetch' })
      .map(transform, { name: 'transform' })
      .filter(validate, { name: 'validate' })
      .callNext(save, { name: 'save', paramName: 'rows', args: { table: 'scores' } }),
  );

  // etl_dag: two extracts in parallel, a join, a report, and an audit nothing depends on.
  const extractUsers = broker.task<Source, User[]>('demo.extract_users', async (input, ctx) => {
    await work(ctx);
    const users = Array.from({ length: input.count }, (_, i) => ({ id: i + 1, name: pick(NAMES, i) }));
    ctx.log(`extracted ${users.length} users`);
    return users;
  });
  const extractOrders = broker.task<Source, Order[]>('demo.extract_orders', async (input, ctx) => {
    await work(ctx);
    const orders = Array.from({ length: input.count * 3 }, (_, i) => ({ id: i + 1, user_id: between(1, input.count), amount: between(5, 200) }));
    ctx.log(`extracted ${orders.length} orders`);
    return orders;
  });
  const join = broker.task<{ extract_users: User[]; extract_orders: Order[] }, UserTotal[]>('demo.join', async (input, ctx) => {
    await work(ctx);
    return input.extract_users.map((u) => {
      const mine = input.extract_orders.filter((o) => o.user_id === u.id);
      return { user: u.name, orders: mine.length, amount: mine.reduce((sum, o) => sum + o.amount, 0) };
    });
  });
  const report = broker.task<{ join: UserTotal[] }, { users: number; revenue: number; top: string }>('demo.report', async (input, ctx) => {
    await work(ctx);
    const totals = input.join;
    const top = totals.reduce<UserTotal | null>((best, t) => (best === null || t.amount > best.amount ? t : best), null);
    const revenue = totals.reduce((sum, t) => sum + t.amount, 0);
    ctx.log(`revenue ${revenue} across ${totals.length} users; top buyer ${top?.user ?? 'none'}`);
    return { users: totals.length, revenue, top: top?.user ?? 'none' };
  });
  const audit = broker.task<Source, { source: string; checked: boolean }>('demo.audit', async (input, ctx) => {
    await work(ctx, 300, 900);
    return { source: input.source, checked: true };
  });
  const etl = attach(
    new DataflowPipeline<Source>(broker, {
      id: 'etl_dag',
      description: 'Extracts users and orders in parallel, joins them and reports; an audit runs beside',
      inputSchema: SourceSchema('warehouse', 4, 20),
    })
      .step('extract_users', extractUsers)
      .step('extract_orders', extractOrders)
      .step('join', join, { dependsOn: ['extract_users', 'extract_orders'] })
      .step('report', report, { dependsOn: ['join'] })
      .step('audit', audit),
  );

  // flaky_retry: the middle step fails on its first attempt only.
  const reserve = broker.task<{ order: number }, { order: number; reserved: boolean }>('demo.reserve_stock', async (input, ctx) => {
    await work(ctx);
    return { order: input.order, reserved: true };
  });
  const charge = broker.task<{ order: number }, { order: number; charged: boolean }>('demo.charge_card', async (input, ctx) => {
    await work(ctx);
    if (ctx.attempt === 1) throw new Error(`payment gateway timed out for order ${input.order} (attempt ${ctx.attempt})`);
    ctx.log(`order ${input.order} charged on attempt ${ctx.attempt}`);
    return { order: input.order, charged: true };
  });
  const confirm = broker.task<{ order: number }, string>('demo.send_confirmation', async (input, ctx) => {
    await work(ctx);
    return `order ${input.order} confirmed`;
  });
  const flaky = attach(
    new Pipeline<{ order: number }>(broker, {
      id: 'flaky_retry',
      description: 'Charging the card fails on the first attempt and succeeds on the retry',
      inputSchema: Type.Object({ order: Type.Integer({ minimum: 1, default: 1001, description: 'Order number' }) }, { additionalProperties: false }),
    })
      .callNext(reserve, { name: 'reserve' })
      .callNext(charge, { name: 'charge', retries: 2, retryDelayMs: 300 })
      .callNext(confirm, { name: 'confirm' }),
  );

  // always_fails: the middle step fails for good; the last one is skipped.
  const load = broker.task<Source, Row[]>('demo.load_csv', async (input, ctx) => {
    await work(ctx);
    return Array.from({ length: input.count }, (_, i) => ({ id: i + 1, name: pick(NAMES, i), score: between(0, 100) }));
  });
  const validateSchema = broker.task<Row[], Row[]>('demo.validate_schema', async (rows, ctx) => {
    await work(ctx);
    throw new Error(`column "email" is missing in ${rows.length} of ${rows.length} rows`);
  });
  const publish = broker.task<Row[], number>('demo.publish', async (rows, ctx) => {
    await work(ctx);
    return rows.length;
  });
  const failing = attach(
    new Pipeline<Source>(broker, {
      id: 'always_fails',
      description: 'Fails for good at validate_schema; publish is skipped',
      inputSchema: SourceSchema('upload.csv', 5, 50),
    })
      .callNext(load, { name: 'load' })
      .callNext(validateSchema, { name: 'validate_schema' })
      .callNext(publish, { name: 'publish' }),
  );

  // log_progress: a long step that narrates itself.
  const crunch = broker.task<{ batches: number }, { batches: number; checksum: number }>('demo.crunch', async (input, ctx) => {
    let checksum = 0;
    for (let i = 1; i <= input.batches; i++) {
      await work(ctx, 150, 250);
      checksum = (checksum * 31 + between(0, 1000)) % 1_000_003;
      ctx.log(`batch ${i}/${input.batches} done, checksum ${checksum}`);
      ctx.progress(i / input.batches, `batch ${i}/${input.batches}`);
    }
    return { batches: input.batches, checksum };
  });
  const publishStats = broker.task<{ batches: number; checksum: number }, string>('demo.publish_stats', async (input, ctx) => {
    await work(ctx, 100, 300);
    ctx.log(`published checksum ${input.checksum}`);
    return `checksum ${input.checksum}`;
  });
  const narrated = attach(
    new Pipeline<{ batches: number }>(broker, {
      id: 'log_progress',
      description: 'A long step that writes a log line and its progress per batch',
      inputSchema: Type.Object({ batches: Type.Integer({ minimum: 1, maximum: 100, default: 10, description: 'Batches to crunch' }) }, { additionalProperties: false }),
    })
      .callNext(crunch, { name: 'crunch' })
      .callNext(publishStats, { name: 'publish_stats' }),
  );

  // tail_task: seed 003's long task, one at a time ("Task is already running").
  const tail = broker.task<TailInput, { messages: number }>('demo.tail', async (input, ctx) => {
    for (let i = 0; i < input.messages; i++) {
      await sleep(input.interval_ms ?? 1000, undefined, { signal: ctx.signal });
      const time = input.timestamps === true ? `${new Date().toISOString()} ` : '';
      ctx.log(`${time}[${input.level ?? 'info'}] Task message ${i}`);
      ctx.progress((i + 1) / input.messages);
    }
    return { messages: input.messages };
  });
  const tailTask = attach(
    new Pipeline<TailInput>(broker, {
      id: DEMO_TAIL_TASK_ID,
      description: 'Seed 003\'s long task: a log line a second; one run at a time',
      inputSchema: TailSchema,
      concurrency: { limit: 1 },
    }).callNext(tail, { name: 'tail' }),
  );

  let orders = 1000;
  const pipelines: DemoPipeline[] = [
    {
      id: workflow.pipelineId,
      description: 'sequential: fetch → map transform → filter validate → save',
      start: () => workflow.kiq({ source: 'https://example.com/scores.json', count: between(6, 10) }),
    },
    {
      id: etl.pipelineId,
      description: 'dataflow: extract_users + extract_orders → join → report, and audit',
      start: () => etl.kiq({ source: 'warehouse', count: between(3, 6) }),
    },
    {
      id: flaky.pipelineId,
      description: 'charge fails on attempt 1 and succeeds on the retry',
      start: () => flaky.kiq({ order: ++orders }),
    },
    {
      id: failing.pipelineId,
      description: 'fails for good at validate_schema; publish is skipped',
      start: () => failing.kiq({ source: 'upload.csv', count: between(3, 8) }),
    },
    {
      id: narrated.pipelineId,
      description: 'crunch writes ten log lines and progress over ~2s',
      start: () => narrated.kiq({ batches: 10 }),
    },
  ];
  return { pipelines, startable: [workflow, etl, flaky, failing, narrated, tailTask] };
}
