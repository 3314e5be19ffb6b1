/** A token bucket: `rate` tokens per second, at most `burst` (the per-connection message rate of the WebSocket). */
export class TokenBucket {
  #tokens: number;
  #last = Date.now();
  constructor(
    readonly rate: number,
    readonly burst: number,
  ) {
    this.#tokens = burst;
  }

  /** Takes a token: `false` when there is none. */
  take(): boolean {
    const now = Date.now();
    this.#tokens = Math.min(this.burst, this.#tokens + ((now - this.#last) / 1000) * this.rate);
    this.#last = now;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }
}
