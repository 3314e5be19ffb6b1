/**
 * Cancel across processes. When a run ends while steps of it may still run elsewhere
 * (cancelled, failed fast, timed out), the process that ended it announces the run on
 * one Redis Pub/Sub channel; every worker listens on that channel (one subscription per
 * process) and aborts the calls of that run it is running, so their `ctx.signal` fires.
 *
 * Pub/Sub is lossy, which is harmless here: a worker that misses the message finishes
 * its call, and the run state drops the late result (the run has ended).
 */
import type { Redis } from 'ioredis';
import { InvalidArgumentError, RunNotResumableError } from '../core/errors.js';
import type { FlowcastEvent } from '../events/types.js';
import type { RunRecord, RunStateStore, RunSummary, Transition } from '../pipeline/run-state.js';
import { runControlChannel } from './keys.js';
import { closeConnection } from './connection-end.js';
import type { Logger } from '../core/logger.js';
import type { EventTransport } from '../transport/transport.js';
import { RedisRunState, type RedisRunStateOptions } from './run-state.js';
import { RedisPubSubTransport } from './transport.js';

/** What is announced on the control channel (JSON). */
export interface RunEndedMessage {
  type: 'run_ended';
  run_id: string;
  /** The run's terminal event: `PipelineCancelledEvent` or `PipelineErrorEvent`. */
  event: 'PipelineCancelledEvent' | 'PipelineErrorEvent';
  /** The cancel reason or the run's error. */
  reason: string;
}

/** Publishes and receives {@link RunEndedMessage}s. */
export class RunControl {
  readonly #pub: Redis;
  readonly #channel: string;
  readonly #onError: (error: Error) => void;
  #sub: Redis | null = null;

  constructor(pub: Redis, prefix: string, onError: (error: Error) => void) {
    this.#pub = pub;
    this.#channel = runControlChannel(prefix);
    this.#onError = onError;
  }

  /** Listens on the channel with `sub` (a connection of its own, closed by {@link close}). */
  async listen(sub: Redis, onEnded: (message: RunEndedMessage) => void): Promise<void> {
    this.#sub = sub;
    sub.on('message', (channel: string, raw: string) => {
      if (channel !== this.#channel) return;
      let message: RunEndedMessage;
      try {
        message = JSON.parse(raw) as RunEndedMessage;
      } catch {
        return;
      }
      if (message.type === 'run_ended' && typeof message.run_id === 'string') onEnded(message);
    });
    await sub.subscribe(this.#channel);
  }

  /** Announces the runs that `events` ended abnormally. Never rejects. */
  async announce(events: readonly FlowcastEvent[]): Promise<void> {
    for (const e of events) {
      if (e.type !== 'PipelineCancelledEvent' && e.type !== 'PipelineErrorEvent') continue;
      const message: RunEndedMessage = { type: 'run_ended', run_id: e.run_id, event: e.type, reason: e.type === 'PipelineCancelledEvent' ? e.reason : e.error };
      try {
        await this.#pub.publish(this.#channel, JSON.stringify(message));
      } catch (error) {
        this.#onError(error instanceof Error ? error : new Error(String(error)));
      }
    }
  }

  /** Stops listening and closes the subscriber connection. Idempotent. */
  async close(): Promise<void> {
    const sub = this.#sub;
    this.#sub = null;
    if (sub === null) return;
    await closeConnection(sub);
  }
}

/**
 * Announces the run a transition ended abnormally, if any, then hands the transition on.
 * (No extra promise for the transitions that end nothing: one per step.)
 */
function announceEnd<T>(control: RunControl, done: { value: T; events: FlowcastEvent[] }): { value: T; events: FlowcastEvent[] } | Promise<{ value: T; events: FlowcastEvent[] }> {
  const last = done.events[done.events.length - 1];
  if (last === undefined || (last.type !== 'PipelineCancelledEvent' && last.type !== 'PipelineErrorEvent')) return done;
  return control.announce([last]).then(() => done);
}

/**
 * The broker's default run state: a {@link RedisRunState} (it stays one for every part
 * that needs one, such as the external event ingestor) that also announces the runs its
 * transitions end abnormally on the control channel.
 */
export class AnnouncingRedisRunState extends RedisRunState {
  readonly #control: RunControl;

  constructor(redis: Redis, options: RedisRunStateOptions, control: RunControl) {
    super(redis, options);
    this.#control = control;
  }

  override transition<T>(runId: string, fn: (record: RunRecord) => Transition<T>): Promise<{ value: T; events: FlowcastEvent[] }> {
    return super.transition(runId, fn).then((done) => announceEnd(this.#control, done));
  }

  override reopen<T>(runId: string, fn: (record: RunRecord) => Transition<T>): Promise<{ value: T; events: FlowcastEvent[] }> {
    return super.reopen(runId, fn).then((done) => announceEnd(this.#control, done));
  }
}

/**
 * The broker's run state when the caller gave one: that store, plus an announcement on the control channel
 * after every transition that ended a run abnormally. Everything else is the store's.
 */
export class AnnouncingRunState implements RunStateStore {
  /** The store underneath (e.g. a `RedisRunState`). */
  readonly inner: RunStateStore;
  readonly #control: RunControl;

  constructor(inner: RunStateStore, control: RunControl) {
    this.inner = inner;
    this.#control = control;
  }

  create(record: RunRecord, events: Parameters<RunStateStore['create']>[1]): Promise<FlowcastEvent[]> {
    return this.inner.create(record, events);
  }

  get(runId: string): Promise<RunRecord | null> {
    return this.inner.get(runId);
  }

  getSummary(runId: string): Promise<RunSummary | null> {
    return this.inner.getSummary(runId);
  }

  transition<T>(runId: string, fn: (record: RunRecord) => Transition<T>): Promise<{ value: T; events: FlowcastEvent[] }> {
    return this.inner.transition(runId, fn).then((done) => announceEnd(this.#control, done));
  }

  /** The store's `reopen`; refuses the resume when the store has none. */
  reopen<T>(runId: string, fn: (record: RunRecord) => Transition<T>): Promise<{ value: T; events: FlowcastEvent[] }> {
    if (this.inner.reopen === undefined) return Promise.reject(new RunNotResumableError(`Run "${runId}" cannot be resumed: its run state store cannot reopen runs`, runId, null));
    return this.inner.reopen(runId, fn).then((done) => announceEnd(this.#control, done));
  }

  /** Does not close the store underneath: the broker closes what it created. */
  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** The transport and run state a broker uses, and those of them it opened (and closes). */
export interface BrokerRunStores {
  /** The event log and fan-out of the broker's runs. */
  transport: EventTransport;
  /** The broker's run state, announcing run ends through its {@link RunControl}. */
  runState: RunStateStore;
  /** What the broker opened itself: it closes these, never the caller's. */
  owned: { runState: AnnouncingRedisRunState | null; transport: RedisPubSubTransport | null };
}

/**
 * A broker's transport and run state: the options' (the run state wrapped to announce
 * run ends on `control`), else a `RedisPubSubTransport` and a `RedisRunState` on `redis`.
 * A run state of its own needs a `RedisPubSubTransport` (whose logs it writes).
 */
export function brokerRunStores(
  redis: Redis,
  options: { transport?: EventTransport | undefined; runState?: RunStateStore | undefined; keyPrefix: string; logger: Logger },
  control: RunControl,
): BrokerRunStores {
  let transport = options.transport;
  const owned: BrokerRunStores['owned'] = { runState: null, transport: null };
  if (transport === undefined) {
    const t = new RedisPubSubTransport(redis, { keyPrefix: options.keyPrefix, logger: options.logger });
    transport = t;
    owned.transport = t;
  }
  if (options.runState !== undefined) return { transport, runState: new AnnouncingRunState(options.runState, control), owned };
  if (!(transport instanceof RedisPubSubTransport)) {
    throw new InvalidArgumentError('BullMQBroker: give options.runState too when options.transport is not a RedisPubSubTransport');
  }
  const runState = new AnnouncingRedisRunState(redis, { transport }, control);
  owned.runState = runState;
  return { transport, runState, owned };
}
