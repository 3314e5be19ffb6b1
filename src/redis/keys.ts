/**
 * Every Redis key and channel name flowcast uses, in one place.
 *
 * Keys that belong to one run carry the run id as a hash tag (`{<run_id>}`), so all of a
 * run's keys live in one Redis Cluster slot and a Lua script may touch them together.
 * Keys shared by many runs (indexes, engine status) have no run tag: a script never
 * touches them together with a run's keys, so the layout is Cluster-safe.
 *
 * Each part (run state, event transport, tracking, broker) has its own section below.
 */
import { InvalidArgumentError } from '../core/errors.js';
import { show } from '../core/validate.js';

/** The prefix used when none is given. */
export const DEFAULT_KEY_PREFIX = 'flowcast:';

/** Checks a key prefix: 1-100 printable characters without spaces or braces (braces would break the hash tags). */
export function checkKeyPrefix(prefix: unknown, name = 'keyPrefix'): string {
  if (typeof prefix !== 'string' || !/^[\x21-\x7a\x7c\x7e]{1,100}$/.test(prefix)) {
    throw new InvalidArgumentError(`${name} must be 1-100 printable characters without spaces or { }, received ${show(prefix)}`);
  }
  return prefix;
}

/** `{<run_id>}`: the hash tag that keeps a run's keys in one Cluster slot. */
export function runTag(runId: string): string {
  return `{${runId}}`;
}

// ---------------------------------------------------------------------------------------
// Run state and event log (RedisRunState, RedisPubSubTransport, ExternalEventIngestor)
// ---------------------------------------------------------------------------------------

/** `<prefix>{<run_id>}:state`: hash of a run's engine record (`rec`, `plan`, `sum`, `ver`). */
export function runStateKey(prefix: string, runId: string): string {
  return `${prefix}${runTag(runId)}:state`;
}

/** `<prefix>{<run_id>}:log`: the run's event log, a stream whose entry ids are `<seq>-0`. */
export function runLogKey(prefix: string, runId: string): string {
  return `${prefix}${runTag(runId)}:log`;
}

/** `<prefix>{<run_id>}:logmeta`: hash with the run's last seq (`seq`) and its terminal seq (`end`). */
export function runLogMetaKey(prefix: string, runId: string): string {
  return `${prefix}${runTag(runId)}:logmeta`;
}

/** Pub/Sub channel of one run's live events. */
export function runChannel(prefix: string, runId: string): string {
  return `${prefix}ev:run:${runId}`;
}

/** Pub/Sub channel of one pipeline's live events. */
export function pipelineChannel(prefix: string, pipelineId: string): string {
  return `${prefix}ev:pipeline:${pipelineId}`;
}

/** Pub/Sub channel of every live event. */
export function allChannel(prefix: string): string {
  return `${prefix}ev:all`;
}

/**
 * `<prefix>epoch`: a random id, set once (SET NX) by the first process that finds none.
 * Every run log and run stream of this Redis belongs to it; when it is gone or another,
 * the Redis lost its data and seqs and offsets from before mean nothing.
 */
export function epochKey(prefix: string): string {
  return `${prefix}epoch`;
}

// ── Run streams (src/redis/run-streams.ts) ─────────────────────────────────────────────
// One per pipeline and one for every pipeline (`*`): the starts and ends of runs. A
// stream's keys share the hash tag `{runs:<name>}` (pipeline ids cannot hold `*` or
// braces), so its script touches one slot; it never touches a run's keys.

/** `<prefix>{runs:<pipeline_id>}:stream` (`{runs:*}` for every pipeline): stream of run markers whose entry ids are the offsets. */
export function runStreamKey(prefix: string, name: string): string {
  return `${prefix}{runs:${name}}:stream`;
}

/** `<prefix>{runs:<pipeline_id>}:meta`: hash with the stream's last offset (`n`); it never expires, so offsets never restart within an epoch. */
export function runStreamMetaKey(prefix: string, name: string): string {
  return `${prefix}{runs:${name}}:meta`;
}

/** Pub/Sub channel of a run stream's live markers. */
export function runStreamChannel(prefix: string, name: string): string {
  return `${prefix}runs:${name}`;
}

/** `<prefix>{servers}:status`: hash of server instance id to its JSON status. */
export function serverStatusKey(prefix: string): string {
  return `${prefix}{servers}:status`;
}

/** `<prefix>{servers}:expiry`: sorted set of server instance ids scored by expiry time (ms). */
export function serverExpiryKey(prefix: string): string {
  return `${prefix}{servers}:expiry`;
}

/** `<prefix>ingest`: the stream external producers (shell, Python) append log lines and progress to. */
export function ingestKey(prefix: string): string {
  return `${prefix}ingest`;
}

/** `<prefix>ingest:lock`: which ingestor consumes the ingest stream now (exclusive mode), with an expiry. */
export function ingestLockKey(prefix: string): string {
  return `${prefix}ingest:lock`;
}

// ── Run slots (RedisRunSlots, src/redis/run-slots.ts) ─────────────────────────────────

/**
 * `<prefix>{slot:<digest>}`: hash of the runs holding a slot of one group (a concurrency
 * key of a pipeline, or an idempotency key), run id → `<since_ms>:<expires_ms>`. The
 * group's digest (SHA-1 hex of its name, which may hold braces) is its own hash tag: a
 * slot script touches that one key only, never a run's keys.
 */
export function slotGroupKey(prefix: string, digest: string): string {
  return `${prefix}{slot:${digest}}`;
}

/**
 * `<prefix>{slot:<digest>}:<part>`: the run queue of one group (RedisRunQueue,
 * src/redis/run-queue.ts), in the group's hash tag so one script takes a slot and reads
 * the queue together: `q` sorted set of waiting run ids (score: arrival order), `qr` hash
 * run id → `<queued_ms>:<start request JSON>` (and `#seq`, the arrival counter), `qs`
 * hash of the starts given a slot and not yet started, run id → promoted_ms.
 */
export function slotQueueKey(prefix: string, digest: string, part: 'q' | 'qr' | 'qs'): string {
  return `${prefix}{slot:${digest}}:${part}`;
}

/**
 * `<prefix>slotq:groups` (set of group names that may have waiting or starting starts)
 * and `<prefix>slotq:where` (hash run id → group of a queued run): hints read by plain
 * commands, never inside a group's script (they live in another Cluster slot).
 */
export function slotQueueIndexKey(prefix: string, part: 'groups' | 'where'): string {
  return `${prefix}slotq:${part}`;
}

// ── BullMQ broker (src/redis/bullmq-*.ts, src/scheduler/bullmq-*.ts) ──────────────────

/**
 * BullMQ's own `prefix` option: every BullMQ key is `<keyPrefix>bullmq:<queue>:...`.
 * Each queue name is a hash tag, so a queue's keys share one Cluster slot (BullMQ's
 * scripts need that).
 */
export function bullmqPrefix(keyPrefix: string): string {
  return `${keyPrefix}bullmq`;
}

/** The BullMQ queues of one deployment: task and step jobs, run control jobs (deadlines), schedules. */
export const BULLMQ_QUEUES = {
  tasks: '{tasks}',
  control: '{control}',
  schedules: '{schedules}',
} as const;

/** `<prefix>{workers}:<id>`: heartbeat record of one worker process (a JSON string that expires). */
export function workerKey(keyPrefix: string, workerId: string): string {
  return `${keyPrefix}{workers}:${workerId}`;
}

/** `<prefix>{workers}:index`: sorted set of worker ids by last heartbeat (epoch ms), to find the heartbeat keys without SCAN. */
export function workersIndexKey(keyPrefix: string): string {
  return `${keyPrefix}{workers}:index`;
}

/** Pub/Sub channel on which a run that ended abnormally (cancelled, failed, timed out) is announced to every worker. */
export function runControlChannel(keyPrefix: string): string {
  return `${keyPrefix}run-control`;
}

// ── Tracking storage (RedisPipelineStorage, src/redis/storage*.ts) ──────────────────────

/** `<prefix>{<run_id>}:track`: hash of one tracked run (`s` status JSON, `v` version, `q` last_seq). */
export function trackRunKey(prefix: string, runId: string): string {
  return `${prefix}${runTag(runId)}:track`;
}

/** `<prefix>{<run_id>}:track:pending`: hash of a run's events that arrived ahead of a gap (`<seq>` → event JSON, `since` → ms). */
export function trackPendingKey(prefix: string, runId: string): string {
  return `${prefix}${runTag(runId)}:track:pending`;
}

/** `<prefix>track:idx:started`: sorted set of every tracked run id, scored by `started_at` (ms; `-inf` when never started). */
export function trackStartedIndexKey(prefix: string): string {
  return `${prefix}track:idx:started`;
}

/** `<prefix>track:idx:ended`: sorted set of ended run ids, scored by `completed_at` (ms), for cleanupOlderThan. */
export function trackEndedIndexKey(prefix: string): string {
  return `${prefix}track:idx:ended`;
}

/** `<prefix>track:idx:status:<STATUS>`: sorted set of the run ids that had this status, scored by `started_at`. */
export function trackStatusIndexKey(prefix: string, status: string): string {
  return `${prefix}track:idx:status:${status}`;
}

/** `<prefix>track:idx:pipeline:<pipeline_id>`: sorted set of one pipeline's run ids, scored by `started_at`. */
export function trackPipelineIndexKey(prefix: string, pipelineId: string): string {
  return `${prefix}track:idx:pipeline:${pipelineId}`;
}

/** `<prefix>track:idx:pipelines`: set of the pipeline ids that have a pipeline index (for the prune pass). */
export function trackPipelinesKey(prefix: string): string {
  return `${prefix}track:idx:pipelines`;
}
