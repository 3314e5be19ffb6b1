/**
 * When a slot's holder is left over, and may be freed by whoever finds it: a run that
 * never came to exist within a minute of taking it (its start died), or, for concurrency
 * slots, a run that ended (its end was committed but the process died before freeing
 * it). A run waiting in a queue, or given a slot and starting, is not left over.
 */
import type { SlotHolder } from '../core/run-slots.js';
import type { Broker } from './broker.js';

/** A slot whose run does not exist this long after it was taken is left over by a start that died. */
export const UNBORN_GRACE_MS = 60_000;

/** `true` when `holder` is left over (see the module comment); `endedIsStale` for concurrency slots. */
export async function isStaleHolder(broker: Broker, holder: SlotHolder, endedIsStale: boolean): Promise<boolean> {
  const summary = await broker.runState.getSummary(holder.run_id);
  if (summary !== null) return endedIsStale && summary.status !== 'RUNNING';
  if (Date.now() - holder.since_ms <= UNBORN_GRACE_MS) return false;
  // An idempotency key whose run waits in a queue: the run will exist.
  const queue = broker.slots?.queue;
  return queue === undefined || (await queue.find(holder.run_id)) === null;
}

/** Frees the left-over holders of `group` among `holders`; `true` when it freed any. */
export async function freeStaleHolders(broker: Broker, group: string, holders: SlotHolder[], endedIsStale: boolean): Promise<boolean> {
  const slots = broker.slots;
  if (slots === undefined) return false;
  let freed = false;
  for (const holder of holders) {
    if (await isStaleHolder(broker, holder, endedIsStale)) {
      await slots.release(group, holder.run_id);
      freed = true;
    }
  }
  return freed;
}
