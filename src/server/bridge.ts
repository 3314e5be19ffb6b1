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

/**
 * Keeps tracking up to date from a HookManager's events (seed 001 §6), so the server's
 * snapshots and REST API show runs that reach this process only through hooks.
 * Recording is idempotent (by seq), so attaching it next to `withTracking()` is harmless.
 * `onStatusUpdate` is the seed's listener entry point; `close()` detaches.
 */
export class TrackingEventBroadcaster {
  readonly #tracking: RecordingTracking;
  readonly #off: () => void;

  constructor(tracking: RecordingTracking, hookManager: HookManager) {
    if (typeof tracking?.record !== 'function') throw new InvalidArgumentError('TrackingEventBroadcaster(tracking, hooks): tracking must be a PipelineTrackingManager');
    if (typeof hookManager?.on !== 'function') throw new InvalidArgumentError('TrackingEventBroadcaster(tracking, hooks): hooks must be a HookManager');
    this.#tracking = tracking;
    this.#off = hookManager.on('*', (event) => this.onStatusUpdate(event));
  }

  /** Records one event in tracking. */
  onStatusUpdate = (event: FlowcastEvent): void | Promise<void> => this.#tracking.record(event);

  close(): void {
    this.#off();
  }
}
