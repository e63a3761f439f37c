/**
 * Full-jitter exponential backoff, Attune's consumer-recovery schedule: the ceiling starts at
 * 250 ms and doubles up to 30 s; each delay is uniform in [0, ceiling] so a fleet of workers
 * does not reconnect in lockstep after a broker restart.
 */
export interface BackoffOptions {
  initialMs?: number;
  maxMs?: number;
  /** Uniform [0, 1) source; injectable for tests. */
  random?: () => number;
}

export class Backoff {
  readonly #initial: number;
  readonly #max: number;
  readonly #random: () => number;
  #ceiling: number;

  constructor(opts: BackoffOptions = {}) {
    this.#initial = opts.initialMs ?? 250;
    this.#max = opts.maxMs ?? 30_000;
    this.#random = opts.random ?? Math.random;
    this.#ceiling = this.#initial;
  }

  /** The next delay in ms; the ceiling doubles for the one after. */
  next(): number {
    const delay = this.#random() * this.#ceiling;
    this.#ceiling = Math.min(this.#ceiling * 2, this.#max);
    return delay;
  }

  /** The ceiling the next delay is drawn under (for logs and tests). */
  get ceilingMs(): number {
    return this.#ceiling;
  }

  reset(): void {
    this.#ceiling = this.#initial;
  }
}
