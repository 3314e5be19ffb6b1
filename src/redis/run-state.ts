import { createHash, randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { FlowcastError, ErrorCodes, InvalidArgumentError, RunNotResumableError, toError } from '../core/errors.js';
import { checkId, checkKnownKeys, checkObject, checkPositiveInt, show } from '../core/validate.js';
import { isTerminalEvent, type EventDraft, type FlowcastEvent } from '../events/types.js';
import type { PipelinePlan } from '../pipeline/plan.js';
import type { RunRecord, RunStateStore, RunSummary, StepState, Transition } from '../pipeline/run-state.js';
import { encodeDraft, encodeOwnDraft, type EncodedDraft } from './event-codec.js';
import { runLogKey, runLogMetaKey, runStateKey } from './keys.js';
import { CREATE_SCRIPT, LuaScript, REOPEN_SCRIPT, TRANSITION_SCRIPT } from './lua.js';
import { RedisPubSubTransport, checkRedisClient } from './transport.js';

/** Options of {@link RedisRunState}. */
export interface RedisRunStateOptions {
  /**
   * The transport whose per-run logs the transitions' events go to. Its `keyPrefix`,
   * `maxEventsPerRun`, `ttlSeconds` and `endedTtlSeconds` apply to the run state too, so
   * a run's record and log live and expire together.
   */
  transport: RedisPubSubTransport;
  /**
   * Times a transition is tried on a fresh read when other processes keep changing the
   * same run between its read and its write (a first try on this process's kept copy
   * does not count); then it rejects with `FLOWCAST_ERR_CONFLICT`.
   * @default 100
   */
  maxAttempts?: number;
  /**
   * Runs whose plan (parsed) and last written record this process keeps. A transition
   * of a run this process wrote last needs no read first: it sends its change based on
   * the kept record, and when another process wrote meanwhile, the script answers with
   * the current record and the transition runs again on it.
   * @default 1000
   */
  cachedRuns?: number;
}

const KNOWN = ['transport', 'maxAttempts', 'cachedRuns'] as const;

const createScript = new LuaScript(CREATE_SCRIPT);
const transitionScript = new LuaScript(TRANSITION_SCRIPT);
const reopenScript = new LuaScript(REOPEN_SCRIPT);

/** What this process keeps of a run: its plan, and the record and version it last wrote or read. */
interface CachedRun {
  plan: PipelinePlan;
  rec: string | null;
  ver: string | null;
  /**
   * `rec` parsed, when this process wrote it last: the next transition starts from it
   * without parsing again (and takes it: a transition that fails leaves only `rec`). The
   * engine hands user code copies of what it puts in a record (results, chained inputs).
   */
  obj?: RunRecord | null;
}

const CREATED = 0;
const EXISTS = 1;
const UNKNOWN = 2;
const CONFLICT = 3;
const LOG_GONE = 4;

/** Freezes a plan deeply: a transition that tried to change it would throw instead of diverging from Redis. */
function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/** Plans parsed and frozen, by their JSON: the runs of one pipeline share one (read-only) object. */
const plans = new Map<string, PipelinePlan>();
/** The same plans by a digest of their JSON (what a {@link RunStateHandoff} names). */
const plansByKey = new Map<string, PipelinePlan>();
/** A kept plan's digest. */
const planKeys = new WeakMap<PipelinePlan, string>();
/** The JSON of the plan objects `create` was given (a pipeline passes the same one for every run). */
const planJsons = new WeakMap<PipelinePlan, string>();
const PLANS_KEPT = 256;

function parsedPlan(json: string): PipelinePlan {
  let plan = plans.get(json);
  if (plan === undefined) {
    plan = deepFreeze(JSON.parse(json) as PipelinePlan);
    const key = createHash('sha1').update(json).digest('base64url');
    if (plans.size >= PLANS_KEPT) {
      const oldest = plans.entries().next().value as [string, PipelinePlan];
      plans.delete(oldest[0]);
      plansByKey.delete(planKeys.get(oldest[1]) ?? '');
    }
    plans.set(json, plan);
    plansByKey.set(key, plan);
    planKeys.set(plan, key);
  }
  return plan;
}

function planJsonOf(plan: PipelinePlan): string {
  let json = planJsons.get(plan);
  if (json === undefined) {
    json = JSON.stringify(plan);
    if (typeof plan === 'object' && plan !== null) planJsons.set(plan, json);
  }
  return json;
}

/**
 * What a process that just wrote a run can hand to the next one that will (the BullMQ
 * broker puts it in the step job it sends): the record and version it wrote, and its
 * plan's digest. The receiver's first transition then needs no read; a handoff gone
 * stale meanwhile is caught by the compare-and-set like any kept record.
 */
export interface RunStateHandoff {
  /** Version. */
  v: string;
  /** Record JSON (without the plan). */
  r: string;
  /** The plan's digest. */
  p: string;
}

function summaryOf(r: RunRecord): RunSummary {
  return { run_id: r.run_id, pipeline_id: r.pipeline_id, status: r.status, result: r.result, error: r.error };
}

/** A step's state as stored: the fields still null (most of a run's steps, most of the time) left out. */
function stepJson(st: StepState): string {
  let json = `{"phase":"${st.phase}","attempt":${st.attempt}`;
  if (st.started_at_ms !== null) json += `,"started_at_ms":${st.started_at_ms}`;
  if (st.task_id !== null) json += `,"task_id":${JSON.stringify(st.task_id)}`;
  if (st.carrier !== undefined) json += `,"carrier":${JSON.stringify(st.carrier)}`;
  if (st.result !== null && st.result !== undefined) json += `,"result":${JSON.stringify(st.result)}`;
  if (st.error !== null) json += `,"error":${JSON.stringify(st.error)}`;
  if (st.items !== null) json += `,"items":${JSON.stringify(st.items)}`;
  return `${json}}`;
}

/**
 * The record without its plan, as stored: JSON whose step states leave out their null
 * fields ({@link parseRecord} puts them back). A run's record travels with every
 * transition: what a pending step does not say is not sent.
 */
function recordJson(r: RunRecord): string {
  // The plan and steps left out by unsetting them for the call: an object rest copy costs more on this hot path.
  const { plan, steps } = r;
  (r as { plan: PipelinePlan | undefined }).plan = undefined;
  (r as { steps: RunRecord['steps'] | undefined }).steps = undefined;
  let json: string;
  try {
    json = JSON.stringify(r);
  } finally {
    r.plan = plan;
    r.steps = steps;
  }
  let out = `${json.slice(0, -1)},"steps":{`;
  let first = true;
  for (const name in steps) {
    out += `${first ? '' : ','}${JSON.stringify(name)}:${stepJson(steps[name] as StepState)}`;
    first = false;
  }
  return `${out}}}`;
}

/** A stored record (see {@link recordJson}) with every step state whole again, fields in their usual order. */
function parseRecord(json: string): RunRecord {
  const r = JSON.parse(json) as RunRecord;
  const steps: Record<string, StepState> = {};
  for (const name in r.steps) {
    const s = r.steps[name] as Partial<StepState> & Pick<StepState, 'phase' | 'attempt'>;
    const st: StepState = {
      phase: s.phase,
      attempt: s.attempt,
      started_at_ms: s.started_at_ms ?? null,
      task_id: s.task_id ?? null,
      result: s.result ?? null,
      error: s.error ?? null,
      items: s.items ?? null,
    };
    if (s.carrier !== undefined) st.carrier = s.carrier;
    steps[name] = st;
  }
  r.steps = steps;
  return r;
}

/**
 * Run state in Redis: any worker can advance any run, and a transition's state change
 * and its events land atomically (one Lua script), so DAG fan-in is coordinated: a step
 * never starts twice or not at all, however many workers finish steps of one run at once.
 *
 * A transition is optimistic: it reads the record and its version, runs the (pure)
 * function in Node, then a script stores the new record only if the version did not
 * move, gives the events the run's next seqs, appends them to the run's log (the
 * transport's stream, same `{run_id}` hash tag) and, unless a listener of the transport
 * wants them, publishes them to the run's channels (see
 * `RedisPubSubTransport.liveChannels`). When another process won, it reads again
 * and retries. Transitions of one run from this process are queued, so they never
 * conflict with each other.
 *
 * Keys: `<prefix>{<run_id>}:state` (hash `rec`, `plan`, `sum`, `ver`) next to the log; the
 * TTL of all of a run's keys is refreshed on every write (`endedTtlSeconds` once ended).
 *
 * @example
 * const transport = new RedisPubSubTransport(redis, { keyPrefix: 'myapp:' });
 * const runState = new RedisRunState(redis, { transport });
 */
export class RedisRunState implements RunStateStore {
  readonly redis: Redis;
  readonly transport: RedisPubSubTransport;
  readonly #maxAttempts: number;
  readonly #cacheSize: number;
  readonly #cache = new Map<string, CachedRun>();
  readonly #queues = new Map<string, Promise<unknown>>();
  #closed = false;

  constructor(redis: Redis, options: RedisRunStateOptions) {
    this.redis = checkRedisClient(redis, 'RedisRunState');
    checkKnownKeys(checkObject(options, 'RedisRunState options'), KNOWN, 'RedisRunState options');
    if (!(options.transport instanceof RedisPubSubTransport)) {
      throw new InvalidArgumentError(`RedisRunState options.transport must be a RedisPubSubTransport, received ${show(options.transport)}`);
    }
    this.transport = options.transport;
    this.#maxAttempts = checkPositiveInt(options.maxAttempts ?? 100, 'maxAttempts');
    this.#cacheSize = checkPositiveInt(options.cachedRuns ?? 1000, 'cachedRuns');
  }

  get #prefix(): string {
    return this.transport.keyPrefix;
  }

  #keys(runId: string): string[] {
    return [runStateKey(this.#prefix, runId), runLogMetaKey(this.#prefix, runId), runLogKey(this.#prefix, runId)];
  }

  /** `channels`: where the script publishes the events as it appends them (see `RedisPubSubTransport.liveChannels`). */
  #logArgs(record: RunRecord, drafts: EncodedDraft[], channels: readonly string[]): (string | number)[] {
    const t = this.transport;
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
      if (seq > 0) out.push(this.transport.finishAppended(d, seq, channels));
    });
    return out;
  }

  async create(record: RunRecord, events: EventDraft[]): Promise<FlowcastEvent[]> {
    this.#checkOpen('create');
    checkObject(record, 'create(record)');
    const runId = checkId(record.run_id, 'record.run_id');
    checkObject(record.plan, 'record.plan');
    const drafts = this.#encode(events, runId, 'RedisRunState.create', false);
    const rec = recordJson(record);
    const planJson = planJsonOf(record.plan);
    const channels = this.transport.liveChannels(runId, record.pipeline_id);
    const args = [rec, planJson, JSON.stringify(summaryOf(record)), ...this.#logArgs(record, drafts, channels)];
    // The run's start marker goes first (sent before the script, on the same connection): a run with events always has one.
    const marked = this.transport.markRun('start', record.pipeline_id, runId);
    const reply = (await createScript.run(this.redis, this.#keys(runId), args)) as unknown[];
    await marked;
    if (reply[0] === EXISTS) throw new FlowcastError(ErrorCodes.INVALID_ARGUMENT, `Run "${runId}" already exists`);
    if (record.status === 'RUNNING') this.#remember(runId, { plan: parsedPlan(planJson), rec, ver: '1' });
    return this.#ended(record.pipeline_id, runId, this.#finish(drafts, reply.slice(1), channels));
  }

  /** Events just appended: when the terminal one is among them, the run's end marker follows it. */
  #ended(pipelineId: string, runId: string, events: FlowcastEvent[]): FlowcastEvent[] {
    if (events.some((e) => isTerminalEvent(e))) void this.transport.markRun('end', pipelineId, runId);
    return events;
  }

  /** What this process last wrote of a run, to hand to the process that writes it next (see {@link RunStateHandoff}); `null` when it holds nothing. */
  handoff(runId: string): RunStateHandoff | null {
    const run = this.#cache.get(runId);
    const key = run === undefined ? undefined : planKeys.get(run.plan);
    if (run === undefined || run.rec === null || run.ver === null || key === undefined) return null;
    return { v: run.ver, r: run.rec, p: key };
  }

  /**
   * Takes a handoff of a run this process holds nothing of (else, or when it does not
   * know the plan yet, ignores it): its first transition of the run then needs no read.
   */
  prime(runId: string, handoff: unknown): void {
    const h = handoff as Partial<RunStateHandoff> | null;
    if (typeof h !== 'object' || h === null || typeof h.v !== 'string' || typeof h.r !== 'string' || typeof h.p !== 'string') return;
    if (this.#closed || this.#cache.has(runId)) return;
    const plan = plansByKey.get(h.p);
    if (plan !== undefined) this.#remember(runId, { plan, rec: h.r, ver: h.v });
  }

  async get(runId: string): Promise<RunRecord | null> {
    this.#checkOpen('get');
    checkId(runId, 'get(runId)');
    const [rec, plan] = await this.redis.hmget(runStateKey(this.#prefix, runId), 'rec', 'plan');
    if (rec === null || plan === null || rec === undefined || plan === undefined) return null;
    const record = parseRecord(rec);
    record.plan = JSON.parse(plan) as PipelinePlan;
    return record;
  }

  async getSummary(runId: string): Promise<RunSummary | null> {
    this.#checkOpen('getSummary');
    checkId(runId, 'getSummary(runId)');
    const sum = await this.redis.hget(runStateKey(this.#prefix, runId), 'sum');
    return sum === null ? null : (JSON.parse(sum) as RunSummary);
  }

  transition<T>(runId: string, fn: (record: RunRecord) => Transition<T>): Promise<{ value: T; events: FlowcastEvent[] }> {
    try {
      this.#checkOpen('transition');
      checkId(runId, 'transition(runId)');
      if (typeof fn !== 'function') throw new InvalidArgumentError(`transition(runId, fn): fn must be a function, received ${show(fn)}`);
    } catch (error) {
      return Promise.reject(toError(error));
    }
    return this.#queued(runId, () => this.#attempt(runId, fn));
  }

  /**
   * See `RunStateStore.reopen`: on a fresh read of the record, and, when `fn` turns the
   * ended run back to RUNNING, one script that checks the version, removes the log's end
   * mark and appends the events (so every process agrees: the run runs again).
   */
  reopen<T>(runId: string, fn: (record: RunRecord) => Transition<T>): Promise<{ value: T; events: FlowcastEvent[] }> {
    try {
      this.#checkOpen('reopen');
      checkId(runId, 'reopen(runId)');
      if (typeof fn !== 'function') throw new InvalidArgumentError(`reopen(runId, fn): fn must be a function, received ${show(fn)}`);
    } catch (error) {
      return Promise.reject(toError(error));
    }
    return this.#queued(runId, () => this.#reopen(runId, fn));
  }

  async #reopen<T>(runId: string, fn: (record: RunRecord) => Transition<T>): Promise<{ value: T; events: FlowcastEvent[] }> {
    const keys = this.#keys(runId);
    for (let attempt = 1; ; attempt++) {
      this.#cache.delete(runId);
      const run = await this.#read(runId, undefined);
      const record = parseRecord(run.rec as string);
      record.plan = run.plan;
      if (record.status === 'RUNNING') return this.#attempt(runId, fn);
      const { value, events } = fn(record);
      // Read again: `fn` changed it.
      const running = (record as { status: string }).status === 'RUNNING';
      if (!running && events.length === 0) return { value, events: [] };
      const drafts = this.#encode(events, runId, 'RedisRunState.reopen', true);
      const rec = recordJson(record);
      const channels = this.transport.liveChannels(runId, record.pipeline_id);
      const ver = run.ver as string;
      const args = [ver, rec, JSON.stringify(summaryOf(record)), ...this.#logArgs(record, drafts, channels)];
      if (running) await this.#markResume(record.pipeline_id, runId, keys[1] as string, events);
      const reply = (await reopenScript.run(this.redis, keys, args)) as unknown[];
      if (reply[0] === CREATED) {
        if (running) this.#remember(runId, { plan: run.plan, rec, ver: String(Number(ver) + 1), obj: record });
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
    const last = Number((await this.redis.hget(metaKey, 'seq')) ?? 0);
    await this.transport.markRun('resume', pipelineId, runId, last + 1 + at);
  }

  /** Runs `task` after this process's earlier transitions of the run: local transitions never conflict with each other. */
  #queued<R>(runId: string, task: () => Promise<R>): Promise<R> {
    const prev = this.#queues.get(runId);
    const next = prev === undefined ? task() : prev.then(task, task);
    this.#queues.set(runId, next);
    void next.then(
      () => this.#dequeue(runId, next),
      () => this.#dequeue(runId, next),
    );
    return next;
  }

  #dequeue(runId: string, p: Promise<unknown>): void {
    if (this.#queues.get(runId) === p) this.#queues.delete(runId);
  }

  async #attempt<T>(runId: string, fn: (record: RunRecord) => Transition<T>): Promise<{ value: T; events: FlowcastEvent[] }> {
    const keys = this.#keys(runId);
    let run = this.#cache.get(runId);
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
      const channels = this.transport.liveChannels(runId, record.pipeline_id);
      const args = [ver, rec, sum, ...this.#logArgs(record, drafts, channels)];
      const reply = (await transitionScript.run(this.redis, keys, args)) as unknown[];
      if (reply[0] === CREATED) {
        if (record.status === 'RUNNING') this.#remember(runId, { plan: run.plan, rec, ver: String(Number(ver) + 1), obj: record });
        else this.#cache.delete(runId);
        return { value, events: this.#ended(record.pipeline_id, runId, this.#finish(drafts, reply.slice(1), channels)) };
      }
      if (reply[0] === UNKNOWN) {
        this.#cache.delete(runId);
        throw new FlowcastError(ErrorCodes.NOT_FOUND, `Unknown run "${runId}"`);
      }
      if (reply[0] !== CONFLICT || typeof reply[2] !== 'string') {
        throw new FlowcastError(ErrorCodes.CONNECTION_FAILED, `Unexpected answer of the transition script: ${show(reply)}`);
      }
      // Another process wrote since: the script answered with the current record.
      run = this.#remember(runId, { plan: run.plan, rec: reply[2], ver: String(reply[1]) });
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

  /** Reads a run's record and version (and its plan when not kept yet). */
  async #read(runId: string, known: CachedRun | undefined): Promise<CachedRun> {
    const key = runStateKey(this.#prefix, runId);
    const fields = known === undefined ? await this.redis.hmget(key, 'rec', 'ver', 'plan') : await this.redis.hmget(key, 'rec', 'ver');
    const [rec, ver, planJson] = fields;
    if (rec === null || ver === null || rec === undefined || ver === undefined) throw new FlowcastError(ErrorCodes.NOT_FOUND, `Unknown run "${runId}"`);
    let plan = known?.plan;
    if (plan === undefined) {
      if (planJson === null || planJson === undefined) throw new FlowcastError(ErrorCodes.NOT_FOUND, `Run "${runId}" has no plan`);
      plan = parsedPlan(planJson);
    }
    return this.#remember(runId, { plan, rec, ver });
  }

  /** Keeps what this process knows of a run, most recent last (the oldest goes first). */
  #remember(runId: string, run: CachedRun): CachedRun {
    this.#cache.delete(runId);
    this.#cache.set(runId, run);
    if (this.#cache.size > this.#cacheSize) {
      const oldest = this.#cache.keys().next().value;
      if (oldest !== undefined) this.#cache.delete(oldest);
    }
    return run;
  }

  #checkOpen(what: string): void {
    if (this.#closed) throw new FlowcastError(ErrorCodes.CLOSED, `RedisRunState is closed (${what})`);
  }

  /** Waits for this process's queued transitions; closes nothing of the caller's. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.allSettled([...this.#queues.values()]);
    this.#cache.clear();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
