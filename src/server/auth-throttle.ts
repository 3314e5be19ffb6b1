/**
 * Token guessing, throttled per client address: every refused token (WebSocket, SSE,
 * REST) counts against its address; past the limit the address is refused with 429
 * before its token is even looked at, until the window passes.
 */
import { RateLimiterMemory } from 'rate-limiter-flexible';
import { InvalidArgumentError } from '../core/errors.js';
import { checkKnownKeys, checkObject, checkPositiveInt, show } from '../core/validate.js';

/** The server's `authFailures` option. */
export interface AuthFailureLimitOptions {
  /** Refused tokens one address may send per window before it is blocked. @default 20 */
  max?: number;
  /** The window, and how long a blocked address stays blocked, in ms. @default 60000 */
  windowMs?: number;
}

/** Failed authentications per address (rate-limiter-flexible's in-memory limiter). */
export class AuthFailureLimiter {
  readonly max: number;
  readonly windowMs: number;
  readonly #limiter: RateLimiterMemory;

  constructor(options: AuthFailureLimitOptions = {}) {
    checkKnownKeys(checkObject(options, 'authFailures'), ['max', 'windowMs'], 'authFailures');
    this.max = options.max === undefined ? 20 : checkPositiveInt(options.max, 'authFailures.max');
    this.windowMs = options.windowMs === undefined ? 60_000 : checkPositiveInt(options.windowMs, 'authFailures.windowMs');
    if (this.windowMs < 1000) throw new InvalidArgumentError(`authFailures.windowMs must be at least 1000, received ${show(options.windowMs)}`);
    const seconds = Math.ceil(this.windowMs / 1000);
    this.#limiter = new RateLimiterMemory({ points: this.max, duration: seconds, blockDuration: seconds });
  }

  /** Seconds until `address` may try again, or 0 when it is not blocked. */
  async blockedFor(address: string): Promise<number> {
    const res = await this.#limiter.get(address);
    if (res === null || res.consumedPoints < this.max) return 0;
    return Math.max(1, Math.ceil(res.msBeforeNext / 1000));
  }

  /** Counts one refused token of `address`. */
  async failed(address: string): Promise<void> {
    // Rejects once the address is over the limit: that is the block, already recorded.
    await this.#limiter.consume(address).catch(() => undefined);
  }

  /** The 429 message for an address blocked for `seconds`. */
  message(seconds: number): string {
    return `Too many refused tokens from this address: at most ${this.max} per ${Math.round(this.windowMs / 1000)}s; retry in ${seconds}s`;
  }
}
