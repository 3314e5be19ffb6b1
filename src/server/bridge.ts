import type { FlowcastEvent } from '../events/types.js';
import type { HookManager } from '../events/hook-manager.js';
import { InvalidArgumentError } from '../core/errors.js';
import { InMemoryTransport } from '../transport/memory-transport.js';

let defaultTransport: InMemoryTransport | null = null;

/** The process-wide transport that {@link setupWebSocketBridge} feeds and a server without `transport`/`broker` reads. */
export function getDefaultTransport(): InMemoryTransport {
  defaultTransport ??= new InMemoryTransport();
  return defaultTransport;
}

/**
 * Connects a HookManager to the WebSocket transport (seed 000 §2.1,
 * `setup_websocket_bridge(hook_manager)`): every event the hooks see is stored in the
 * transport's per-run log, with its seq, and published to servers that read it.
 * Returns the disposer. Passing the broker to `getWebSocketServer({ broker })` does the
 * same without hooks; the bridge is for code written the seed's way.
 *
 * @example
 * const hooks = new HookManager();
 * setupWebSocketBridge(hooks);
 * const pipeline = new Pipeline(broker).withHooks(hooks);
 * await getWebSocketServer({ port: 8765 }).startServer();
 */
export function setupWebSocketBridge(hookManager: HookManager, transport: InMemoryTransport = getDefaultTransport()): () => void {
  if (typeof hookManager !== 'object' || hookManager === null || typeof hookManager.on !== 'function') {
    throw new InvalidArgumentError('setupWebSocketBridge(hookManager): expected a HookManager');
  }
  return hookManager.on('*', (event) => {
    transport.ingest(event);
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
