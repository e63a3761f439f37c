interface Waiter { resolve: () => void; reject: (e: unknown) => void; signal?: AbortSignal; onAbort?: () => void }

/** Concurrency permits (`max_concurrent_tasks`), FIFO, with acquisition that a cancel can abort. */
export class Permits {
  #free: number;
  readonly #waiters: Waiter[] = [];
  readonly size: number;

  constructor(size: number) {
    this.size = size;
    this.#free = size;
  }

  get inUse(): number {
    return this.size - this.#free;
  }

  get waiting(): number {
    return this.#waiters.length;
  }

  acquire(signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.#free > 0 && this.#waiters.length === 0) {
      this.#free--;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const w: Waiter = { resolve, reject, signal };
      if (signal) {
        w.onAbort = () => {
          const i = this.#waiters.indexOf(w);
          if (i >= 0) this.#waiters.splice(i, 1);
          reject(signal.reason);
        };
        signal.addEventListener('abort', w.onAbort, { once: true });
      }
      this.#waiters.push(w);
    });
  }

  release(): void {
    const next = this.#waiters.shift();
    if (next) {
      if (next.signal && next.onAbort) next.signal.removeEventListener('abort', next.onAbort);
      next.resolve(); // the permit passes straight to the next waiter
    } else {
      this.#free++;
    }
  }
}
