/** Run tracking (seed 001, DESIGN §4): models, the event reducer, storages, the manager, metrics and the console view. */
export { PIPELINE_STATUSES, STEP_STATUSES, ENDED_STATUSES, isEndedStatus } from './models.js';
export type { PipelineStatus, StepStatus, PipelineRunStatus, StepRunStatus } from './models.js';
export { applyEvent, isDuplicateEvent } from './reducer.js';
export type { TrackingStorage, ListPipelinesQuery, MaintenanceOptions } from './storage.js';
export { InMemoryPipelineStorage } from './memory-storage.js';
export { registerAutoStorage, type AutoStorage, type AutoStorageProvider, type AutoStorageOptions } from './auto-storage.js';
export type { InMemoryPipelineStorageOptions } from './memory-storage.js';
export { PipelineTrackingManager } from './manager.js';
export type {
  PipelineTrackingManagerOptions,
  TrackingListener,
  TrackingEventListener,
  TrackingErrorHandler,
  ListPipelinesOptions,
  GetHistoryOptions,
  ExportJsonOptions,
  CleanupOptions,
} from './manager.js';
export { computeMetrics, normalizeFailureReason } from './metrics.js';
export type { PipelineMetrics, SlowStep, PipelineBreakdown, ComputeMetricsOptions } from './metrics.js';
export { renderStatus, formatDuration } from './render.js';
export type { RenderStatusOptions } from './render.js';
