/// <reference lib="esnext.disposable" preserve="true" />
/**
 * `flowcast/client`: watch pipeline runs live from a browser or a Node script.
 * Standard APIs only (WebSocket, URL, AbortSignal, TextDecoder): no Node module, so it
 * bundles for browsers as is. On Node 20 (no global WebSocket) the `ws` package is loaded
 * at the first connection attempt, by a dynamic import bundlers leave alone.
 *
 * @example
 * import { PipelineMonitor } from 'flowcast/client';
 * const monitor = new PipelineMonitor('ws://localhost:8765', { token });
 * monitor.on('PipelineCompleteEvent', (e) => console.log(e.run_id, e.status));
 * await monitor.subscribe('demo_workflow');
 * await monitor.connect();
 */
export { PipelineMonitor } from './monitor.js';
export { MonitorError } from './errors.js';
export { startRun, StartRunError } from './start-run.js';
export type { StartRunOptions, StartedRun } from './start-run.js';
export { fullJitterDelay, RECONNECT_DEFAULTS } from './backoff.js';
export type { ReconnectOptions } from './backoff.js';
export type {
  ConnectionState,
  EngineStatusMessage,
  EventStreamOptions,
  MonitorEventMap,
  MonitorEventName,
  PipelineMonitorOptions,
  ReplayCompleteMessage,
  ReplayIncompleteMessage,
  ResumeIncomplete,
  RunSnapshot,
  StateChange,
  SubscriptionTarget,
  WebSocketConstructor,
  WebSocketLike,
} from './types.js';
export { ErrorCodes, FlowcastError } from '../core/errors.js';
export type { ErrorCode } from '../core/errors.js';
export type * from '../events/types.js';
export type { PipelineStatus, StepStatus } from '../tracking/models.js';
