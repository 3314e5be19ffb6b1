/**
 * Every cron feature on both brokers: an expression the scheduler accepts is one its
 * runtime runs (in process: the scheduler's timers; on Redis: BullMQ's job scheduler,
 * which must hold it at the time `nextRunAt` says, and fire it), and one it cannot run is
 * refused at `scheduleAt` with BAD_SCHEDULE — never accepted, listed, and silently idle.
 */
import { Queue } from 'bullmq';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCodes, FlowcastError } from '../src/core/errors.js';
import { InMemoryBroker } from '../src/pipeline/memory-broker.js';
import { BullMQBroker } from '../src/redis/bullmq-broker.js';
import { BULLMQ_QUEUES, bullmqPrefix } from '../src/redis/keys.js';
import { PipelineScheduler, type ScheduleContext } from '../src/scheduler/scheduler.js';
import { useRedisServer } from './helpers/redis.js';

const redis = useRedisServer();

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

const MINUTE = 60_000;
const DAY = 86_400_000;

interface Feature {
  feature: string;
  cron: string;
  timezone?: string;
  /** The day matches (UTC fields; `last` is the number of days in the month). */
  day: (d: { date: number; month: number; dow: number; last: number }) => boolean;
  /** The minute matches (UTC). */
  time: (h: number, m: number) => boolean;
  /** Second of the tick in its minute. @default 0 */
  second?: number;
}

const weekday = (dow: number): boolean => dow >= 1 && dow <= 5;
/** The weekday nearest to day `n` of a month starting on `firstDow` with `last` days (never leaving the month). */
function nearestWeekday(n: number, firstDow: number, last: number): number {
  const dow = (firstDow + n - 1) % 7;
  if (dow === 6) return n === 1 ? 3 : n - 1;
  if (dow === 0) return n === last ? n - 2 : n + 1;
  return n;
}

const ANY = (): boolean => true;
const AT = (hh: number, mm: number) => (h: number, m: number) => h === hh && m === mm;

const ACCEPTED: Feature[] = [
  { feature: 'ranges', cron: '0 9-17 * * 1-5', timezone: 'UTC', day: ({ dow }) => weekday(dow), time: (h, m) => m === 0 && h >= 9 && h <= 17 },
  { feature: 'steps', cron: '*/15 * * * *', timezone: 'UTC', day: ANY, time: (_h, m) => m % 15 === 0 },
  { feature: 'steps in a range', cron: '0 0 1-20/5 * *', timezone: 'UTC', day: ({ date }) => date <= 20 && (date - 1) % 5 === 0, time: AT(0, 0) },
  { feature: 'lists', cron: '30 6,18 1,15 * *', timezone: 'UTC', day: ({ date }) => date === 1 || date === 15, time: (h, m) => m === 30 && (h === 6 || h === 18) },
  { feature: 'month and day names', cron: '0 12 * JAN,JUL MON', timezone: 'UTC', day: ({ month, dow }) => (month === 0 || month === 6) && dow === 1, time: AT(12, 0) },
  { feature: 'L (last day of the month)', cron: '0 0 L * *', timezone: 'UTC', day: ({ date, last }) => date === last, time: AT(0, 0) },
  { feature: 'L in day of week (last Friday)', cron: '0 0 * * 5L', timezone: 'UTC', day: ({ date, dow, last }) => dow === 5 && date + 7 > last, time: AT(0, 0) },
  {
    feature: 'W (nearest weekday)',
    cron: '0 0 15W * *',
    timezone: 'UTC',
    day: ({ date, dow, last }) => date === nearestWeekday(15, (dow - ((date - 1) % 7) + 7) % 7, last),
    time: AT(0, 0),
  },
  { feature: 'LW (last weekday)', cron: '0 0 LW * *', timezone: 'UTC', day: ({ date, dow, last }) => weekday(dow) && [...Array(last - date).keys()].every((k) => !weekday((dow + k + 1) % 7)), time: AT(0, 0) },
  { feature: '# (second Monday)', cron: '0 0 * * 1#2', timezone: 'UTC', day: ({ date, dow }) => dow === 1 && Math.ceil(date / 7) === 2, time: AT(0, 0) },
  { feature: '? (no specific day)', cron: '0 8 ? * SUN', timezone: 'UTC', day: ({ dow }) => dow === 0, time: AT(8, 0) },
  { feature: '@yearly', cron: '@yearly', timezone: 'UTC', day: ({ date, month }) => date === 1 && month === 0, time: AT(0, 0) },
  { feature: '@annually', cron: '@annually', timezone: 'UTC', day: ({ date, month }) => date === 1 && month === 0, time: AT(0, 0) },
  { feature: '@monthly', cron: '@monthly', timezone: 'UTC', day: ({ date }) => date === 1, time: AT(0, 0) },
  { feature: '@weekly', cron: '@weekly', timezone: 'UTC', day: ({ dow }) => dow === 0, time: AT(0, 0) },
  { feature: '@daily', cron: '@daily', timezone: 'UTC', day: ANY, time: AT(0, 0) },
  { feature: '@midnight', cron: '@midnight', timezone: 'UTC', day: ANY, time: AT(0, 0) },
  { feature: '@hourly', cron: '@hourly', timezone: 'UTC', day: ANY, time: (_h, m) => m === 0 },
  { feature: 'seconds field', cron: '30 15 10 * * *', timezone: 'UTC', day: ANY, time: AT(10, 15), second: 30 },
  { feature: 'timezone (Asia/Kolkata, UTC+5:30)', cron: '0 9 * * *', timezone: 'Asia/Kolkata', day: ANY, time: AT(3, 30) },
];

/** The first tick of `f` strictly after `afterMs`, by brute force over the next two years (UTC). */
function expectedNext(f: Feature, afterMs: number): number {
  const start = Math.floor(afterMs / DAY) * DAY;
  for (let dayMs = start; dayMs < start + 800 * DAY; dayMs += DAY) {
    const d = new Date(dayMs);
    const last = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 0)).getUTCDate();
    if (!f.day({ date: d.getUTCDate(), month: d.getUTCMonth(), dow: d.getUTCDay(), last })) continue;
    for (let minute = 0; minute < 1440; minute++) {
      const tick = dayMs + minute * MINUTE + (f.second ?? 0) * 1000;
      if (tick > afterMs && f.time(Math.floor(minute / 60), minute % 60)) return tick;
    }
  }
  throw new Error(`no tick of ${f.cron} within 800 days`);
}

const REJECTED: { cron: string; timezone?: string; why: RegExp }[] = [
  { cron: '0 0 L-2 * *', why: /Invalid cron expression "0 0 L-2 \* \*"/ },
  { cron: '0 0 W * *', why: /Invalid cron expression/ },
  { cron: '@every 5m', why: /Invalid cron expression "@every 5m"/ },
  { cron: '@reboot', why: /Invalid cron expression "@reboot"/ },
  { cron: '* * * * * * *', why: /Invalid cron expression/ },
  { cron: '0 0 * * 8', why: /Invalid cron expression/ },
  { cron: 'H * * * *', why: /Invalid cron expression "H \* \* \* \*"/ },
  { cron: '0 0 31 2 *', why: /never fires/ },
  { cron: '0 0 * * *', timezone: 'Mars/Olympus', why: /Invalid timezone "Mars\/Olympus"/ },
];

interface Runtime {
  scheduler: PipelineScheduler;
  /** When the runtime itself will next fire schedule `id` (epoch ms), once the scheduler's store updates are done; `null` when it holds no such schedule. */
  heldAt: (id: string) => Promise<number | null>;
}

const runtimes: [string, () => Promise<Runtime>][] = [
  [
    'InMemoryBroker',
    () => {
      const broker = new InMemoryBroker();
      closers.push(() => broker.close());
      const scheduler = new PipelineScheduler(broker, { unrefTimers: true });
      closers.push(() => scheduler.close());
      // In process the scheduler's own timers run the schedule: nextRunAt is when it fires.
      return Promise.resolve({ scheduler, heldAt: (id: string) => Promise.resolve(scheduler.get(id)?.nextRunAt?.getTime() ?? null) });
    },
  ],
  [
    'BullMQBroker',
    async () => {
      const prefix = redis.prefix();
      const broker = new BullMQBroker({ connection: redis.url, keyPrefix: prefix, worker: false });
      closers.push(() => broker.close());
      await broker.waitUntilReady();
      const errors: string[] = [];
      const scheduler = new PipelineScheduler(broker, { onError: (e, info) => void errors.push(`${info.id}: ${e.message}`) });
      closers.push(() => scheduler.close());
      const queue = new Queue(BULLMQ_QUEUES.schedules, { connection: redis.connect(), prefix: bullmqPrefix(prefix) });
      closers.push(() => queue.close());
      return {
        scheduler,
        heldAt: async (id: string) => {
          // Close() waits for the store updates in flight; the schedules stay in BullMQ.
          await scheduler.close();
          expect(errors).toEqual([]);
          const held = await queue.getJobScheduler(id);
          return held?.next ?? null;
        },
      };
    },
  ],
];

describe.each(runtimes)('cron features on %s', (_name, make) => {
  it.each(ACCEPTED)('accepts $feature ($cron) and the runtime holds it for the tick nextRunAt shows', async (f) => {
    const rt = await make();
    const before = Date.now();
    const info = rt.scheduler.scheduleAt(() => undefined, { id: 'feature', cron: f.cron, ...(f.timezone !== undefined && { timezone: f.timezone }) });
    const after = Date.now();
    const next = info.nextRunAt?.getTime() ?? null;
    // A tick boundary may pass between the two reads: either side is right.
    expect([expectedNext(f, before), expectedNext(f, after)]).toContain(next);
    expect(await rt.heldAt('feature')).toBe(next);
  });

  it.each(REJECTED)('refuses $cron (timezone $timezone) at scheduleAt with BAD_SCHEDULE, and keeps nothing', async ({ cron, timezone, why }) => {
    const rt = await make();
    let error: unknown = null;
    try {
      rt.scheduler.scheduleAt(() => undefined, { id: 'refused', cron, ...(timezone !== undefined && { timezone }) });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(FlowcastError);
    expect((error as FlowcastError).code).toBe(ErrorCodes.BAD_SCHEDULE);
    expect((error as Error).message).toMatch(why);
    expect(rt.scheduler.list()).toEqual([]);
    expect(await rt.heldAt('refused')).toBeNull();
  });

  it('fires second-level ranges, steps, lists and a timezone, on whole-second ticks that match', async () => {
    const rt = await make();
    const fired = new Map<string, number[]>();
    let wake: () => void = () => undefined;
    const record = (ctx: ScheduleContext): void => {
      fired.set(ctx.scheduleId, [...(fired.get(ctx.scheduleId) ?? []), ctx.scheduledAt.getTime()]);
      wake();
    };
    const specs = [
      { id: 'range-tz', cron: '0-59 * * * * *', timezone: 'Asia/Tokyo' },
      { id: 'step', cron: '*/2 * * * * *' },
      { id: 'list', cron: '0-29,30-59 * * * * *' },
    ];
    for (const s of specs) rt.scheduler.scheduleAt(record, s);
    await new Promise<void>((resolve) => {
      wake = () => {
        if (specs.every((s) => (fired.get(s.id)?.length ?? 0) > 0)) resolve();
      };
    });
    for (const s of specs) for (const tick of fired.get(s.id) ?? []) expect(tick % 1000).toBe(0);
    for (const tick of fired.get('step') ?? []) expect((tick / 1000) % 2).toBe(0);
  }, 60_000);
});
