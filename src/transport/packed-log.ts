/**
 * A finished run's log, kept as JSON text in chunks. A finished log is read rarely
 * (replays) but kept long: strings instead of many objects keep it out of the garbage
 * collector's way, which is most of what retention costs. Chunks let a read of a few
 * events parse a few events: a slow reader's replay reads small pages again and again,
 * and parsing the whole log each time would cost the square of its length.
 */
import type { FlowcastEvent } from '../events/types.js';

/** Events per chunk. */
const CHUNK = 256;

/** A finished run's log, packed in chunks that are parsed only when read. */
export interface PackedLog {
  /** The seq of each chunk's first event, ascending. */
  readonly firstSeqs: readonly number[];
  /** Each chunk: a JSON array of up to {@link CHUNK} events, in seq order. */
  readonly chunks: readonly string[];
}

/** Packs `events` (seq order). */
export function packLog(events: readonly FlowcastEvent[]): PackedLog {
  const firstSeqs: number[] = [];
  const chunks: string[] = [];
  for (let i = 0; i < events.length; i += CHUNK) {
    const part = events.slice(i, i + CHUNK);
    firstSeqs.push((part[0] as FlowcastEvent).seq);
    chunks.push(JSON.stringify(part));
  }
  return { firstSeqs, chunks };
}



/** Up to `limit` events with a seq above `since`, parsing only the chunks that hold them. */
export function readPacked(log: PackedLog, since: number, limit: number): FlowcastEvent[] {
  const seqs = log.firstSeqs;
  // The last chunk whose first seq is <= since + 1: the first that may hold what is asked.
  let lo = 0;
  let hi = seqs.length - 1;
  let start = 0;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if ((seqs[mid] as number) <= since + 1) {
      start = mid;
      lo = mid + 1;
    } else {
      hi = mid - 1;
    }
  }
  const out: FlowcastEvent[] = [];
  for (let c = start; c < log.chunks.length && out.length < limit; c++) {
    for (const e of JSON.parse(log.chunks[c] as string) as FlowcastEvent[]) {
      if (e.seq <= since) continue;
      out.push(e);
      if (out.length === limit) break;
    }
  }
  return out;
}
