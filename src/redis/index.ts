export { RedisPubSubTransport, type RedisPubSubTransportOptions } from './transport.js';
export { RedisRunState, type RedisRunStateOptions } from './run-state.js';
export * from './keys.js';
export { RedisPipelineStorage, type RedisPipelineStorageOptions, type RedisClient, type PruneResult } from './storage.js';
