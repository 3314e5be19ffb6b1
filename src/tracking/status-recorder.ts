/**
 * How a run's events become its stored status: each event (or group of events one
 * transition produced) is applied to the run's status in the storage, in seq order per
 * run, then the tracking listeners are told. Three write paths, picked by what the storage
 * offers: `applyEvents` (a group in one write, coalesced over `writeDelayMs` by
 * `write-behind.ts`), `applyEvent` (one event per write), or get → reduce → save, chained
 * per run. With a synchronous storage (the in-memory one) nothing makes a promise.
 */
import { InvalidArgumentError } from '../core/errors.js';
import { show } from '../core/validate.js';
import { isTerminalEvent, type FlowcastEvent } from '../events/types.js';
import type { TrackingListeners } from './listeners.js';
import type { PipelineStatus } from './models.js';
import { applyEvent } from './reducer.js';
import { checkEventGroup, type TrackingStorage } from './storage.js';
import { WriteBehind } from './write-behind.js';

/** `true` for a promise (or any thenable). */
function isPromiseLike<T>(value: unknown): value is PromiseLike<T> {
  return typeof value === 'object' && value !== null && typeof (value as { then?: unknown }).then === 'function';
}

/** A storage that has the optional applyEvents. */
type GroupStorage = TrackingStorage & Required<Pick<TrackingStorage, 'applyEvents'>>;

/** `true` when the storage has the optional `applyEvents`. */
function hasApplyEvents(storage: TrackingStorage): storage is GroupStorage {
  return typeof storage.applyEvents === 'function';
}

/** Writes events to a storage and tells the listeners (see the module comment); one per `PipelineTrackingManager`. */
export class StatusRecorder {
  readonly #storage: () => TrackingStorage;
  readonly #listeners: TrackingListeners;
  readonly #report: (error: unknown, where: string) => void;
  /** Coalesced writes to the current storage (see `writeDelayMs`), `null` when off or not needed yet. */
  #behind: WriteBehind | null = null;
  /** Per-run tail of the serialised get → apply → save chain (storages without applyEvent). */
  readonly #chains = new Map<string, Promise<void>>();

  /**
   * @param storage the storage in use (throws when there is none, or the manager is closed)
   * @param report where a coalesced write that failed is reported
   */
  constructor(storage: () => TrackingStorage, listeners: TrackingListeners, report: (error: unknown, where: string) => void) {
    this.#storage = storage;
    this.#listeners = listeners;
    this.#report = report;
  }

  /** Coalesced writes to `storage` when `delay` > 0 (writes still waiting for a previous storage go on their timers, to it). */
  useWriteDelay(storage: TrackingStorage, delay: number): void {
    this.#behind = null;
    if (delay > 0 && hasApplyEvents(storage)) {
      this.#behind = new WriteBehind(
        delay,
        (events) => this.#applyGroups(storage, events, 0),
        (error, runId) => this.#report(error, `writing the events of run ${runId}`),
      );
    }
  }

  /** Applies one event to its run's status (see `PipelineTrackingManager.record`). */
  record(event: FlowcastEvent): void | Promise<void> {
    const storage = this.#storage();
    if (typeof event !== 'object' || event === null || typeof event.run_id !== 'string' || typeof event.seq !== 'number') {
      throw new InvalidArgumentError(`record(event): event must be a FlowcastEvent, received ${show(event)}`);
    }
    if (this.#behind !== null) return this.#behind.add([event]);
    if (storage.applyEvent !== undefined) {
      const applied = storage.applyEvent(event);
      if (isPromiseLike<PipelineStatus | null>(applied)) {
        return Promise.resolve(applied).then((status) => this.#notify(status, event));
      }
      if (this.#listeners.size > 0) this.#notify(applied, event);
      return undefined;
    }
    return this.#recordSerially(storage, event);
  }

  /** Applies a group of events of one run in seq order (see `PipelineTrackingManager.recordMany`). */
  recordMany(events: FlowcastEvent[]): void | Promise<void> {
    const storage = this.#storage();
    checkEventGroup(events, 'recordMany(events)');
    if (this.#behind !== null) return this.#behind.add(events);
    if (!hasApplyEvents(storage)) return this.#recordEach(events, 0);
    return this.#applyGroups(storage, events, 0);
  }

  /** Writes what waits in this process first (`writeDelayMs`), so reads here see every event recorded here. */
  async written(): Promise<void> {
    if (this.#behind !== null && this.#behind.size > 0) await this.#behind.flushAll();
  }

  /** Settles once every serialised write under way settled. */
  async settled(): Promise<void> {
    await Promise.all([...this.#chains.values()]);
  }

  /** record() for events[from..], in order, synchronously as long as record() is. */
  #recordEach(events: FlowcastEvent[], from: number): void | Promise<void> {
    for (let i = from; i < events.length; i++) {
      const recorded = this.record(events[i] as FlowcastEvent);
      if (isPromiseLike<void>(recorded)) return Promise.resolve(recorded).then(() => this.#recordEach(events, i + 1));
    }
    return undefined;
  }

  /**
   * storage.applyEvents for events[from..]. The storage returns only the status after the
   * group's last applied event, and a listener sees a status only through
   * onPipelineComplete (the others get the event alone). So the group is cut after each
   * run-ending event that is not its last: an end's listeners then get the status right
   * after that end, as with record(). The engine's groups end with their end event, so
   * this costs nothing in practice.
   */
  #applyGroups(storage: GroupStorage, events: FlowcastEvent[], from: number): void | Promise<void> {
    while (from < events.length) {
      let end = from;
      while (end < events.length - 1 && !isTerminalEvent(events[end] as FlowcastEvent)) end++;
      const group = from === 0 && end === events.length - 1 ? events : events.slice(from, end + 1);
      const applied = storage.applyEvents(group);
      from = end + 1;
      if (isPromiseLike<PipelineStatus | null>(applied)) {
        const next = from;
        return Promise.resolve(applied).then((status) => {
          this.#notifyGroup(status, group);
          return this.#applyGroups(storage, events, next);
        });
      }
      if (this.#listeners.size > 0) this.#notifyGroup(applied, group);
    }
    return undefined;
  }

  /**
   * Notifies the events of a group that `status` (what applyEvents returned) reflects:
   * none when it is `null`, else those with `seq <= status.last_seq`; events past it
   * wait for an earlier seq and are not notified, as record() would not notify them. An
   * event already stored before the group (a duplicate at its head) is notified when a
   * later one of the group was applied: the storage does not say which were duplicates.
   * Such a group comes when a reader caught the run up from its log first (which
   * notifies nobody) or, rarely, when a redelivered transition overlaps one recorded by
   * another process (whose own listeners were called).
   */
  #notifyGroup(status: PipelineStatus | null, group: FlowcastEvent[]): void {
    if (status === null || this.#listeners.size === 0) return;
    for (const event of group) if (event.seq <= status.last_seq) this.#notify(status, event);
  }

  #recordSerially(storage: TrackingStorage, event: FlowcastEvent): Promise<void> {
    const runId = event.run_id;
    const prev = this.#chains.get(runId);
    const step = async (): Promise<void> => {
      const current = await storage.getStatus(runId);
      if (current !== null && event.seq <= current.last_seq) return;
      const next = applyEvent(current, event);
      if (next === null) return;
      await storage.saveStatus(next);
      this.#notify(next, event);
    };
    const p = prev === undefined ? step() : prev.then(step);
    const tail = p.then(
      () => undefined,
      () => undefined,
    );
    this.#chains.set(runId, tail);
    void tail.then(() => {
      if (this.#chains.get(runId) === tail) this.#chains.delete(runId);
    });
    return p;
  }

  #notify(status: PipelineStatus | null, event: FlowcastEvent): void {
    if (status !== null && this.#listeners.size > 0) this.#listeners.notify(status, event);
  }
}
