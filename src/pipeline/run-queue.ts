/**
 * Queued starts (a pipeline whose `concurrency.onLimit` is `"queue"`): a start over the
 * limit gets its run id at once and waits, FIFO per concurrency group, in the broker's
 * run queue (`Broker.slots.queue`: this process for the in-memory broker, the shared
 * Redis for BullMQ). It carries its start request (plan, input, slot) so that any
 * process can start it:
 *
 * - whoever frees a slot of the group (the process that ended a run: a worker or a
 *   server) gives it to the oldest waiting start and starts that run;
 * - a new start of the group first gives free slots to the starts already waiting;
 * - every process that offers or settles queued-policy runs keeps a {@link QueueKeeper}
 *   that, every {@link QUEUE_KEEPER_INTERVAL_MS}, frees slots left over by runs whose
 *   process died, hands free slots on, and starts the runs given a slot whose starter
 *   died before the run existed.
 *
 * So a waiter whose process died never blocks its queue: no process is "responsible" for
 * a queued run. A queued run that is cancelled is taken out of the queue and never runs a
 * step: its run is created already CANCELLED (a `PipelineStartEvent`, then a
 * `PipelineCancelledEvent`), so REST, the SDK, the CLI and tracking all see it end.
 */
import { AlreadyRunningError, ErrorCodes, FlowcastError, toError } from '../core/errors.js';
import type { JsonValue } from '../core/json.js';
import { defaultLogger, type Logger } from '../core/logger.js';
import { logError } from '../core/log-throttle.js';
import type { QueuedPlace, QueuedStart, RunQueue } from '../core/run-queue.js';
import type { SlotHolder } from '../core/run-slots.js';
import { show } from '../core/validate.js';
import type { Broker } from './broker.js';
import type { PipelinePlan } from './plan.js';
import type { RunRecord } from './run-state.js';
import { freeStaleHolders } from './slot-stale.js';

/** How often a process's keeper looks after the queues (recovery only: slots freed by a run's end are handed on at once). */
export const QUEUE_KEEPER_INTERVAL_MS = 2_000;
/** A start given a slot whose run does not exist this long after is started again by a keeper (its starter died). */
export const STARTING_GRACE_MS = 10_000;
/** Groups one keeper tick looks after at most. */
const GROUPS_PER_TICK = 200;

/** What a queued start keeps (JSON): enough for any process to start its run. */
export interface QueuedRequest {
  v: 1;
  pipeline_id: string;
  plan: PipelinePlan;
  input: JsonValue;
  slot: NonNullable<RunRecord['slot']>;
}

/** Starts a run (the engine's `startRun`); `cancelled`: create it already cancelled, with this reason. */
export type QueueStarter = (plan: PipelinePlan, input: JsonValue, runId: string, slot: RunRecord['slot'], cancelled?: string) => Promise<string>;

const starters = new WeakMap<Broker, QueueStarter>();
const keepers = new WeakMap<Broker, QueueKeeper>();

/** Installs how queued runs of `broker` are started here (the run engine calls it once). */
export function registerQueueStarter(broker: Broker, starter: QueueStarter): void {
  starters.set(broker, starter);
}

/** The broker (or its store) was closed: what is queued stays for the other processes. */
function isClosed(error: unknown): boolean {
  return error instanceof FlowcastError && error.code === ErrorCodes.CLOSED;
}

function report(broker: Broker, error: unknown, where: string): void {
  if (isClosed(error)) return;
  logError((broker as { logger?: Logger }).logger ?? defaultLogger(), toError(error), `run queue: ${where}`);
}

function queueOf(broker: Broker): RunQueue {
  const queue = broker.slots?.queue;
  if (queue === undefined) throw new FlowcastError(ErrorCodes.INVALID_ARGUMENT, `The broker (${broker.kind}) has no run queue, needed by concurrency.onLimit "queue"`);
  return queue;
}

function parseRequest(start: QueuedStart): QueuedRequest | null {
  try {
    const r = JSON.parse(start.request) as QueuedRequest;
    return r.v === 1 && typeof r.plan === 'object' && typeof r.slot?.group === 'string' ? r : null;
  } catch {
    return null;
  }
}

/** A start that waits: its place in the queue and the runs in the way. */
export interface QueuedInfo {
  /** 1: the next to start. */
  position: number;
  /** The runs holding the group's slots when it queued. */
  holders: SlotHolder[];
}

/**
 * Takes a slot of the request's group for `runId`, or queues the start behind the starts
 * already waiting. Resolves `null` when the run holds a slot (start it now), else where
 * it waits. Throws an {@link AlreadyRunningError} when `maxQueued` starts wait already.
 */
export async function offerStart(broker: Broker, runId: string, request: QueuedRequest, maxQueued: number, key: string): Promise<QueuedInfo | null> {
  const queue = queueOf(broker);
  const { group, limit = 1, ttl_ms: ttlMs } = request.slot;
  keeperOf(broker).start();
  // Runs left over by a dead process hold no slot for long: free them before queuing behind them.
  const held = await broker.slots?.holders(group);
  if (held !== undefined && held.length >= limit) await freeStaleHolders(broker, group, held, true);
  const offer = await queue.offer(group, limit, ttlMs, { run_id: runId, request: JSON.stringify(request) }, maxQueued);
  if (offer.promoted.length > 0) void startPromoted(broker, offer.promoted);
  if (offer.ok) return null;
  if (offer.full) {
    const what = key === '' ? `pipeline "${request.pipeline_id}"` : `pipeline "${request.pipeline_id}" with concurrency key ${show(key)}`;
    const holder = offer.holders[0]?.run_id ?? '';
    throw new AlreadyRunningError(`Already running: ${what} has ${offer.holders.length} run(s) in flight (limit ${limit}) and ${offer.waiting} start(s) queued (maxQueued ${maxQueued})${holder === '' ? '' : `, e.g. run ${holder}`}`, holder, key);
  }
  return { position: offer.position, holders: offer.holders };
}

/** After a queued-policy run freed its slot: the oldest waiting starts of its group take the free slots and start. */
export function slotFreed(broker: Broker, slot: NonNullable<RunRecord['slot']>): void {
  const queue = broker.slots?.queue;
  if (queue === undefined) return;
  keeperOf(broker).start();
  queue.promote(slot.group, slot.limit ?? 1, slot.ttl_ms).then(
    (promoted) => startPromoted(broker, promoted),
    (error: unknown) => report(broker, error, `handing on the slot of group ${show(slot.group)}`),
  );
}

/** A queued-policy run is in flight here: its process keeps the queues (see {@link QueueKeeper}). */
export function keepQueues(broker: Broker): void {
  if (broker.slots?.queue !== undefined) keeperOf(broker).start();
}

/** Starts runs given a slot; a start that fails stays "starting" for a keeper to retry. */
async function startPromoted(broker: Broker, promoted: QueuedStart[]): Promise<void> {
  for (const start of promoted) await startOne(broker, start);
}

async function startOne(broker: Broker, start: QueuedStart): Promise<void> {
  const queue = queueOf(broker);
  const request = parseRequest(start);
  const starter = starters.get(broker);
  if (request === null) {
    report(broker, new Error(`unreadable start request of queued run ${start.run_id}: dropped`), 'starting a queued run');
    const group = (await queue.find(start.run_id))?.group;
    if (group !== undefined) await queue.started(group, start.run_id);
    return;
  }
  if (starter === undefined) return;
  try {
    await starter(request.plan, request.input, start.run_id, request.slot);
  } catch (error) {
    // Another process started it first (a keeper and a slow starter): it exists, which is all we want.
    if ((await broker.runState.getSummary(start.run_id)) === null) {
      report(broker, error, `starting queued run ${start.run_id}`);
      return;
    }
  }
  await queue.started(request.slot.group, start.run_id).catch((error: unknown) => report(broker, error, `forgetting the start of run ${start.run_id}`));
}

/** Where a run waits in its queue (`position` 1: next; 0: it was given a slot and is starting), with its request; `null` when it does not. */
export async function queuedRun(broker: Broker, runId: string): Promise<(QueuedPlace & { request: QueuedRequest }) | null> {
  const queue = broker.slots?.queue;
  if (queue === undefined) return null;
  const place = await queue.find(runId);
  if (place === null) return null;
  const request = parseRequest(place.start);
  return request === null ? null : { ...place, request };
}

/**
 * Cancels a run that waits in a queue: takes it out and creates its run already
 * CANCELLED (it never runs a step). Resolves `false` when the run does not wait (it runs,
 * ended, is starting, or is unknown): cancel it as a run then.
 */
export async function cancelQueued(broker: Broker, runId: string, reason: string): Promise<boolean> {
  const queue = broker.slots?.queue;
  if (queue === undefined) return false;
  const place = await queue.find(runId);
  if (place === null || place.position === 0) return false;
  const removed = await queue.remove(place.group, runId);
  if (removed === null) return false;
  const request = parseRequest(removed);
  const starter = starters.get(broker);
  if (request === null || starter === undefined) return true;
  await starter(request.plan, request.input, runId, undefined, reason);
  return true;
}

/** What {@link cancelRunOrQueued} needs of the run engine. */
export interface Canceller {
  readonly broker: Broker;
  cancel(runId: string, reason?: string): Promise<boolean>;
}

/** How long a cancel waits for a run that was just given a slot to exist. */
const STARTING_WAIT_MS = 5_000;

/**
 * Cancels a run, queued or not: a waiting start is taken out of its queue and ends
 * CANCELLED without running (see {@link cancelQueued}); a run that is starting is
 * cancelled once it exists. `false` when the run had ended. Rejects `NOT_FOUND` for an
 * unknown run.
 */
export async function cancelRunOrQueued(engine: Canceller, runId: string, reason = 'cancelled by request'): Promise<boolean> {
  if (typeof reason !== 'string') throw new TypeError('cancel(reason): reason must be a string');
  const broker = engine.broker;
  if ((await broker.runState.getSummary(runId)) === null && broker.slots?.queue !== undefined) {
    if (await cancelQueued(broker, runId, reason)) return true;
    // Given a slot a moment ago: its run is being created.
    for (let waited = 0; waited < STARTING_WAIT_MS && (await broker.runState.getSummary(runId)) === null && (await queuedRun(broker, runId)) !== null; waited += 50) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  return engine.cancel(runId, reason);
}

/** Looks after the queues of one broker in this process (see the module comment); it stops itself while nothing waits. */
export class QueueKeeper {
  readonly #broker: Broker;
  #timer: NodeJS.Timeout | undefined;
  #busy = false;

  constructor(broker: Broker) {
    this.#broker = broker;
  }

  /** Ticks every {@link QUEUE_KEEPER_INTERVAL_MS} until nothing waits (idempotent). */
  start(): void {
    if (this.#timer !== undefined) return;
    this.#timer = setInterval(() => void this.tick(), QUEUE_KEEPER_INTERVAL_MS);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** One pass over the groups that may have waiting or starting starts. */
  async tick(): Promise<void> {
    const queue = this.#broker.slots?.queue;
    if (queue === undefined || queue.closed) return this.stop();
    if (this.#busy) return;
    this.#busy = true;
    try {
      const groups = (await queue.groups()).slice(0, GROUPS_PER_TICK);
      if (groups.length === 0) this.stop();
      for (const group of groups) await this.#keep(queue, group);
    } catch (error) {
      if (queue.closed || isClosed(error)) this.stop();
      else report(this.#broker, error, 'keeping the queues');
    } finally {
      this.#busy = false;
    }
  }

  async #keep(queue: RunQueue, group: string): Promise<void> {
    const broker = this.#broker;
    const starting = await queue.starting(group);
    for (const s of starting) {
      if ((await broker.runState.getSummary(s.run_id)) !== null) {
        await queue.started(group, s.run_id);
      } else if (Date.now() - s.promoted_ms > STARTING_GRACE_MS) {
        const request = parseRequest(s);
        // Its starter died: start it here, holding its slot again (it may have expired meanwhile).
        if (request === null || (await broker.slots?.acquire(group, request.slot.limit ?? 1, s.run_id, request.slot.ttl_ms))?.ok === true) await startOne(broker, s);
      }
    }
    const [head] = await queue.waiting(group, 1);
    if (head === undefined) {
      if (starting.length === 0) await queue.forget(group);
      return;
    }
    const request = parseRequest(head);
    if (request === null) return;
    const limit = request.slot.limit ?? 1;
    const held = (await broker.slots?.holders(group)) ?? [];
    if (held.length >= limit) await freeStaleHolders(broker, group, held, true);
    await startPromoted(broker, await queue.promote(group, limit, request.slot.ttl_ms));
  }
}

function keeperOf(broker: Broker): QueueKeeper {
  let keeper = keepers.get(broker);
  if (keeper === undefined) {
    keeper = new QueueKeeper(broker);
    keepers.set(broker, keeper);
  }
  return keeper;
}
