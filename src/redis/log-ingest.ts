/**
 * Events that already have their seq, stored in a Redis run log under that seq: what the
 * hook bridge (`setupWebSocketBridge(hooks, redisTransport)`) does with the events of
 * runs whose log is elsewhere (an in-memory broker in a producer process), so that
 * every server on the Redis streams and replays them.
 */
import { InvalidArgumentError } from '../core/errors.js';
import { checkId, checkObject, checkPositiveInt } from '../core/validate.js';
import { isEventType, isTerminalEvent, type FlowcastEvent } from '../events/types.js';
import { eventJson } from './event-codec.js';
import { allChannel, pipelineChannel, runChannel, runLogKey, runLogMetaKey } from './keys.js';
import { INGEST_SCRIPT, LuaScript, type RedisClient } from './lua.js';

const ingestScript = new LuaScript(INGEST_SCRIPT);

/** What {@link ingestEvent} needs of the transport. */
export interface IngestTarget {
  readonly redis: RedisClient;
  readonly keyPrefix: string;
  readonly maxEventsPerRun: number;
  readonly ttlSeconds: number;
  readonly endedTtlSeconds: number;
}

/**
 * Stores `event` in its run's log under its own seq and publishes it to the run's,
 * pipeline's and `*` channels, in one script. An event at or below the log's last seq,
 * or after its terminal event, is ignored. Resolves to whether it was stored.
 *
 * Published by the script even when a listener of this process wants the run: the event
 * has been through tracking and hooks already, so there is nothing to wait for.
 */
export async function ingestEvent(target: IngestTarget, event: FlowcastEvent): Promise<boolean> {
  checkObject(event, 'RedisPubSubTransport.ingest(event)');
  if (!isEventType(event.type)) throw new InvalidArgumentError(`RedisPubSubTransport.ingest(event): event.type must be an event type, received ${JSON.stringify(event.type)}`);
  const runId = checkId(event.run_id, 'RedisPubSubTransport.ingest(event): event.run_id');
  const pipelineId = checkId(event.pipeline_id, 'RedisPubSubTransport.ingest(event): event.pipeline_id');
  const seq = checkPositiveInt(event.seq, 'RedisPubSubTransport.ingest(event): event.seq');
  const p = target.keyPrefix;
  const stored = await ingestScript.run(
    target.redis,
    [runLogMetaKey(p, runId), runLogKey(p, runId)],
    [
      target.maxEventsPerRun,
      target.ttlSeconds,
      target.endedTtlSeconds,
      runChannel(p, runId),
      pipelineChannel(p, pipelineId),
      allChannel(p),
      eventJson(event),
      seq,
      isTerminalEvent(event) ? 1 : 0,
    ],
  );
  return Number(stored) === 1;
}
