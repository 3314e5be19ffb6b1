/**
 * How the engine keeps a run's concurrency slot (see src/pipeline/run-guard.ts): the
 * run's record says which slot it holds; after each committed transition of such a run
 * the slot is freed when that transition ended the run, else its expiry is pushed on.
 */
import { toError } from '../core/errors.js';
import type { Broker } from './broker.js';
import type { RunRecord, Transition } from './run-state.js';
import { keepQueues, slotFreed } from './run-queue.js';

/**
 * Frees (`ended`) or refreshes a run's slot, reporting a failure to `onError`. Every end
 * of a run is a transition (success, failure, cancel, timeout, a recovered job given up
 * on), so every end frees it. A release lost because the process died right after the
 * transition is made good by the next start, which takes over a slot whose run ended
 * (and, for a queuing policy, by the queue keepers of the processes: ./run-queue.ts).
 */
export function settleSlot(broker: Broker, runId: string, slot: NonNullable<RunRecord['slot']>, ended: boolean, onError: (error: Error, where: string) => void): void {
  const slots = broker.slots;
  if (slots === undefined) return;
  let done = ended ? slots.release(slot.group, runId) : slots.refresh(slot.group, runId, slot.ttl_ms);
  // A queuing policy: the freed slot goes to the oldest waiting start of the group (./run-queue.ts).
  if (slot.queue === true) done = ended ? done.then(() => slotFreed(broker, slot)) : done.then(() => keepQueues(broker));
  done.catch((error: unknown) => onError(toError(error), `${ended ? 'freeing' : 'refreshing'} the concurrency slot of run ${runId}`));
}

/** Sees, through the transition function, the slot a run holds and whether this transition ended the run. */
export class SlotWatch {
  slot: RunRecord['slot'] = undefined;
  ended = false;

  /** `fn`, noting what it did to the record (the last call wins: optimistic stores may call it again). */
  wrap<T>(fn: (r: RunRecord) => Transition<T>): (r: RunRecord) => Transition<T> {
    return (r) => {
      const was = r.status;
      const out = fn(r);
      this.slot = r.slot;
      this.ended = was === 'RUNNING' && r.status !== 'RUNNING';
      return out;
    };
  }

  /** After the transition committed: frees or refreshes the slot, if the run holds one. */
  settle(broker: Broker, runId: string, onError: (error: Error, where: string) => void): void {
    if (this.slot !== undefined) settleSlot(broker, runId, this.slot, this.ended, onError);
  }
}
