/// <reference types="node" preserve="true" />
export { RedisPubSubTransport, type RedisPubSubTransportOptions } from './transport.js';
export { RedisRunState, type RedisRunStateOptions } from './run-state.js';
export { ExternalEventIngestor, parseIngestEntry, type ExternalEventIngestorOptions, type IngestEntry } from './external-ingestor.js';
export * from './keys.js';
export { BullMQBroker } from './bullmq-broker.js';
export { WORKER_DEFAULTS, type BullMQBrokerOptions, type BullMQWorkerOptions, type RedisConnection } from './bullmq-options.js';
export { startWorker, loadTaskModule, workerOptionsFromEnv, WORKER_ENV, type StartWorkerOptions, type FlowcastWorker, type RegisterTasks } from './worker.js';
export { RedisPipelineStorage, type RedisPipelineStorageOptions, type RedisClient, type PruneResult } from './storage.js';
export { redisAutoStorage } from './auto-storage.js';
