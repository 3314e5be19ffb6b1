import { ErrorCodes, FlowcastError } from '../core/errors.js';

/**
 * One consumer's queue behind an async iterator: `push()` from the producer, `for await`
 * on the other side. Bounded: past `capacity` held items the iterator throws an
 * `OVERFLOW` error once the held ones are consumed, rather than dropping anything
 * silently or growing without end. `end()` finishes it after the held items; an abort
 * finishes it at once.
 */
export class EventStream<T> implements AsyncIterableIterator<T> {
  readonly #items: T[] = [];
  readonly #capacity: number;
  readonly #signal: AbortSignal | undefined;
  readonly #onFinish: () => void;
  #head = 0;
  #waiter: ((result: IteratorResult<T>) => void) | null = null;
  #ended = false;
  #finished = false;
  #overflow: FlowcastError | null = null;
  readonly #onAbort = (): void => this.#finish();

  constructor(capacity: number, signal: AbortSignal | undefined, onFinish: () => void) {
    this.#capacity = capacity;
    this.#signal = signal;
    this.#onFinish = onFinish;
    if (signal?.aborted === true) this.#finish();
    else signal?.addEventListener('abort', this.#onAbort, { once: true });
  }

  /** `true` once the iteration is over (ended and drained, aborted, or returned). */
  get finished(): boolean {
    return this.#finished;
  }

  /** Items waiting for the consumer. */
  get size(): number {
    return this.#items.length - this.#head;
  }

  push(item: T): void {
    if (this.#ended || this.#finished || this.#overflow !== null) return;
    if (this.#waiter !== null) {
      const resolve = this.#waiter;
      this.#waiter = null;
      resolve({ value: item, done: false });
      return;
    }
    if (this.size >= this.#capacity) {
      this.#overflow = new FlowcastError(
        ErrorCodes.OVERFLOW,
        `events() fell behind: more than ${this.#capacity} events waiting (bufferSize ${this.#capacity}); consume faster or raise bufferSize`,
      );
      return;
    }
    this.#items.push(item);
  }

  /** No more items: the iterator ends once the held ones are consumed. */
  end(): void {
    if (this.#ended) return;
    this.#ended = true;
    if (this.#waiter !== null && this.size === 0) this.#finish();
  }

  next(): Promise<IteratorResult<T>> {
    if (this.#finished) return Promise.resolve({ value: undefined, done: true });
    if (this.size > 0) {
      const value = this.#items[this.#head] as T;
      this.#items[this.#head] = undefined as T;
      this.#head++;
      // Compact now and then instead of shift()ing every item.
      if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
        this.#items.splice(0, this.#head);
        this.#head = 0;
      }
      return Promise.resolve({ value, done: false });
    }
    if (this.#overflow !== null) {
      const error = this.#overflow;
      this.#finish();
      return Promise.reject(error);
    }
    if (this.#ended) {
      this.#finish();
      return Promise.resolve({ value: undefined, done: true });
    }
    return new Promise<IteratorResult<T>>((resolve) => {
      this.#waiter = resolve;
    });
  }

  return(): Promise<IteratorResult<T>> {
    this.#finish();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  #finish(): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#items.length = 0;
    this.#head = 0;
    this.#signal?.removeEventListener('abort', this.#onAbort);
    const waiter = this.#waiter;
    this.#waiter = null;
    waiter?.({ value: undefined, done: true });
    this.#onFinish();
  }
}
