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
 * lost while one of them is down (by default one consumes at a time, holding a lease, so
 * each run's lines keep their order; the others take over when it stops); it
 * validates the entry, appends a `StepLogEvent` or
 * `StepProgressEvent` to the run's log (which gives it its seq), publishes it, then
 * acknowledges and deletes the entry. Invalid entries are acknowledged and reported,
 * never retried and never fatal.
 */
import { loggerOf, type Logger } from '../core/logger.js';
import { logError } from '../core/log-throttle.js';
import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { ErrorCodes, FlowcastError, InvalidArgumentError } from '../core/errors.js';
import { checkId, checkKnownKeys, checkNonEmptyString, checkObject, checkPositiveInt, show } from '../core/validate.js';
import type { EventDraft, FlowcastEvent } from '../events/types.js';
import { dropConnection } from './connection-end.js';
import { IngestRefused, parseIngestEntry, type IngestEntry } from './ingest-entry.js';

export { parseIngestEntry, type IngestEntry, type ParsedIngestEntry } from './ingest-entry.js';
import { ingestKey, ingestLockKey } from './keys.js';
import { LEASE_SCRIPT, LuaScript, RELEASE_SCRIPT } from './lua.js';
import { RedisRunState } from './run-state.js';
import { RedisPubSubTransport } from './transport.js';

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
   * `true`: one ingestor of the group consumes at a time (it holds a lease, renewed as it
   * goes); the others stand by and take over within `leaseMs` when it stops or dies. So
   * the lines of a run keep the order they were written in. `false`: every ingestor
   * consumes at once (more throughput; lines of one run written in a burst may be
   * reordered between ingestors).
   * @default true
   */
  exclusive?: boolean;
  /**
   * How long the exclusive ingestor's lease lasts without renewal, in milliseconds (more
   * than `blockMs`): the longest the stream goes unconsumed after its ingestor died.
   * @default 10000
   */
  leaseMs?: number;
  /**
   * Called with each event after its append and before its publish (e.g. tracking's
   * recorder); awaited. An error is reported, the event is still published.
   */
  onEvent?: (event: FlowcastEvent) => void | Promise<void>;
  /**
   * Where refused entries (`warn`) and Redis errors (`error`, connection errors
   * rate-limited) go unless `onInvalid` / `onError` take them. A pino-compatible logger.
   * @default a pino logger at `info` on stderr
   */
  logger?: Logger;
  /** Called for each refused entry. Defaults to a warning on the logger. */
  onInvalid?: (entry: IngestEntry, reason: string, id: string) => void;
  /** Called on Redis errors (the ingestor keeps going). Defaults to the logger. */
  onError?: (error: unknown, where: string) => void;
}

const KNOWN = ['transport', 'runState', 'group', 'consumer', 'batchSize', 'blockMs', 'claimIdleMs', 'exclusive', 'leaseMs', 'logger', 'onEvent', 'onInvalid', 'onError'] as const;
const leaseScript = new LuaScript(LEASE_SCRIPT);
const releaseScript = new LuaScript(RELEASE_SCRIPT);

/** Thrown inside the loop when the exclusive ingestor lost its lease mid-batch. */
class LeaseLost extends Error {}

/** What the step a line belongs to looks like now. */
interface StepRef {
  pipelineId: string;
  index: number;
  taskId: string;
  attempt: number;
}


/** Raw stream entries as ioredis returns them. */
type RawEntry = [string, string[]];

function fieldsOf(raw: string[]): IngestEntry {
  const entry: IngestEntry = {};
  for (let i = 0; i + 1 < raw.length; i += 2) entry[raw[i] as string] = raw[i + 1] as string;
  return entry;
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
  readonly #exclusive: boolean;
  readonly #leaseMs: number;
  readonly #leaseKey: string;
  #leaseRenewedAt = 0;
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
    if (options.exclusive !== undefined && typeof options.exclusive !== 'boolean') throw new InvalidArgumentError(`exclusive must be a boolean, received ${show(options.exclusive)}`);
    this.#exclusive = options.exclusive ?? true;
    this.#leaseMs = checkPositiveInt(options.leaseMs ?? 10_000, 'leaseMs');
    if (this.#leaseMs <= this.#blockMs) throw new InvalidArgumentError(`leaseMs (${this.#leaseMs}) must be more than blockMs (${this.#blockMs}): the lease is renewed between reads`);
    this.#leaseKey = ingestLockKey(this.transport.keyPrefix);
    this.#onEvent = options.onEvent ?? null;
    const logger = loggerOf(options.logger, 'ExternalEventIngestor options.logger');
    this.#onInvalid = options.onInvalid ?? ((entry, reason, id) => logger.warn({ entry, id }, `ingest: entry ${id} refused: ${reason} (${show(entry)})`));
    this.#onError = options.onError ?? ((error, where) => logError(logger, error, `ingest: ${where}`));
  }

  /** Creates the consumer group when missing and starts consuming. Resolves once the group exists. */
  async start(): Promise<void> {
    if (this.#closed) throw new FlowcastError(ErrorCodes.CLOSED, 'ExternalEventIngestor.start(): the ingestor is closed');
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
    // Entries this consumer read and did not acknowledge (an error stopped a batch) go first.
    let ownPending = true;
    while (!this.#closed) {
      try {
        if (this.#exclusive) {
          const lease = await this.#renewLease();
          if (lease === 0) {
            await new Promise((resolve) => setTimeout(resolve, this.#blockMs));
            continue;
          }
          // Just took over: what the previous holder read and never acknowledged comes first, in order.
          if (lease === 2) await this.#claim(0);
        } else if (Date.now() - this.#lastClaim >= Math.min(this.#claimIdleMs, 5000)) {
          this.#lastClaim = Date.now();
          await this.#claim(this.#claimIdleMs);
        }
        const conn = this.#conn as Redis;
        const reply = (
          ownPending
            ? await conn.xreadgroup('GROUP', this.group, this.consumer, 'COUNT', this.#batch, 'STREAMS', this.key, '0')
            : await conn.xreadgroup('GROUP', this.group, this.consumer, 'COUNT', this.#batch, 'BLOCK', this.#blockMs, 'STREAMS', this.key, '>')
        ) as [string, RawEntry[]][] | null;
        failures = 0;
        const entries = reply?.[0]?.[1] ?? [];
        if (ownPending && entries.length === 0) ownPending = false;
        if (entries.length > 0) await this.#handle(entries);
      } catch (error) {
        if (this.#closed) return;
        ownPending = true;
        if (error instanceof LeaseLost) continue;
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

  /** Takes or keeps the lease: 2 taken now, 1 kept, 0 another ingestor holds it. */
  async #renewLease(): Promise<number> {
    const state = Number(await leaseScript.run(this.transport.redis, [this.#leaseKey], [this.consumer, this.#leaseMs]));
    if (state !== 0) this.#leaseRenewedAt = Date.now();
    return state;
  }

  /** Renews the lease during a long batch; stops the batch if it was lost. */
  async #keepLease(): Promise<void> {
    if (!this.#exclusive || Date.now() - this.#leaseRenewedAt < this.#leaseMs / 3) return;
    if ((await this.#renewLease()) !== 1) throw new LeaseLost('the ingest lease was lost');
  }

  /** Takes over entries another ingestor read and never acknowledged (it died). */
  async #claim(minIdleMs: number): Promise<void> {
    let cursor = '0-0';
    do {
      const reply = (await this.transport.redis.xautoclaim(this.key, this.group, this.consumer, minIdleMs, cursor, 'COUNT', this.#batch)) as [string, (RawEntry | null)[]];
      cursor = reply[0];
      const entries = reply[1].filter((e): e is RawEntry => e !== null);
      if (entries.length > 0) await this.#handle(entries);
    } while (cursor !== '0-0' && !this.#closed);
  }

  async #handle(entries: RawEntry[]): Promise<void> {
    const steps = new Map<string, Promise<Map<string, StepRef>>>();
    const done: string[] = [];
    for (const [id, raw] of entries) {
      if (this.#exclusive && done.length > 0 && Date.now() - this.#leaseRenewedAt >= this.#leaseMs / 3) {
        try {
          await this.#keepLease();
        } catch (error) {
          await this.#ack(done);
          throw error;
        }
      }
      const entry = fieldsOf(raw);
      try {
        const parsed = parseIngestEntry(entry);
        let runSteps = steps.get(parsed.runId);
        if (runSteps === undefined) {
          runSteps = this.#stepsOf(parsed.runId);
          steps.set(parsed.runId, runSteps);
        }
        const ref = (await runSteps).get(parsed.step);
        if (ref === undefined) throw new IngestRefused(`run "${parsed.runId}" has no step "${parsed.step}"`);
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
        if (event === null) throw new IngestRefused(`run "${parsed.runId}" has ended`);
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
        if (!(error instanceof IngestRefused)) {
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
      if (rec === null) throw new IngestRefused(`unknown run "${runId}"`);
      if (rec.status !== 'RUNNING') throw new IngestRefused(`run "${runId}" has ended (${rec.status})`);
      for (const step of rec.plan.steps) {
        const state = rec.steps[step.name];
        out.set(step.name, { pipelineId: rec.pipeline_id, index: step.index, taskId: state?.task_id ?? 'external', attempt: Math.max(1, state?.attempt ?? 1) });
      }
      return out;
    }
    const head = await this.transport.read(runId, { limit: 1 });
    const start = head.events[0];
    if (start === undefined || start.type !== 'PipelineStartEvent') throw new IngestRefused(`unknown run "${runId}"`);
    if (head.ended) throw new IngestRefused(`run "${runId}" has ended`);
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
    if (conn !== null) dropConnection(conn);
    // Redis is away: the loop's next command (and the hand-over) would wait for it; the
    // lease runs out by itself and another ingestor takes over.
    if (this.transport.redis.status !== 'ready') return;
    await this.#loop;
    // Hand over at once instead of after the lease runs out.
    if (this.#exclusive) await releaseScript.run(this.transport.redis, [this.#leaseKey], [this.consumer]).catch(() => undefined);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
