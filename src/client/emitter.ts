/**
 * A typed listener registry: `on()` returns its disposer, a listener that throws does
 * not stop the others (its error goes to `onListenerError`).
 */
export class Emitter<M extends object> {
  readonly #listeners = new Map<keyof M, Set<(payload: never) => void>>();
  readonly #onListenerError: (error: unknown, type: keyof M) => void;

  constructor(onListenerError: (error: unknown, type: keyof M) => void) {
    this.#onListenerError = onListenerError;
  }

  on<K extends keyof M>(type: K, listener: (payload: M[K]) => void): () => void {
    let set = this.#listeners.get(type);
    if (set === undefined) {
      set = new Set();
      this.#listeners.set(type, set);
    }
    // Wrapped so that the same function registered twice gets two independent disposers.
    const entry = (payload: never): void => listener(payload);
    set.add(entry);
    return () => {
      set.delete(entry);
      if (set.size === 0 && this.#listeners.get(type) === set) this.#listeners.delete(type);
    };
  }

  emit<K extends keyof M>(type: K, payload: M[K]): void {
    const set = this.#listeners.get(type);
    if (set === undefined) return;
    for (const listener of [...set]) {
      try {
        (listener as (payload: M[K]) => void)(payload);
      } catch (error) {
        this.#onListenerError(error, type);
      }
    }
  }
}
