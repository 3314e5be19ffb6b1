/**
 * The writes of {@link RedisRunState}, each one Lua script of lua.ts on the run's keys
 * (`<prefix>{<run_id>}:state` next to the run's log): a run's creation, a transition
 * (optimistic: a compare-and-set on the record's version, run again on a fresh read when
 * another process wrote meanwhile), and the reopening of an ended run. Each script stores
 * the record, gives the events the run's next seqs and appends them to the log in the
 * same call, and publishes them there when the transport says so
 * (`RedisPubSubTransport.liveChannels`).
 */
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { FlowcastError, ErrorCodes, InvalidArgumentError, RunNotResumableError } from '../core/errors.js';
import { show } from '../core/validate.js';
import { isTerminalEvent, type EventDraft, type FlowcastEvent } from '../events/types.js';
import type { RunRecord, Transition } from '../pipeline/run-state.js';
import { encodeDraft, encodeOwnDraft, type EncodedDraft } from './event-codec.js';
import { runLogKey, runLogMetaKey, runStateKey } from './keys.js';
import { CREATE_SCRIPT, LuaScript, REOPEN_SCRIPT, TRANSITION_SCRIPT } from './lua.js';
import { parseRecord, recordJson, summaryOf } from './run-record-codec.js';
import { parsedPlan, planJsonOf } from './run-plans.js';
import type { CachedRun, KeptRuns } from './run-state-cache.js';
import type { RedisPubSubTransport } from './transport.js';

const createScript = new LuaScript(CREATE_SCRIPT);
const transitionScript = new LuaScript(TRANSITION_SCRIPT);
const reopenScript = new LuaScript(REOPEN_SCRIPT);

// The first element of every reply of the three scripts.
const CREATED = 0;
const EXISTS = 1;
const UNKNOWN = 2;
const CONFLICT = 3;
const LOG_GONE = 4;

/** A transition's value and the events it appended (seqs given). */
type Committed<T> = { value: T; events: FlowcastEvent[] };

/** The Lua-backed writes of one {@link RedisRunState}: the caller checked its arguments and serialises a run's writes. */
export class RunStateCommits {
  readonly #redis: Redis;
  readonly #transport: RedisPubSubTransport;
  readonly #kept: KeptRuns;
  readonly #maxAttempts: number;

  /** Writes through `redis` to the logs of `transport`, keeping what it wrote in `kept`. */
  constructor(redis: Redis, transport: RedisPubSubTransport, kept: KeptRuns, maxAttempts: number) {
    this.#redis = redis;
    this.#transport = transport;
    this.#kept = kept;
    this.#maxAttempts = maxAttempts;
  }

  /** Creates the run (refused when it exists) with its first events. */
  async create(record: RunRecord, events: EventDraft[]): Promise<FlowcastEvent[]> {
    const runId = record.run_id;
    const drafts = this.#encode(events, runId, 'RedisRunState.create', false);
    const rec = recordJson(record);
    const planJson = planJsonOf(record.plan);
    const channels = this.#transport.liveChannels(runId, record.pipeline_id);
    const args = [rec, planJson, JSON.stringify(summaryOf(record)), ...this.#logArgs(record, drafts, channels)];
    // The run's start marker goes first (sent before the script, on the same connection): a run with events always has one.
    const marked = this.#transport.markRun('start', record.pipeline_id, runId);
    const reply = (await createScript.run(this.#redis, this.#keys(runId), args)) as unknown[];
    await marked;
    if (reply[0] === EXISTS) throw new FlowcastError(ErrorCodes.INVALID_ARGUMENT, `Run "${runId}" already exists`);
    if (record.status === 'RUNNING') this.#kept.remember(runId, { plan: parsedPlan(planJson), rec, ver: '1' });
    return this.#ended(record.pipeline_id, runId, this.#finish(drafts, reply.slice(1), channels));
  }

  /**
   * Runs `fn` on the kept record (else on a fresh read) and stores its result if the
   * record did not move; on a conflict, again on the record the script answered with,
   * up to `maxAttempts` times on fresh reads, with a growing jittered pause between.
   */
  async transition<T>(runId: string, fn: (record: RunRecord) => Transition<T>): Promise<Committed<T>> {
    const keys = this.#keys(runId);
    let run = this.#kept.get(runId);
    // `fresh`: the record was just read from Redis (not this process's kept copy).
    let fresh = false;
    if (run === undefined || run.rec === null) {
      run = await this.#read(runId, run);
      fresh = true;
    }
    for (let attempt = 1; ; ) {
      const ver = run.ver as string;
      const record = run.obj ?? parseRecord(run.rec as string);
      run.obj = null;
      record.plan = run.plan;
      const { value, events } = fn(record);
      const drafts = this.#encode(events, runId, 'RedisRunState.transition', true);
      const rec = recordJson(record);
      // The summary changes only when the run ends (a running run's is written by create).
      const sum = record.status === 'RUNNING' ? '' : JSON.stringify(summaryOf(record));
      const channels = this.#transport.liveChannels(runId, record.pipeline_id);
      const args = [ver, rec, sum, ...this.#logArgs(record, drafts, channels)];
      const reply = (await transitionScript.run(this.#redis, keys, args)) as unknown[];
      if (reply[0] === CREATED) {
        if (record.status === 'RUNNING') this.#kept.remember(runId, { plan: run.plan, rec, ver: String(Number(ver) + 1), obj: record });
        else this.#kept.delete(runId);
        return { value, events: this.#ended(record.pipeline_id, runId, this.#finish(drafts, reply.slice(1), channels)) };
      }
      if (reply[0] === UNKNOWN) {
        this.#kept.delete(runId);
        throw new FlowcastError(ErrorCodes.NOT_FOUND, `Unknown run "${runId}"`);
      }
      if (reply[0] !== CONFLICT || typeof reply[2] !== 'string') {
        throw new FlowcastError(ErrorCodes.CONNECTION_FAILED, `Unexpected answer of the transition script: ${show(reply)}`);
      }
      // Another process wrote since: the script answered with the current record.
      run = this.#kept.remember(runId, { plan: run.plan, rec: reply[2], ver: String(reply[1]) });
      if (!fresh) {
        fresh = true;
        continue;
      }
      if (attempt >= this.#maxAttempts) {
        throw new FlowcastError(
          ErrorCodes.CONFLICT,
          `Transition of run "${runId}" lost to concurrent writers ${attempt} times (read at version ${ver}, now ${show(reply[1])}); giving up`,
        );
      }
      attempt++;
      // Back off a little, more after each loss, with jitter so contenders spread out.
      const delay = Math.random() * Math.min(50, 2 ** Math.min(attempt, 6));
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }

  /**
   * See `RunStateStore.reopen`: on a fresh read of the record, and, when `fn` turns the
   * ended run back to RUNNING, one script that checks the version, removes the log's end
   * mark and appends the events (so every process agrees: the run runs again).
   */
  async reopen<T>(runId: string, fn: (record: RunRecord) => Transition<T>): Promise<Committed<T>> {
    const keys = this.#keys(runId);
    for (let attempt = 1; ; attempt++) {
      this.#kept.delete(runId);
      const run = await this.#read(runId, undefined);
      const record = parseRecord(run.rec as string);
      record.plan = run.plan;
      if (record.status === 'RUNNING') return this.transition(runId, fn);
      const { value, events } = fn(record);
      // Read again: `fn` changed it.
      const running = (record as { status: string }).status === 'RUNNING';
      if (!running && events.length === 0) return { value, events: [] };
      const drafts = this.#encode(events, runId, 'RedisRunState.reopen', true);
      const rec = recordJson(record);
      const channels = this.#transport.liveChannels(runId, record.pipeline_id);
      const ver = run.ver as string;
      const args = [ver, rec, JSON.stringify(summaryOf(record)), ...this.#logArgs(record, drafts, channels)];
      if (running) await this.#markResume(record.pipeline_id, runId, keys[1] as string, events);
      const reply = (await reopenScript.run(this.#redis, keys, args)) as unknown[];
      if (reply[0] === CREATED) {
        if (running) this.#kept.remember(runId, { plan: run.plan, rec, ver: String(Number(ver) + 1), obj: record });
        return { value, events: this.#ended(record.pipeline_id, runId, this.#finish(drafts, reply.slice(1), channels)) };
      }
      if (reply[0] === UNKNOWN) throw new FlowcastError(ErrorCodes.NOT_FOUND, `Unknown run "${runId}"`);
      if (reply[0] === LOG_GONE) throw new RunNotResumableError(`Run "${runId}" cannot be resumed: its event log expired`, runId, null);
      if (reply[0] !== CONFLICT) throw new FlowcastError(ErrorCodes.CONNECTION_FAILED, `Unexpected answer of the reopen script: ${show(reply)}`);
      if (attempt >= this.#maxAttempts) throw new FlowcastError(ErrorCodes.CONFLICT, `Reopening run "${runId}" lost to concurrent writers ${attempt} times; giving up`);
    }
  }

  /**
   * The `resume` marker of a run about to be reopened, at the seq its PipelineResumeEvent
   * will get (the log's last seq + 1: an ended log takes no other append), written before
   * the reopen script runs, as a start marker before a first event.
   * A reopen that then loses to another resume leaves a marker the winner writes too: a
   * reader follows a run it already follows once.
   */
  async #markResume(pipelineId: string, runId: string, metaKey: string, events: EventDraft[]): Promise<void> {
    const at = events.findIndex((e) => e.type === 'PipelineResumeEvent');
    if (at < 0) return;
    const last = Number((await this.#redis.hget(metaKey, 'seq')) ?? 0);
    await this.#transport.markRun('resume', pipelineId, runId, last + 1 + at);
  }

  #keys(runId: string): string[] {
    const prefix = this.#transport.keyPrefix;
    return [runStateKey(prefix, runId), runLogMetaKey(prefix, runId), runLogKey(prefix, runId)];
  }

  /** `channels`: where the script publishes the events as it appends them (see `RedisPubSubTransport.liveChannels`). */
  #logArgs(record: RunRecord, drafts: EncodedDraft[], channels: readonly string[]): (string | number)[] {
    const t = this.#transport;
    const args: (string | number)[] = [t.maxEventsPerRun, t.ttlSeconds, t.endedTtlSeconds, record.status !== 'RUNNING' ? 1 : 0, drafts.length, randomUUID(), ...channels];
    for (const d of drafts) args.push(d.head, d.terminal ? 1 : 0);
    return args;
  }

  /** `own`: the drafts were made by the transition's `fn` for this call (encoded in place). */
  #encode(drafts: EventDraft[], runId: string, what: string, own: boolean): EncodedDraft[] {
    if (!Array.isArray(drafts)) throw new InvalidArgumentError(`${what}: events must be an array, received ${show(drafts)}`);
    const out: EncodedDraft[] = [];
    for (const d of drafts) {
      if (typeof d === 'object' && d !== null && d.run_id !== runId) {
        throw new InvalidArgumentError(`${what}: an event of run "${String(d.run_id)}" cannot go to the log of run "${runId}"`);
      }
      out.push(own ? encodeOwnDraft(d, what) : encodeDraft(d, what));
    }
    return out;
  }

  /** Events whose seq the script gave (0: refused after the terminal event), finished as the script left them (published or not). */
  #finish(drafts: EncodedDraft[], seqs: unknown[], channels: readonly string[]): FlowcastEvent[] {
    const out: FlowcastEvent[] = [];
    drafts.forEach((d, i) => {
      const seq = Number(seqs[i]);
      if (seq > 0) out.push(this.#transport.finishAppended(d, seq, channels));
    });
    return out;
  }

  /** Events just appended: when the terminal one is among them, the run's end marker follows it. */
  #ended(pipelineId: string, runId: string, events: FlowcastEvent[]): FlowcastEvent[] {
    if (events.some((e) => isTerminalEvent(e))) void this.#transport.markRun('end', pipelineId, runId);
    return events;
  }

  /** Reads a run's record and version (and its plan when not kept yet). */
  async #read(runId: string, known: CachedRun | undefined): Promise<CachedRun> {
    const key = runStateKey(this.#transport.keyPrefix, runId);
    const fields = known === undefined ? await this.#redis.hmget(key, 'rec', 'ver', 'plan') : await this.#redis.hmget(key, 'rec', 'ver');
    const [rec, ver, planJson] = fields;
    if (rec === null || ver === null || rec === undefined || ver === undefined) throw new FlowcastError(ErrorCodes.NOT_FOUND, `Unknown run "${runId}"`);
    let plan = known?.plan;
    if (plan === undefined) {
      if (planJson === null || planJson === undefined) throw new FlowcastError(ErrorCodes.NOT_FOUND, `Run "${runId}" has no plan`);
      plan = parsedPlan(planJson);
    }
    return this.#kept.remember(runId, { plan, rec, ver });
  }
}
