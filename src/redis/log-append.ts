/**
 * The append path of a Redis run log: a draft gets its run's next seq in one script call
 * (APPEND in lua.ts), which refuses everything after the run's terminal event and, when
 * the transport says so (`liveChannels`), publishes the event as it appends it. A run's
 * start and end markers go to the run streams around it.
 */
import type { EventDraft, FlowcastEvent } from '../events/types.js';
import { encodeDraft, type EncodedDraft } from './event-codec.js';
import { runLogKey, runLogMetaKey } from './keys.js';
import { APPEND_SCRIPT, LuaScript, type RedisClient } from './lua.js';

const appendScript = new LuaScript(APPEND_SCRIPT);

/** What {@link appendEvent} needs of the transport. */
export interface AppendTarget {
  readonly redis: RedisClient;
  readonly keyPrefix: string;
  readonly maxEventsPerRun: number;
  readonly ttlSeconds: number;
  readonly endedTtlSeconds: number;
  /** Where the script publishes the event (three names, or three empty strings for none). */
  liveChannels(runId: string, pipelineId: string): readonly string[];
  /** Writes a run's start or end marker to the run streams (never throws). */
  markRun(kind: 'start' | 'end', pipelineId: string, runId: string): Promise<void>;
  /** The appended event given its seq, as the script left it (published or not). */
  finishAppended(encoded: EncodedDraft, seq: number, channels: readonly string[]): FlowcastEvent;
}

/**
 * Appends `draft` to its run's log: resolves with the stored event, or `null` when the
 * log refused it (the run ended). A start's marker is sent before the append, on the
 * same connection; a terminal event's marker follows it.
 */
export async function appendEvent(target: AppendTarget, draft: EventDraft): Promise<FlowcastEvent | null> {
  const encoded = encodeDraft(draft, 'RedisPubSubTransport.append');
  const p = target.keyPrefix;
  const keys = [runLogMetaKey(p, draft.run_id), runLogKey(p, draft.run_id)];
  const channels = target.liveChannels(draft.run_id, draft.pipeline_id);
  const args = [target.maxEventsPerRun, target.ttlSeconds, target.endedTtlSeconds, ...channels, encoded.head, encoded.terminal ? 1 : 0];
  // A run's start marker goes first (sent before the append, on the same connection).
  const marked = draft.type === 'PipelineStartEvent' ? target.markRun('start', draft.pipeline_id, draft.run_id) : null;
  const seq = Number(await appendScript.run(target.redis, keys, args));
  await marked;
  if (seq !== 0 && encoded.terminal) void target.markRun('end', draft.pipeline_id, draft.run_id);
  return seq === 0 ? null : target.finishAppended(encoded, seq, channels);
}
