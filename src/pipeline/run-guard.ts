/**
 * What a start of a run checks before the run exists: its input against the pipeline's
 * declared schema, its idempotency key (the same key within the window answers the run
 * it started first), and the pipeline's concurrency policy (at most N runs per key in
 * flight). Keys and policies live in the broker's slots (`Broker.slots`), so they hold
 * across every process sharing the broker's Redis.
 */
import { randomUUID } from 'node:crypto';
import { Kind, type TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { AlreadyRunningError, InvalidArgumentError } from '../core/errors.js';
import type { JsonValue } from '../core/json.js';
import type { Broker } from './broker.js';
import type { PipelinePlan } from './plan.js';
import type { RunRecord } from './run-state.js';
import { offerStart, slotFreed, type QueuedInfo } from './run-queue.js';
import type { SlotClaim, SlotHolder } from '../core/run-slots.js';
import { freeStaleHolders, isStaleHolder } from './slot-stale.js';
import { checkKnownKeys, checkObject, checkPositiveInt, checkPositiveNumber, show } from '../core/validate.js';

/** A pipeline's concurrency policy: at most `limit` runs in flight per key. */
export interface ConcurrencyPolicy<I extends JsonValue = JsonValue> {
  /** Runs of one key in flight at once (1: one at a time). */
  limit: number;
  /**
   * The key of a run, from its input (e.g. `(input) => input.userId`): runs of different
   * keys do not wait for each other. A start's own `concurrencyKey` wins over it.
   * @default one key for the whole pipeline
   */
  key?: (input: I) => string;
  /**
   * Safety expiry of a run's slot, pushed on by every change of the run (each step's
   * start and end). A run's end frees its slot at once; the expiry only matters when the
   * process that ended it died before freeing it, and a later start frees a slot whose
   * run it finds ended anyway. Keep it above your longest step.
   * @default 3600000 (1 hour)
   */
  slotTtlMs?: number;
  /**
   * What a start over the limit does: `"reject"` throws an `AlreadyRunningError` naming a
   * run in the way (REST: 409 `already_running`); `"queue"` gives the run its id at once
   * and starts it when a slot frees, FIFO per key, across every process sharing the
   * broker (REST: 202 with status `QUEUED`). Like Trigger.dev's `queue.concurrencyLimit`
   * (runs wait in `QUEUED`) and BullMQ's waiting jobs. A resume over the limit is refused
   * either way.
   * @default "reject"
   */
  onLimit?: 'reject' | 'queue';
  /**
   * With `onLimit: "queue"`: starts waiting per key at most; one more is refused with an
   * `AlreadyRunningError`.
   * @default 1000
   */
  maxQueued?: number;
}

/** Options of one start (`pipeline.kiq(input, options)`). */
export interface StartOptions {
  /**
   * A start with a key already used on this pipeline within the window
   * (`idempotencyWindowMs`) starts nothing and answers the run the first one started,
   * with `deduplicated: true` (a double click, a retried request).
   */
  idempotencyKey?: string;
  /** The concurrency key of this run (overrides the policy's `key` function). */
  concurrencyKey?: string;
}

/** @default 86400000 (24 hours) */
export const DEFAULT_IDEMPOTENCY_WINDOW_MS = 24 * 60 * 60 * 1000;
const DEFAULT_SLOT_TTL_MS = 60 * 60 * 1000;
const KEY_PATTERN = /^[\x20-\x7e]{1,200}$/;

/** A pipeline's `concurrency` option once checked, with its defaults. */
export type CheckedConcurrency<I extends JsonValue = JsonValue> = Required<Pick<ConcurrencyPolicy<I>, 'limit' | 'slotTtlMs' | 'onLimit' | 'maxQueued'>> & Pick<ConcurrencyPolicy<I>, 'key'>;

/** @default 1000 */
export const DEFAULT_MAX_QUEUED = 1000;

/** Checks a pipeline's `concurrency` option. */
export function checkConcurrency<I extends JsonValue>(value: unknown): CheckedConcurrency<I> {
  const o = checkObject(value, 'concurrency');
  checkKnownKeys(o, ['limit', 'key', 'slotTtlMs', 'onLimit', 'maxQueued'], 'concurrency');
  const limit = checkPositiveInt(o.limit, 'concurrency.limit');
  if (limit > 1000) throw new InvalidArgumentError(`concurrency.limit must be at most 1000, received ${limit}`);
  if (o.key !== undefined && typeof o.key !== 'function') throw new InvalidArgumentError(`concurrency.key must be a function (input) => string, received ${show(o.key)}`);
  const slotTtlMs = o.slotTtlMs === undefined ? DEFAULT_SLOT_TTL_MS : checkPositiveNumber(o.slotTtlMs, 'concurrency.slotTtlMs');
  if (o.onLimit !== undefined && o.onLimit !== 'reject' && o.onLimit !== 'queue') throw new InvalidArgumentError(`concurrency.onLimit must be "reject" or "queue", received ${show(o.onLimit)}`);
  const onLimit = o.onLimit ?? 'reject';
  if (o.maxQueued !== undefined && onLimit !== 'queue') throw new InvalidArgumentError(`concurrency.maxQueued needs concurrency.onLimit "queue", received onLimit ${show(onLimit)}`);
  const maxQueued = o.maxQueued === undefined ? DEFAULT_MAX_QUEUED : checkPositiveInt(o.maxQueued, 'concurrency.maxQueued');
  if (maxQueued > 100_000) throw new InvalidArgumentError(`concurrency.maxQueued must be at most 100000, received ${maxQueued}`);
  const out: CheckedConcurrency<I> = { limit, slotTtlMs, onLimit, maxQueued };
  if (o.key !== undefined) out.key = o.key as (input: I) => string;
  return out;
}

/** Checks a pipeline's `inputSchema` option: a TypeBox schema (`Type.Object({...})`). */
export function checkInputSchema(value: unknown): TSchema {
  if (typeof value !== 'object' || value === null || typeof (value as Record<symbol, unknown>)[Kind] !== 'string') {
    throw new InvalidArgumentError(`inputSchema must be a TypeBox schema such as Type.Object({ ... }), received ${show(value)}`);
  }
  return value as TSchema;
}

/** Throws an InvalidArgumentError naming the first problem when `input` does not match `schema`. */
export function validateInput(schema: TSchema, input: unknown, pipelineId: string): void {
  if (Value.Check(schema, input)) return;
  const first = Value.Errors(schema, input).First();
  const where = first === undefined || first.path === '' ? 'input' : `input${first.path.replace(/\//g, '.')}`;
  const message = first === undefined ? 'does not match the input schema' : first.message.toLowerCase();
  const received = first === undefined ? input : first.value;
  throw new InvalidArgumentError(`Input of pipeline "${pipelineId}": ${where} ${message}, received ${show(received)}`);
}

function checkKey(value: unknown, name: string): string {
  if (typeof value !== 'string' || !KEY_PATTERN.test(value)) {
    throw new InvalidArgumentError(`${name} must be 1-200 printable ASCII characters, received ${show(value)}`);
  }
  return value;
}

/** Checks the options of one start. */
export function checkStartOptions(value: unknown): StartOptions {
  const o = checkObject(value, 'kiq options');
  checkKnownKeys(o, ['idempotencyKey', 'concurrencyKey'], 'kiq options');
  const out: StartOptions = {};
  if (o.idempotencyKey !== undefined) out.idempotencyKey = checkKey(o.idempotencyKey, 'idempotencyKey');
  if (o.concurrencyKey !== undefined) out.concurrencyKey = checkKey(o.concurrencyKey, 'concurrencyKey');
  return out;
}

/** What a pipeline hands {@link guardedStart}. */
export interface GuardedStart<I extends JsonValue> {
  broker: Broker;
  pipelineId: string;
  input: I;
  options: StartOptions;
  concurrency: CheckedConcurrency<I> | undefined;
  idempotencyWindowMs: number;
  /** The plan of the run: a queued start keeps it, so that any process can start the run. */
  plan: PipelinePlan;
  /** Creates the run with this id (holding this slot, if any). */
  start: (runId: string, slot: RunRecord['slot']) => Promise<string>;
}

/** What {@link guardedStart} did: started a run, answered the run of the idempotency key (`deduplicated`), or queued the start (`queued`). */
export interface GuardedOutcome {
  runId: string;
  deduplicated: boolean;
  /** The start waits in the queue of its concurrency key (policy `onLimit: "queue"`). */
  queued?: QueuedInfo;
}

/** Starts a run under the idempotency key and the concurrency policy; `deduplicated` when the key had started one. */
export async function guardedStart<I extends JsonValue>(g: GuardedStart<I>): Promise<GuardedOutcome> {
  const { broker, pipelineId, options, concurrency } = g;
  if (options.idempotencyKey === undefined && concurrency === undefined) return { runId: await g.start(randomUUID(), undefined), deduplicated: false };
  const slots = broker.slots;
  if (slots === undefined) throw new InvalidArgumentError(`Pipeline "${pipelineId}": its broker (${broker.kind}) has no slots, needed by concurrency and idempotencyKey`);
  const runId = randomUUID();
  const idem = options.idempotencyKey === undefined ? null : `idem:${pipelineId}:${options.idempotencyKey}`;
  if (idem !== null) {
    // An ended run is still the answer to its key: only a key whose run never came to exist is left over.
    const claim = await claimSlot(broker, idem, 1, runId, g.idempotencyWindowMs, false);
    if (!claim.ok) return { runId: (claim.holders[0] as SlotHolder).run_id, deduplicated: true };
  }
  try {
    let slot: NonNullable<RunRecord['slot']> | undefined;
    if (concurrency !== undefined) {
      const key = options.concurrencyKey ?? (concurrency.key === undefined ? '' : concurrencyKeyOf(concurrency.key, g.input, pipelineId));
      const group = concurrencyGroup(pipelineId, key);
      if (concurrency.onLimit === 'queue') {
        slot = { group, ttl_ms: concurrency.slotTtlMs, limit: concurrency.limit, queue: true };
        const queued = await offerStart(broker, runId, { v: 1, pipeline_id: pipelineId, plan: g.plan, input: g.input, slot }, concurrency.maxQueued, key);
        // Queued: the idempotency key answers this run; whichever process frees a slot starts it.
        if (queued !== null) return { runId, deduplicated: false, queued };
      }
      const claim = slot !== undefined ? ({ ok: true } as const) : await claimSlot(broker, group, concurrency.limit, runId, concurrency.slotTtlMs, true);
      if (!claim.ok) {
        const holder = (claim.holders[0] as SlotHolder).run_id;
        const what = key === '' ? `pipeline "${pipelineId}"` : `pipeline "${pipelineId}" with concurrency key ${show(key)}`;
        throw new AlreadyRunningError(`Already running: ${what} has ${claim.holders.length} run(s) in flight (limit ${concurrency.limit}), e.g. run ${holder}`, holder, key);
      }
      slot ??= { group, ttl_ms: concurrency.slotTtlMs, limit: concurrency.limit };
    }
    try {
      return { runId: await g.start(runId, slot), deduplicated: false };
    } catch (error) {
      if (slot !== undefined) await slots.release(slot.group, runId);
      if (slot?.queue === true) slotFreed(broker, slot);
      throw error;
    }
  } catch (error) {
    if (idem !== null) await slots.release(idem, runId);
    throw error;
  }
}

/**
 * Takes the slot a resumed run held before, under the policy's `limit`: a resume is a
 * start for the concurrency policy. Throws an {@link AlreadyRunningError} naming a run in
 * the way when the group is full.
 */
export async function claimResumeSlot(broker: Broker, slot: { group: string; ttl_ms: number }, runId: string, pipelineId: string, limit: number): Promise<void> {
  if (broker.slots === undefined) return;
  const claim = await claimSlot(broker, slot.group, limit, runId, slot.ttl_ms, true);
  if (claim.ok) return;
  const holder = (claim.holders[0] as SlotHolder).run_id;
  const stem = concurrencyGroup(pipelineId, '');
  const key = slot.group.startsWith(stem) ? slot.group.slice(stem.length) : '';
  throw new AlreadyRunningError(`Already running: run ${runId} cannot resume, its concurrency group has ${claim.holders.length} run(s) in flight (limit ${limit}), e.g. run ${holder}`, holder, key);
}

/** The slot group of one concurrency key of a pipeline (`""` for the whole pipeline). */
export function concurrencyGroup(pipelineId: string, key: string): string {
  return `run:${pipelineId}:${key}`;
}

/**
 * The runs that would refuse a start of `group` now: its live holders when they fill
 * `limit`, else `[]`. Reads only: a holder a start would take over (its run ended, or
 * never came to exist within the grace) does not count, and is left for that start to free.
 */
export async function runsInTheWay(broker: Broker, group: string, limit: number): Promise<SlotHolder[]> {
  const slots = broker.slots;
  if (slots === undefined) return [];
  const live: SlotHolder[] = [];
  for (const holder of await slots.holders(group)) {
    if (!(await isStaleHolder(broker, holder, true))) live.push(holder);
  }
  return live.length >= limit ? live : [];
}

function concurrencyKeyOf<I extends JsonValue>(fn: (input: I) => string, input: I, pipelineId: string): string {
  const key: unknown = fn(input);
  return checkKey(key, `concurrency.key(input) of pipeline "${pipelineId}"`);
}

/**
 * Takes a slot of `group`. A holder left over frees its slot first (see ./slot-stale.ts):
 * a run that never came to exist within a minute (its start died), or, with
 * `endedIsStale`, a run that ended (its end was committed but the process died before it
 * freed the slot).
 */
async function claimSlot(broker: Broker, group: string, limit: number, runId: string, ttlMs: number, endedIsStale: boolean): Promise<SlotClaim> {
  const slots = broker.slots as NonNullable<Broker['slots']>;
  for (let attempt = 0; ; attempt++) {
    const claim = await slots.acquire(group, limit, runId, ttlMs);
    if (claim.ok || attempt === 3) return claim;
    if (!(await freeStaleHolders(broker, group, claim.holders, endedIsStale))) return claim;
  }
}
