/**
 * Task output from processes that are not Node (seed 003): a shell script or a Python
 * job appends log lines and progress to a run with one Redis command, and they reach
 * browsers like any other event.
 *
 * The producer appends an entry with flat string fields to the stream `<prefix>ingest`:
 *
 * ```sh
 * redis-cli XADD flowcast:ingest '*' run_id "$RUN_ID" step build type log message "compiling..."
 * redis-cli XADD flowcast:ingest '*' run_id "$RUN_ID" step build type progress progress 0.4 message "40%"
 * ```
 *
 * An {@link ExternalEventIngestor} (started by a server or a worker; any number of them)
 * reads the stream in one consumer group, so each entry is handled once and nothing is
 * lost while one of them is down; it validates the entry, appends a `StepLogEvent` or
 * `StepProgressEvent` to the run's log (which gives it its seq), publishes it, then
 * acknowledges and deletes the entry. Invalid entries are acknowledged and reported,
 * never retried and never fatal.
 */
import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { describeError, InvalidArgumentError } from '../core/errors.js';
import { checkId, checkKnownKeys, checkNonEmptyString, checkObject, checkPositiveInt, show } from '../core/validate.js';
import type { EventDraft, FlowcastEvent } from '../events/types.js';
import { ingestKey } from './keys.js';
import { RedisRunState } from './run-state.js';
import { RedisPubSubTransport } from './transport.js';

/** One entry of the ingest stream as the producer wrote it (field → value). */
export type IngestEntry = Record<string, string>;

/** Options of {@link ExternalEventIngestor}. */
export interface ExternalEventIngestorOptions {
  /** The log the events go to (its `keyPrefix` names the ingest stream). */
  transport: RedisPubSubTransport;
  /**
   * Where the step's index, job id and attempt come from. Without it they come from the
   * run's `PipelineStartEvent` (job id `"external"`, attempt 1).
   */
  runState?: RedisRunState;
  /**
   * Consumer group shared by every ingestor of a deployment.
   * @default "flowcast"
   */
  group?: string;
  /**
   * This ingestor's name in the group (unique per process).
   * @default "<host>:<pid>:<random>"
   */
  consumer?: string;
  /**
   * Entries read at once.
   * @default 100
   */
  batchSize?: number;
  /**
   * How long one read waits for new entries, in milliseconds (also how long `close()` may wait).
   * @default 1000
   */
  blockMs?: number;
  /**
   * An entry read by an ingestor that did not acknowledge it within this many
   * milliseconds (it died) is taken over by another.
   * @default 30000
   */
  claimIdleMs?: number;
  /**
   * Called with each event after its append and before its publish (e.g. tracking's
   * recorder); awaited. An error is reported, the event is still published.
   */
  onEvent?: (event: FlowcastEvent) => void | Promise<void>;
  /** Called for each refused entry. Defaults to a warning on stderr. */
  onInvalid?: (entry: IngestEntry, reason: string, id: string) => void;
  /** Called on Redis errors (the ingestor keeps going). Defaults to stderr. */
  onError?: (error: unknown, where: string) => void;
}

const KNOWN = ['transport', 'runState', 'group', 'consumer', 'batchSize', 'blockMs', 'claimIdleMs', 'onEvent', 'onInvalid', 'onError'] as const;
const TYPES: Record<string, 'log' | 'progress'> = {
  log: 'log',
  step_log: 'log',
  StepLogEvent: 'log',
  progress: 'progress',
  step_progress: 'progress',
  StepProgressEvent: 'progress',
};
const MAX_MESSAGE = 64 * 1024;

/** What the step a line belongs to looks like now. */
interface StepRef {
  pipelineId: string;
  index: number;
  taskId: string;
  attempt: number;
}

/** Thrown inside {@link ExternalEventIngestor} for an entry that can never be ingested. */
class Refused extends InvalidArgumentError {}

/** Raw stream entries as ioredis returns them. */
type RawEntry = [string, string[]];

function fieldsOf(raw: string[]): IngestEntry {
  const entry: IngestEntry = {};
  for (let i = 0; i + 1 < raw.length; i += 2) entry[raw[i] as string] = raw[i + 1] as string;
  return entry;
}

/**
 * Checks an ingest entry and turns it into the parts of an event. Exported for producers
 * written in TypeScript that want to validate before writing.
 */
export function parseIngestEntry(entry: IngestEntry): { runId: string; step: string; kind: 'log' | 'progress'; lines: string[]; progress: number | null; message: string | null; item: number | null } {
  const runId = entry.run_id;
  if (runId === undefined || !/^[A-Za-z0-9_.:\-/@]{1,200}$/.test(runId)) throw new Refused(`run_id must be 1-200 characters of letters, digits and _ . : - / @, received ${show(runId)}`);
  const step = entry.step ?? entry.step_name;
  if (step === undefined || step.length === 0 || step.length > 200) throw new Refused(`step must be a step name, received ${show(step)}`);
  const kind = TYPES[entry.type ?? ''];
  if (kind === undefined) throw new Refused(`type must be "log" or "progress", received ${show(entry.type)}`);
  const message = entry.message ?? null;
  if (message !== null && message.length > MAX_MESSAGE) throw new Refused(`message is longer than ${MAX_MESSAGE} characters (${message.length})`);
  let item: number | null = null;
  if (entry.item !== undefined) {
    item = Number(entry.item);
    if (!Number.isInteger(item) || item < 0) throw new Refused(`item must be an integer >= 0, received ${show(entry.item)}`);
  }
  if (kind === 'log') {
    if (message === null) throw new Refused('a log entry needs a message');
    return { runId, step, kind, lines: message.replace(/\r?\n$/, '').split(/\r?\n/), progress: null, message: null, item };
  }
  const progress = Number(entry.progress);
  if (entry.progress === undefined || entry.progress.trim() === '' || !Number.isFinite(progress) || progress < 0 || progress > 1) {
    throw new Refused(`progress must be a number from 0 to 1, received ${show(entry.progress)}`);
  }
  return { runId, step, kind, lines: [], progress, message, item };
}

/**
 * Moves entries of the ingest stream into run logs. Start it with {@link start}; stop
 * it with {@link close} (idempotent; it opened one connection, a `duplicate()` of the
 * transport's client for the blocking reads, and closes only that).
 *
 * @example
 * const ingestor = new ExternalEventIngestor({ transport, runState });
 * await ingestor.start();
 */
export class ExternalEventIngestor {
  readonly transport: RedisPubSubTransport;
  readonly key: string;
  readonly group: string;
  readonly consumer: string;
  readonly #runState: RedisRunState | null;
  readonly #batch: number;
  readonly #blockMs: number;
  readonly #claimIdleMs: number;
  readonly #onEvent: ((event: FlowcastEvent) => void | Promise<void>) | null;
  readonly #onInvalid: (entry: IngestEntry, reason: string, id: string) => void;
  readonly #onError: (error: unknown, where: string) => void;
  #conn: Redis | null = null;
  #loop: Promise<void> | null = null;
  #closed = false;
  #lastClaim = 0;
  /** Entries ingested and refused since start. */
  readonly stats = { ingested: 0, refused: 0 };

  constructor(options: ExternalEventIngestorOptions) {
    checkKnownKeys(checkObject(options, 'ExternalEventIngestor options'), KNOWN, 'ExternalEventIngestor options');
    if (!(options.transport instanceof RedisPubSubTransport)) {
      throw new InvalidArgumentError(`ExternalEventIngestor options.transport must be a RedisPubSubTransport, received ${show(options.transport)}`);
    }
    if (options.runState !== undefined && !(options.runState instanceof RedisRunState)) {
      throw new InvalidArgumentError(`ExternalEventIngestor options.runState must be a RedisRunState, received ${show(options.runState)}`);
    }
    for (const name of ['onEvent', 'onInvalid', 'onError'] as const) {
      if (options[name] !== undefined && typeof options[name] !== 'function') throw new InvalidArgumentError(`${name} must be a function, received ${show(options[name])}`);
    }
    this.transport = options.transport;
    this.key = ingestKey(this.transport.keyPrefix);
    this.group = checkId(options.group ?? 'flowcast', 'group');
    this.consumer = checkNonEmptyString(options.consumer ?? `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`, 'consumer');
    this.#runState = options.runState ?? null;
    this.#batch = checkPositiveInt(options.batchSize ?? 100, 'batchSize');
    this.#blockMs = checkPositiveInt(options.blockMs ?? 1000, 'blockMs');
    this.#claimIdleMs = checkPositiveInt(options.claimIdleMs ?? 30_000, 'claimIdleMs');
    this.#onEvent = options.onEvent ?? null;
    this.#onInvalid = options.onInvalid ?? ((entry, reason, id) => console.warn(`flowcast ingest: entry ${id} refused: ${reason} (${show(entry)})`));
    this.#onError = options.onError ?? ((error, where) => console.error(`flowcast ingest: ${where}: ${describeError(error)}`));
  }

  /** Creates the consumer group when missing and starts consuming. Resolves once the group exists. */
  async start(): Promise<void> {
    if (this.#closed) throw new InvalidArgumentError('ExternalEventIngestor.start(): the ingestor is closed');
    if (this.#loop !== null) return;
    try {
      // From the stream's start: entries written before any ingestor ran are not lost.
      await this.transport.redis.xgroup('CREATE', this.key, this.group, '0', 'MKSTREAM');
    } catch (error) {
      if (!(error instanceof Error) || !error.message.startsWith('BUSYGROUP')) throw error;
    }
    this.#conn = this.transport.redis.duplicate();
    this.#conn.on('error', (error: unknown) => this.#onError(error, 'ingest connection'));
    this.#loop = this.#run();
  }

  async #run(): Promise<void> {
    let failures = 0;
    while (!this.#closed) {
      try {
        if (Date.now() - this.#lastClaim >= Math.min(this.#claimIdleMs, 5000)) {
          this.#lastClaim = Date.now();
          await this.#claim();
        }
        const reply = (await (this.#conn as Redis).xreadgroup(
          'GROUP', this.group, this.consumer, 'COUNT', this.#batch, 'BLOCK', this.#blockMs, 'STREAMS', this.key, '>',
        )) as [string, RawEntry[]][] | null;
        failures = 0;
        const entries = reply?.[0]?.[1] ?? [];
        if (entries.length > 0) await this.#handle(entries);
      } catch (error) {
        if (this.#closed) return;
        if (error instanceof Error && error.message.startsWith('NOGROUP')) {
          // The stream was deleted (FLUSHDB, a restart without persistence): make the group again.
          await this.transport.redis.xgroup('CREATE', this.key, this.group, '0', 'MKSTREAM').catch(() => undefined);
        } else {
          this.#onError(error, 'reading the ingest stream');
        }
        failures++;
        await new Promise((resolve) => setTimeout(resolve, Math.min(5000, 50 * 2 ** Math.min(failures, 7))));
      }
    }
  }

  /** Takes over entries another ingestor read and never acknowledged (it died). */
  async #claim(): Promise<void> {
    let cursor = '0-0';
    do {
      const reply = (await this.transport.redis.xautoclaim(this.key, this.group, this.consumer, this.#claimIdleMs, cursor, 'COUNT', this.#batch)) as [string, (RawEntry | null)[]];
      cursor = reply[0];
      const entries = reply[1].filter((e): e is RawEntry => e !== null);
      if (entries.length > 0) await this.#handle(entries);
    } while (cursor !== '0-0' && !this.#closed);
  }

  async #handle(entries: RawEntry[]): Promise<void> {
    const steps = new Map<string, Promise<Map<string, StepRef>>>();
    const done: string[] = [];
    for (const [id, raw] of entries) {
      const entry = fieldsOf(raw);
      try {
        const parsed = parseIngestEntry(entry);
        let runSteps = steps.get(parsed.runId);
        if (runSteps === undefined) {
          runSteps = this.#stepsOf(parsed.runId);
          steps.set(parsed.runId, runSteps);
        }
        const ref = (await runSteps).get(parsed.step);
        if (ref === undefined) throw new Refused(`run "${parsed.runId}" has no step "${parsed.step}"`);
        const base = { pipeline_id: ref.pipelineId, run_id: parsed.runId, timestamp: new Date().toISOString(), step_name: parsed.step, step_index: ref.index, task_id: ref.taskId, attempt: ref.attempt };
        let draft: EventDraft;
        if (parsed.kind === 'log') {
          draft = { type: 'StepLogEvent', ...base, lines: parsed.lines };
          if (parsed.item !== null) draft.item = parsed.item;
        } else {
          draft = { type: 'StepProgressEvent', ...base, progress: parsed.progress as number };
          if (parsed.message !== null) draft.message = parsed.message;
        }
        const event = await this.transport.append(draft);
        if (event === null) throw new Refused(`run "${parsed.runId}" has ended`);
        if (this.#onEvent !== null) {
          try {
            await this.#onEvent(event);
          } catch (error) {
            this.#onError(error, `onEvent of ${event.type} (run ${event.run_id}, seq ${event.seq})`);
          }
        }
        await this.transport.publish(event);
        this.stats.ingested++;
      } catch (error) {
        if (!(error instanceof Refused)) {
          // Redis trouble: stop here; what is not acknowledged is read again later.
          await this.#ack(done);
          throw error;
        }
        this.stats.refused++;
        this.#onInvalid(entry, error.message, id);
      }
      done.push(id);
    }
    await this.#ack(done);
  }

  async #ack(ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    await this.transport.redis.multi().xack(this.key, this.group, ...ids).xdel(this.key, ...ids).exec();
  }

  /** The steps of a run by name, from the run state or else from the run's first event. */
  async #stepsOf(runId: string): Promise<Map<string, StepRef>> {
    const out = new Map<string, StepRef>();
    if (this.#runState !== null) {
      const rec = await this.#runState.get(runId);
      if (rec === null) throw new Refused(`unknown run "${runId}"`);
      if (rec.status !== 'RUNNING') throw new Refused(`run "${runId}" has ended (${rec.status})`);
      for (const step of rec.plan.steps) {
        const state = rec.steps[step.name];
        out.set(step.name, { pipelineId: rec.pipeline_id, index: step.index, taskId: state?.task_id ?? 'external', attempt: Math.max(1, state?.attempt ?? 1) });
      }
      return out;
    }
    const head = await this.transport.read(runId, { limit: 1 });
    const start = head.events[0];
    if (start === undefined || start.type !== 'PipelineStartEvent') throw new Refused(`unknown run "${runId}"`);
    if (head.ended) throw new Refused(`run "${runId}" has ended`);
    for (const step of start.steps) {
      out.set(step.step_name, { pipelineId: start.pipeline_id, index: step.step_index, taskId: 'external', attempt: 1 });
    }
    return out;
  }

  /** Stops consuming (after the batch in hand) and closes the ingestor's connection. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const conn = this.#conn;
    this.#conn = null;
    // The blocking read holds the connection: dropping it ends the read at once.
    conn?.disconnect();
    await this.#loop;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
