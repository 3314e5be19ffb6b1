/**
 * Outgoing messages of one connection, paced by a token bucket: `burst` at once, then
 * `perSecond`. The server closes a client that sends too fast; resubscribing hundreds
 * of runs after a reconnect must not trip it.
 */
export class Outbox {
  readonly #perSecond: number;
  readonly #burst: number;
  readonly #write: (text: string) => void;
  readonly #queue: string[] = [];
  #tokens: number;
  #last = Date.now();
  #timer: ReturnType<typeof setTimeout> | null = null;

  constructor(perSecond: number, burst: number, write: (text: string) => void) {
    this.#perSecond = perSecond;
    this.#burst = burst;
    this.#tokens = burst;
    this.#write = write;
  }

  /** Messages waiting for their turn. */
  get pending(): number {
    return this.#queue.length;
  }

  send(message: object): void {
    this.#queue.push(JSON.stringify(message));
    this.#flush();
  }

  /** Drops what waits (the connection is gone). */
  clear(): void {
    this.#queue.length = 0;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
  }

  #flush(): void {
    const now = Date.now();
    this.#tokens = Math.min(this.#burst, this.#tokens + ((now - this.#last) / 1000) * this.#perSecond);
    this.#last = now;
    while (this.#queue.length > 0 && this.#tokens >= 1) {
      this.#tokens -= 1;
      this.#write(this.#queue.shift() as string);
    }
    if (this.#queue.length > 0 && this.#timer === null) {
      const wait = Math.ceil(((1 - this.#tokens) / this.#perSecond) * 1000);
      this.#timer = setTimeout(() => {
        this.#timer = null;
        this.#flush();
      }, wait);
    }
  }
}
