import { InvalidArgumentError } from '../../core/errors.js';
import { checkKnownKeys, checkObject, checkPositiveNumber, show } from '../../core/validate.js';

/** The REST API's per-client rate limit (a token bucket per client IP). */
export interface RestRateLimitOptions {
  /** Requests per second a client may make on average. @default 50 */
  requestsPerSecond?: number;
  /** How many requests a client may make at once. @default 100 */
  burst?: number;
  /** Client buckets kept; the least recently seen go first. @default 10000 */
  maxClients?: number;
}

interface Bucket {
  tokens: number;
  last: number;
}

/** Token buckets keyed by client (IP address). */
export class ClientRateLimiter {
  readonly rate: number;
  readonly burst: number;
  readonly #maxClients: number;
  readonly #buckets = new Map<string, Bucket>();

  /** `options` is the server's `restRateLimit`. */
  constructor(options: RestRateLimitOptions = {}) {
    const o = checkObject(options, 'restRateLimit');
    checkKnownKeys(o, ['requestsPerSecond', 'burst', 'maxClients'], 'restRateLimit');
    this.rate = options.requestsPerSecond === undefined ? 50 : checkPositiveNumber(options.requestsPerSecond, 'restRateLimit.requestsPerSecond');
    this.burst = options.burst === undefined ? 100 : checkPositiveNumber(options.burst, 'restRateLimit.burst');
    if (this.burst < 1) throw new InvalidArgumentError(`restRateLimit.burst must be >= 1, received ${show(options.burst)}`);
    const max = options.maxClients ?? 10_000;
    if (!Number.isInteger(max) || max < 1) throw new InvalidArgumentError(`restRateLimit.maxClients must be an integer >= 1, received ${show(options.maxClients)}`);
    this.#maxClients = max;
  }

  /** Takes one token for `client`: 0 when allowed, else the seconds to wait before the next request can pass. */
  take(client: string, now = Date.now()): number {
    let b = this.#buckets.get(client);
    if (b === undefined) {
      b = { tokens: this.burst, last: now };
      if (this.#buckets.size >= this.#maxClients) {
        const oldest = this.#buckets.keys().next().value;
        if (oldest !== undefined) this.#buckets.delete(oldest);
      }
    } else {
      // Re-inserted below: the map stays ordered by last use.
      this.#buckets.delete(client);
      b.tokens = Math.min(this.burst, b.tokens + ((now - b.last) / 1000) * this.rate);
      b.last = now;
    }
    this.#buckets.set(client, b);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - b.tokens) / this.rate));
  }
}
