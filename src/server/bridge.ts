import type { FlowcastEvent } from '../events/types.js';
import type { HookManager } from '../events/hook-manager.js';
import { InvalidArgumentError } from '../core/errors.js';
import { show } from '../core/validate.js';
import { InMemoryTransport } from '../transport/memory-transport.js';
import type { EventTransport, IngestingTransport } from '../transport/transport.js';

let defaultTransport: InMemoryTransport | null = null;
/** The transports of this process's servers that read another transport than the default one, with how many servers read each. */
const serverTransports = new Map<IngestingTransport, number>();

/** The process-wide transport that {@link setupWebSocketBridge} feeds and a server without `transport`/`broker` reads. */
export function getDefaultTransport(): InMemoryTransport {
  defaultTransport ??= new InMemoryTransport();
  return defaultTransport;
}

/**
 * Makes a server's transport one that `setupWebSocketBridge(hooks)` (without a
 * transport of its own) feeds too, until the returned disposer runs: the seed's
 * `setupWebSocketBridge(hooks)` then `getWebSocketServer({ transport })` (seed 000
 * §6.4). The servers call it as they start; the default transport and transports that
 * cannot ingest are left out.
 */
export function feedFromBridges(transport: EventTransport): () => void {
  if (transport === defaultTransport || typeof transport.ingest !== 'function') return () => undefined;
  const target = transport as IngestingTransport;
  serverTransports.set(target, (serverTransports.get(target) ?? 0) + 1);
  let active = true;
  return () => {
    if (!active) return;
    active = false;
    const n = (serverTransports.get(target) ?? 1) - 1;
    if (n > 0) serverTransports.set(target, n);
    else serverTransports.delete(target);
  };
}

function describe(value: unknown): string {
  const name = typeof value === 'object' && value !== null ? (value.constructor as { name?: unknown } | undefined)?.name : undefined;
  return typeof name === 'string' && name !== '' && name !== 'Object' ? `a ${name}` : show(value);
}

/**
 * Connects a HookManager to the WebSocket transport (seed 000 §2.1,
 * `setup_websocket_bridge(hook_manager)`): every event the hooks see is stored with its
 * seq in a transport's per-run log and published to the servers that read it. Returns
 * the disposer. Passing the broker to `getWebSocketServer({ broker })` does the same
 * without hooks; the bridge is for code written the seed's way.
 *
 * - `setupWebSocketBridge(hooks)`: feeds the process-wide transport (which a server
 *   without `transport` or `broker` reads) and the transport of every server of this
 *   process started with its own `transport`, e.g. `new RedisPubSubTransport(redis)`:
 *   through Redis, the servers of every other process get the events too.
 * - `setupWebSocketBridge(hooks, transport)`: feeds that transport only (an
 *   `InMemoryTransport` or a `RedisPubSubTransport`), e.g. a producer process without a
 *   server that hands its events to the servers on a Redis.
 *
 * An event already in the transport's log (its own runs) is left alone. Failures (Redis
 * away) go to the hooks' `onError`.
 *
 * @throws InvalidArgumentError when `hookManager` is not a HookManager or `transport` cannot take events with their seq.
 * @example
 * const hooks = new HookManager();
 * setupWebSocketBridge(hooks);
 * const pipeline = new Pipeline(broker).withHooks(hooks);
 * await getWebSocketServer({ port: 8765, transport: new RedisPubSubTransport(redis) }).startServer();
 */
export function setupWebSocketBridge(hookManager: HookManager, transport?: IngestingTransport): () => void {
  if (typeof hookManager !== 'object' || hookManager === null || typeof hookManager.on !== 'function') {
    throw new InvalidArgumentError(`setupWebSocketBridge(hookManager): expected a HookManager, received ${describe(hookManager)}`);
  }
  if (transport !== undefined) {
    if (typeof transport !== 'object' || transport === null || typeof (transport as Partial<IngestingTransport>).ingest !== 'function') {
      const hint = typeof (transport as { evalsha?: unknown } | null)?.evalsha === 'function' ? ' (for a Redis client, pass new RedisPubSubTransport(redis))' : '';
      throw new InvalidArgumentError(
        `setupWebSocketBridge(hooks, transport): transport must be an event transport that takes events with their seq (an InMemoryTransport or a RedisPubSubTransport)${hint}, received ${describe(transport)}`,
      );
    }
    const target = transport;
    return hookManager.on('*', (event) => {
      const stored = target.ingest(event);
      return typeof stored === 'boolean' ? undefined : stored.then(() => undefined);
    });
  }
  const memory = getDefaultTransport();
  return hookManager.on('*', (event) => {
    memory.ingest(event);
    if (serverTransports.size === 0) return undefined;
    let pending: Promise<boolean>[] | null = null;
    for (const target of serverTransports.keys()) {
      const stored = target.ingest(event);
      if (typeof stored !== 'boolean') (pending ??= []).push(stored);
    }
    return pending === null ? undefined : Promise.all(pending).then(() => undefined);
  });
}

/** What {@link TrackingEventBroadcaster} needs of tracking. */
export interface RecordingTracking {
  record(event: FlowcastEvent): void | Promise<void>;
}

/** Where {@link TrackingEventBroadcaster} broadcasts: a transport that takes events that already have their seq (`InMemoryTransport.ingest`). */
export interface BroadcastTransport {
  ingest(event: FlowcastEvent): unknown;
}

/**
 * Seed 001 §6: ties tracking to live WebSocket delivery, both ways.
 *
 * - Every event the HookManager sees is recorded in tracking, so the server's snapshots
 *   and REST API show runs that reach this process only through hooks. Recording is
 *   idempotent (by seq), so it is harmless next to `withTracking()`.
 * - {@link onStatusUpdate} is a tracking listener (`tracking.addListener(broadcaster.onStatusUpdate)`):
 *   it puts every event tracking stored into the WebSocket transport (by default the
 *   process-wide one that {@link setupWebSocketBridge} feeds and a server started without
 *   `transport` or `broker` serves), so subscribers get the pipeline's events "as they
 *   happen". The transport keeps each seq of a run once, so this is harmless next to
 *   `setupWebSocketBridge(hooks)` too: no event is delivered twice.
 *
 * `close()` detaches from the hooks and stops broadcasting.
 *
 * @example
 * const hookManager = new HookManager();
 * const broadcaster = new TrackingEventBroadcaster(tracking, hookManager);
 * tracking.addListener(broadcaster.onStatusUpdate);
 * const pipeline = new Pipeline(broker).withHooks(hookManager).withTracking(tracking);
 */
export class TrackingEventBroadcaster {
  readonly #tracking: RecordingTracking;
  readonly #transport: BroadcastTransport;
  readonly #off: () => void;
  #closed = false;

  constructor(tracking: RecordingTracking, hookManager: HookManager, transport: BroadcastTransport = getDefaultTransport()) {
    if (typeof tracking?.record !== 'function') throw new InvalidArgumentError('TrackingEventBroadcaster(tracking, hooks): tracking must be a PipelineTrackingManager');
    if (typeof hookManager?.on !== 'function') throw new InvalidArgumentError('TrackingEventBroadcaster(tracking, hooks): hooks must be a HookManager');
    if (typeof (transport as Partial<BroadcastTransport> | null)?.ingest !== 'function') {
      throw new InvalidArgumentError('TrackingEventBroadcaster(tracking, hooks, transport): transport must be an InMemoryTransport (a transport with ingest(event))');
    }
    this.#tracking = tracking;
    this.#transport = transport;
    this.#off = hookManager.on('*', (event) => this.#tracking.record(event));
  }

  /** The tracking listener: puts one stored event into the WebSocket transport (a seq it holds already is ignored; nothing after {@link close}). */
  onStatusUpdate = (event: FlowcastEvent): void => {
    if (!this.#closed) this.#transport.ingest(event);
  };

  /** Detaches from the hooks and stops broadcasting. Idempotent. */
  close(): void {
    this.#closed = true;
    this.#off();
  }
}
