/**
 * Cancellation registry. A cancel can arrive before the dispatch (the API and the executor race),
 * so unknown ids are remembered — bounded in count and age, unlike the Rust agent's ever-growing set.
 */
import type { CancelReason } from '../execution/cancel.ts';

export class Cancellations {
  readonly #active = new Map<number, AbortController>();
  readonly #pending = new Map<number, number>(); // execution id → time the cancel arrived
  readonly #maxPending: number;
  readonly #pendingTtlMs: number;
  readonly #now: () => number;

  constructor(opts: { maxPending?: number; pendingTtlMs?: number; now?: () => number } = {}) {
    this.#maxPending = opts.maxPending ?? 10_000;
    this.#pendingTtlMs = opts.pendingTtlMs ?? 60 * 60_000;
    this.#now = opts.now ?? Date.now;
  }

  /** Register an execution taken by this worker; aborted at once if a cancel came first. */
  register(id: number): AbortController {
    const ac = new AbortController();
    this.#active.set(id, ac);
    this.#prune();
    if (this.#pending.delete(id)) ac.abort('cancel' satisfies CancelReason);
    return ac;
  }

  unregister(id: number): void {
    this.#active.delete(id);
  }

  has(id: number): boolean {
    return this.#active.has(id);
  }

  /** Returns true when the execution is known here (running or queued for a permit). */
  cancel(id: number, reason: CancelReason = 'cancel'): boolean {
    const ac = this.#active.get(id);
    if (ac) {
      if (!ac.signal.aborted) ac.abort(reason);
      return true;
    }
    this.#pending.set(id, this.#now());
    this.#prune();
    return false;
  }

  cancelAll(reason: CancelReason): number {
    let n = 0;
    for (const ac of this.#active.values()) {
      if (!ac.signal.aborted) {
        ac.abort(reason);
        n++;
      }
    }
    return n;
  }

  get pendingCount(): number {
    return this.#pending.size;
  }

  #prune(): void {
    const cutoff = this.#now() - this.#pendingTtlMs;
    for (const [id, t] of this.#pending) {
      if (t >= cutoff && this.#pending.size <= this.#maxPending) break; // insertion order = age order
      this.#pending.delete(id);
    }
  }
}
