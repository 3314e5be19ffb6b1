/**
 * Reading a run's log on Redis: the stream `<prefix>{<run_id>}:log` whose entry ids are
 * the seqs, with its meta hash (last seq, terminal seq), in one MULTI (one slot).
 */
import { checkReadOptions } from '../transport/checks.js';
import type { Redis } from 'ioredis';
import { FlowcastError, ErrorCodes } from '../core/errors.js';
import { checkId, checkObject } from '../core/validate.js';
import type { FlowcastEvent } from '../events/types.js';
import type { LogRead } from '../transport/transport.js';
import { parseEvent } from './event-codec.js';
import { runLogKey, runLogMetaKey } from './keys.js';

/**
 * The first seq a log answers for: 1 when retention never trimmed it (Redis 7 counts
 * the entries ever added), else its first entry (before a Redis 7 too).
 */
async function trimmedThrough(redis: Redis, log: string, firstHeld: number): Promise<number> {
  const info = (await redis.xinfo('STREAM', log)) as unknown[];
  const field = (name: string): unknown => {
    const at = info.indexOf(name);
    return at < 0 ? undefined : info[at + 1];
  };
  const added = field('entries-added');
  return typeof added === 'number' && added === field('length') ? 1 : firstHeld;
}

/** `RedisPubSubTransport#read`: the events of a run's log after `since` (see `EventTransport.read`). */
export async function readRunLog(redis: Redis, keyPrefix: string, runId: string, options: { since?: number; limit?: number }): Promise<LogRead> {
  checkId(runId, 'read(runId)');
  checkObject(options, 'read options');
  const { since, limit } = checkReadOptions(options);
  const log = runLogKey(keyPrefix, runId);
  const multi = redis.multi().hmget(runLogMetaKey(keyPrefix, runId), 'seq', 'end').xrange(log, '-', '+', 'COUNT', 1);
  const start = `${Math.min(since + 1, Number.MAX_SAFE_INTEGER)}-0`;
  if (limit === undefined) multi.xrange(log, start, '+');
  else multi.xrange(log, start, '+', 'COUNT', limit);
  const replies = await multi.exec();
  if (replies === null) throw new FlowcastError(ErrorCodes.CONNECTION_FAILED, `Reading the log of run "${runId}" was aborted`);
  for (const [error] of replies) if (error !== null) throw error;
  const [meta, head, entries] = replies.map((r) => r[1]) as [[string | null, string | null], [string, string[]][], [string, string[]][]];
  const lastSeq = Number(meta[0] ?? 0);
  if (lastSeq === 0) return { events: [], first_seq: 0, last_seq: 0, complete: since === 0, ended: false };
  let firstSeq = head[0] === undefined ? lastSeq + 1 : Number.parseInt(head[0][0], 10);
  // A first entry past since + 1: trimmed by retention, or a gap a filter left (docs/events.md).
  if (firstSeq > since + 1 && head[0] !== undefined) firstSeq = await trimmedThrough(redis, log, firstSeq);
  const events: FlowcastEvent[] = [];
  for (const [, fields] of entries) {
    const event = parseEvent(fields[1] ?? '');
    if (event !== null) events.push(event);
  }
  return { events, first_seq: firstSeq, last_seq: lastSeq, complete: since + 1 >= firstSeq, ended: meta[1] !== null };
}
