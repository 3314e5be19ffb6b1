/**
 * The one cron parser of flowcast: croner, in 5-or-6-field mode. Every broker computes
 * cron ticks with it: the scheduler's own timers in process, and BullMQ's job schedulers
 * on Redis through {@link cronRepeatStrategy} (BullMQ's `settings.repeatStrategy`, which
 * otherwise parses with cron-parser, a parser that refuses forms croner accepts, such as
 * `15W`, `LW` and `@midnight`). So an expression `scheduleAt` accepts is one every runtime
 * runs, at the same ticks, and one it refuses is refused on every broker, at once.
 */
import { Cron } from 'croner';
import { ErrorCodes, FlowcastError } from '../core/errors.js';
import { show } from '../core/validate.js';

/** A parsed cron schedule: its ticks after any instant. */
export interface CronTicks {
  /** The expression as given. */
  readonly cron: string;
  /** The IANA timezone it is read in, when one was given. */
  readonly timezone: string | undefined;
  /** The first tick strictly after `afterMs` (epoch ms), or `null` when there is none. */
  readonly next: (afterMs: number) => number | null;
}

function reason(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).replace(/^(CronPattern|CronDate): /, '');
}

/**
 * Parses `expr` (5 fields, 6 with seconds first, or a nickname such as `@daily`) read in
 * `timezone` (an IANA name; the process's local timezone when `undefined`).
 * @throws FlowcastError `BAD_SCHEDULE` naming the expression (or the timezone) and why,
 *   also for an expression that never fires (`0 0 31 2 *`).
 */
export function parseCron(expr: unknown, timezone: unknown): CronTicks {
  if (typeof expr !== 'string') {
    throw new FlowcastError(ErrorCodes.BAD_SCHEDULE, `Invalid cron expression ${show(expr)}: expected a string such as "0 3 * * *"`);
  }
  let cron: Cron;
  try {
    cron = new Cron(expr, { mode: '5-or-6-parts' });
    cron.nextRun();
  } catch (err) {
    throw new FlowcastError(ErrorCodes.BAD_SCHEDULE, `Invalid cron expression "${expr}": ${reason(err)}`, { cause: err });
  }
  if (timezone !== undefined) {
    if (typeof timezone !== 'string' || timezone.length === 0) {
      throw new FlowcastError(ErrorCodes.BAD_SCHEDULE, `Invalid timezone ${show(timezone)} for cron "${expr}": expected an IANA name such as "America/New_York"`);
    }
    try {
      cron = new Cron(expr, { mode: '5-or-6-parts', timezone });
      cron.nextRun();
    } catch (err) {
      throw new FlowcastError(ErrorCodes.BAD_SCHEDULE, `Invalid timezone "${timezone}" for cron "${expr}": ${reason(err)}`, { cause: err });
    }
  }
  if (cron.nextRun() === null) {
    throw new FlowcastError(ErrorCodes.BAD_SCHEDULE, `Cron expression "${expr}" never fires (no matching date ahead)`);
  }
  const parsed = cron;
  return {
    cron: expr,
    timezone: typeof timezone === 'string' ? timezone : undefined,
    next: (afterMs) => parsed.nextRun(new Date(afterMs))?.getTime() ?? null,
  };
}

/** What BullMQ passes a repeat strategy (the `RepeatOptions` fields it reads). */
export interface CronRepeatOptions {
  pattern?: string;
  tz?: string;
  startDate?: Date | string | number;
  immediately?: boolean;
}

/**
 * BullMQ's `settings.repeatStrategy` for the schedules queue: the next tick of
 * `opts.pattern` in `opts.tz` after `millis` (or after `startDate` when later), computed by
 * croner as {@link parseCron} does, so BullMQ fires a schedule at the ticks `scheduleAt`
 * reported. Same contract as BullMQ's default strategy: `undefined` when there is no tick.
 */
export function cronRepeatStrategy(millis: number, opts: CronRepeatOptions): number | undefined {
  if (opts.immediately === true) return Date.now();
  const start = opts.startDate === undefined ? millis : Math.max(millis, new Date(opts.startDate).getTime());
  const next = parseCron(opts.pattern, opts.tz).next(start);
  return next ?? undefined;
}
