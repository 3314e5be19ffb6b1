/**
 * Who wants which live events in this process: the connections interested in each
 * subscription key (`all`, a pipeline, a run), and one upstream subscription of the
 * transport per key that has local interest, dropped when its last connection leaves.
 */
import type { FlowcastEvent } from '../events/types.js';
import { ALL_KEY, keyChannel, pipelineKey, runKey } from '../events/subscription.js';
import type { EventTransport } from '../transport/transport.js';
import type { Connection } from './connection.js';

/** The connections per subscription key, and the upstream subscriptions they need. */
export class SubscriberIndex {
  readonly #transport: EventTransport;
  readonly #onEvent: (event: FlowcastEvent) => void;
  readonly #byKey = new Map<string, Set<Connection>>();
  readonly #upstream = new Map<string, () => void>();

  /** @param onEvent gets every live event of the upstream subscriptions (an event may come through several) */
  constructor(transport: EventTransport, onEvent: (event: FlowcastEvent) => void) {
    this.#transport = transport;
    this.#onEvent = onEvent;
  }

  /** Upstream channel subscriptions held (one per key with local interest). */
  get upstreamCount(): number {
    return this.#upstream.size;
  }

  /** Notes the connection's interest in `key`, subscribing upstream to its channel when it is the first. */
  add(conn: Connection, key: string): void {
    let set = this.#byKey.get(key);
    if (set === undefined) {
      set = new Set();
      this.#byKey.set(key, set);
    }
    set.add(conn);
    if (!this.#upstream.has(key)) {
      this.#upstream.set(key, this.#transport.subscribe(keyChannel(key), (event) => this.#onEvent(event)));
    }
  }

  /** Drops the connection's interest in `key`, and the upstream subscription when nobody else has it. */
  delete(conn: Connection, key: string): void {
    const set = this.#byKey.get(key);
    if (set === undefined) return;
    set.delete(conn);
    if (set.size > 0) return;
    this.#byKey.delete(key);
    this.#upstream.get(key)?.();
    this.#upstream.delete(key);
  }

  /** The connections subscribed to `all`, to the event's pipeline or to its run; `null` when none is. */
  targets(event: FlowcastEvent): Set<Connection> | null {
    const all = this.#byKey.get(ALL_KEY);
    const byPipeline = this.#byKey.get(pipelineKey(event.pipeline_id));
    const byRun = this.#byKey.get(runKey(event.run_id));
    const parts = [all, byPipeline, byRun].filter((s): s is Set<Connection> => s !== undefined && s.size > 0);
    if (parts.length === 0) return null;
    if (parts.length === 1) return parts[0] as Set<Connection>;
    const union = new Set<Connection>();
    for (const s of parts) for (const c of s) union.add(c);
    return union;
  }

  /** Drops every upstream subscription and every interest. */
  clear(): void {
    for (const off of this.#upstream.values()) off();
    this.#upstream.clear();
    this.#byKey.clear();
  }
}
