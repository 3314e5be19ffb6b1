/**
 * The Redis provider of `PipelineTrackingManager.withAutoStorage(broker)`: a broker with an
 * ioredis client as `broker.redis` (as `BullMQBroker` has) is tracked in a
 * {@link RedisPipelineStorage} on that connection. Loading flowcast/redis (or
 * `BullMQBroker`) registers it; tracking never imports this layer.
 */
import { InvalidArgumentError } from '../core/errors.js';
import { show } from '../core/validate.js';
import { registerAutoStorage, type AutoStorage, type AutoStorageOptions } from '../tracking/auto-storage.js';
import { DEFAULT_KEY_PREFIX } from './keys.js';
import { isRedisClient } from './storage-checks.js';
import { RedisPipelineStorage } from './storage.js';
import { RedisPubSubTransport } from './transport.js';

/** `writeDelayMs` the manager uses with a Redis storage when the user gave none. */
const REDIS_WRITE_DELAY_MS = 100;

/** See the module comment; `undefined` for a broker without `redis` that is not of kind "bullmq". */
export function redisAutoStorage(broker: Readonly<Record<string, unknown>>, options: AutoStorageOptions): AutoStorage | undefined {
  if (!isRedisClient(broker.redis)) {
    if (broker.kind !== 'bullmq' && broker.redis === undefined) return undefined;
    throw new InvalidArgumentError(`withAutoStorage(broker): a "bullmq" broker must expose its ioredis client as broker.redis, received ${show(broker.redis)}`);
  }
  const brokerPrefix = typeof broker.keyPrefix === 'string' ? broker.keyPrefix : undefined;
  const keyPrefix = options.keyPrefix ?? brokerPrefix;
  // `logBacked` is chosen here, and only here: when the broker's event log is on Redis
  // under the storage's own prefix, every run's events are in that log, so the storage
  // records a run's start by its index entries alone and reads a run's status from its
  // log until a later write stores it (see AutoStorageOptions.logBacked).
  const transport = broker.transport;
  const logBacked = options.logBacked ?? (transport instanceof RedisPubSubTransport && transport.keyPrefix === (keyPrefix ?? DEFAULT_KEY_PREFIX));
  const storage = new RedisPipelineStorage(broker.redis, { ...options, ...(keyPrefix !== undefined && { keyPrefix }), logBacked });
  return { storage, writeDelayMs: REDIS_WRITE_DELAY_MS };
}

registerAutoStorage(redisAutoStorage);
