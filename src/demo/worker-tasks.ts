/**
 * The demo as a task module for `flowcast worker --tasks` (and `flowcast worker --demo`):
 * registers the demo's tasks and pipelines on the worker's broker, with tracking in the
 * broker's storage (Redis for a BullMQ broker), so the runs that `flowcast serve --redis
 * --demo` starts progress on this worker and show up in tracking.
 *
 * @example
 * flowcast worker --redis redis://127.0.0.1:6379 --tasks node_modules/flowcast/dist/demo/worker-tasks.js
 */
import type { Broker } from '../pipeline/broker.js';
import { HookManager } from '../events/hook-manager.js';
import { PipelineTrackingManager } from '../tracking/manager.js';
import { createDemo } from './pipelines.js';

/** Registers the demo on `broker`. */
export default function register(broker: Broker): void {
  createDemo(broker, new HookManager(), new PipelineTrackingManager().withAutoStorage(broker));
}
