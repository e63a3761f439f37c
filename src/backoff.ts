/**
 * Exponential backoff, the one schedule every retry in the agent uses: the ceiling starts at
 * `initialMs` and doubles up to `maxMs`. With full jitter (the default; Attune's consumer-recovery
 * schedule, 250 ms doubling to 30 s) each delay is uniform in [0, ceiling], so a fleet of workers
 * does not reconnect in lockstep after a broker restart; without, each delay is the ceiling itself
 * (database retries: heartbeat, writes).
 */
export interface BackoffOptions {
  initialMs?: number;
  maxMs?: number;
  /** Full jitter (default true); false: every delay is the ceiling. */
  jitter?: boolean;
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
    this.#random = opts.jitter === false ? () => 1 : (opts.random ?? Math.random);
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
