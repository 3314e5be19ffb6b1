/// <reference types="node" preserve="true" />
/**
 * flowcast: task pipelines for Node.js with truthful lifecycle events, run tracking and
 * live streaming. This entry point is the embedded engine: brokers, tasks, pipelines,
 * events and hooks, tracking, and the scheduler.
 */
export { ErrorCodes, FlowcastError, InvalidArgumentError, NotJsonError, TimeoutError, CancelledError, AbortedError, AlreadyRunningError, RunNotResumableError, describeError } from './core/errors.js';
export type { ErrorCode } from './core/errors.js';
export { assertJson, isJson } from './core/json.js';
export type { JsonValue } from './core/json.js';
export type { Broker, BrokerHealth, BrokerJob, TaskJob, StepJob, StepJobFailure, ControlJob, JobProcessor, EnqueueOptions } from './pipeline/broker.js';
export { SpanAttributes, TRACER_NAME, type TraceCarrier } from './pipeline/tracing.js';
export { createLogger, LOG_LEVELS } from './core/logger.js';
export type { Logger, LogFn, LogLevel, CreateLoggerOptions } from './core/logger.js';
export type { EngineStatus, BrokerEngineStatus, WorkerStatus, QueueStatus, ServerInstanceStatus } from './core/engine-status.js';
export type { Task, TaskFn, TaskContext, TaskOptions, TaskHandle, TaskDefinition, ThreadTaskSource, Backoff, TaskInput, TaskOutput } from './core/task.js';
export { InMemoryBroker } from './pipeline/memory-broker.js';
export type { InMemoryBrokerOptions } from './pipeline/memory-broker.js';
export type { ThreadPoolOptions } from './core/thread-pool.js';

export { Pipeline } from './pipeline/pipeline.js';
export { DataflowPipeline } from './pipeline/dataflow.js';
export type { DataflowPipelineOptions, DataflowStepOptions, DataflowGraph } from './pipeline/dataflow.js';
export type { PipelineOptions, StepOptions, CallOptions, RunHandle, ResumedRunHandle, ConcurrencyInfo } from './pipeline/base.js';
export type { ConcurrencyPolicy, StartOptions } from './pipeline/run-guard.js';
export { InMemoryRunSlots } from './core/run-slots.js';
export type { RunSlots, SlotClaim, SlotHolder } from './core/run-slots.js';
export { getEngine, RunEngine } from './pipeline/engine.js';
export type { EventRecorder, EventDispatcher } from './pipeline/engine.js';
export type { ResumedRun } from './pipeline/resume.js';
export type { PipelinePlan, PlanStep, FailurePolicy } from './pipeline/plan.js';
export { InMemoryRunState } from './pipeline/run-state.js';
export type { RunStateStore, RunRecord, RunStatus, StepState, StepPhase, Transition, InMemoryRunStateOptions } from './pipeline/run-state.js';

export * from './events/types.js';
export { HookManager } from './events/hook-manager.js';
export type { HookManagerOptions, HookListener, HookErrorHandler } from './events/hook-manager.js';
export { EventFilter } from './events/filter.js';
export type { EventFilterOptions } from './events/filter.js';

export { InMemoryTransport } from './transport/memory-transport.js';
export type { InMemoryTransportOptions } from './transport/memory-transport.js';
export type { EventTransport, Channel, LogRead, EventListener } from './transport/transport.js';
export type { RunMarker, RunMarkerListener, RunStreamName, RunStreamRead, RunStreams } from './transport/run-streams.js';

export * from './tracking/index.js';
export * from './scheduler/index.js';
