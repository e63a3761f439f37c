/**
 * Heartbeat (docs/attune-compat.md §3.4): first beat at once, then every `heartbeat_interval`. Attune's scheduler
 * ignores workers whose last beat is older than 90 s, so a failed beat is retried with a short,
 * capped backoff instead of waiting a whole interval: once the database is back, a beat lands within
 * `retryMaxMs` (≤ 10 s by default). One warning per outage, one info line on recovery.
 *
 * stop() cancels the next beat and waits for one in flight, so a deregistration written after it can
 * never be flipped back to `active` by a late beat (the race the Rust agent has, §3.5).
 */
import type pg from 'pg';
import type { Logger } from '../observe/logger.ts';
import type { Queryable } from './pool.ts';
import { Backoff } from '../backoff.ts';

export interface Timers {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realTimers: Timers = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

export interface HeartbeatOptions {
  db: Queryable;
  workerId: number;
  intervalMs: number;
  log: Logger;
  /** First retry delay after a failed beat (default min(1 s, interval/2)); doubles up to retryMaxMs. */
  retryInitialMs?: number;
  /** Retry delay cap (default min(interval/2, 10 s), at least retryInitialMs). */
  retryMaxMs?: number;
  /** A beat hung on a dead connection is abandoned after this (default interval clamped to 2-10 s). */
  queryTimeoutMs?: number;
  /** Error → one log-safe line (e.g. pool.ts dbError, which scrubs credentials). */
  describeError?: (e: unknown) => string;
  timers?: Timers;
}

export interface HeartbeatState {
  running: boolean;
  /** Time (ms since epoch, per the injected clock) of the last successful beat. */
  lastSuccessAt: number | null;
  /** Time of the last failed beat (same clock); later than lastSuccessAt while the database is away. */
  lastFailureAt: number | null;
  consecutiveFailures: number;
  lastError: string | null;
  /** The UPDATE matched no row: someone deleted this worker's row. */
  rowMissing: boolean;
  beats: number;
}

const SQL = `UPDATE worker SET last_heartbeat = now(), status = 'active', updated = now() WHERE id = $1`;

export class Heartbeat {
  readonly #db: Queryable;
  readonly #workerId: number;
  readonly #intervalMs: number;
  readonly #log: Logger;
  readonly #retryMaxMs: number;
  readonly #queryTimeoutMs: number;
  readonly #describe: (e: unknown) => string;
  readonly #timers: Timers;

  #started = false;
  #stopped = false;
  #timer: unknown = null;
  #inFlight: Promise<void> | null = null;
  #stopPromise: Promise<void> | null = null;
  readonly #retry: Backoff;
  #outageStartedAt: number | null = null;
  #state: HeartbeatState = { running: false, lastSuccessAt: null, lastFailureAt: null, consecutiveFailures: 0, lastError: null, rowMissing: false, beats: 0 };

  constructor(o: HeartbeatOptions) {
    this.#db = o.db;
    this.#workerId = o.workerId;
    this.#intervalMs = o.intervalMs;
    this.#log = o.log;
    const retryInitialMs = o.retryInitialMs ?? Math.min(1000, Math.max(1, Math.floor(o.intervalMs / 2)));
    this.#retryMaxMs = Math.max(retryInitialMs, o.retryMaxMs ?? Math.min(Math.floor(o.intervalMs / 2), 10_000));
    this.#queryTimeoutMs = o.queryTimeoutMs ?? Math.min(Math.max(o.intervalMs, 2000), 10_000);
    this.#describe = o.describeError ?? ((e) => (e instanceof Error ? e.message : String(e)));
    this.#timers = o.timers ?? realTimers;
    this.#retry = new Backoff({ initialMs: retryInitialMs, maxMs: this.#retryMaxMs, jitter: false });
  }

  start(): void {
    if (this.#started) return;
    this.#started = true;
    this.#state.running = true;
    this.#schedule(0);
  }

  /** Idempotent: every call returns the same promise, settled once no beat can run any more. */
  stop(): Promise<void> {
    if (this.#stopPromise) return this.#stopPromise;
    this.#stopped = true;
    this.#state.running = false;
    if (this.#timer !== null) this.#timers.clearTimeout(this.#timer);
    this.#timer = null;
    this.#stopPromise = (this.#inFlight ?? Promise.resolve()).then(() => undefined);
    return this.#stopPromise;
  }

  state(): Readonly<HeartbeatState> {
    return { ...this.#state };
  }

  #schedule(ms: number): void {
    if (this.#stopped) return;
    this.#timer = this.#timers.setTimeout(() => {
      this.#timer = null;
      if (this.#stopped) return;
      this.#inFlight = this.#beat().finally(() => {
        this.#inFlight = null;
      });
    }, ms);
  }

  async #beat(): Promise<void> {
    let rowCount: number;
    try {
      const config = { text: SQL, values: [this.#workerId], query_timeout: this.#queryTimeoutMs } as pg.QueryConfig;
      rowCount = (await this.#db.query(config)).rowCount ?? 0;
    } catch (e) {
      this.#onFailure(e);
      return;
    }
    this.#onSuccess(rowCount);
  }

  #onSuccess(rowCount: number): void {
    const now = this.#timers.now();
    const s = this.#state;
    if (s.consecutiveFailures > 0) {
      this.#log.info(
        { worker_id: this.#workerId, failed_beats: s.consecutiveFailures, outage_ms: this.#outageStartedAt === null ? null : now - this.#outageStartedAt },
        'heartbeat recovered: database reachable again',
      );
    }
    if (rowCount === 0 && !s.rowMissing) {
      this.#log.error({ worker_id: this.#workerId }, `worker row ${this.#workerId} no longer exists (deleted by an operator or a retention job); restart the agent to register again`);
    }
    s.rowMissing = rowCount === 0;
    s.lastSuccessAt = now;
    s.consecutiveFailures = 0;
    s.lastError = null;
    s.beats++;
    this.#outageStartedAt = null;
    this.#retry.reset();
    this.#schedule(this.#intervalMs);
  }

  #onFailure(e: unknown): void {
    const s = this.#state;
    s.consecutiveFailures++;
    s.lastFailureAt = this.#timers.now();
    s.lastError = this.#describe(e);
    if (s.consecutiveFailures === 1) {
      this.#outageStartedAt = this.#timers.now();
      this.#log.warn(
        { worker_id: this.#workerId, err: s.lastError, retry_max_ms: this.#retryMaxMs },
        'heartbeat failed; retrying until the database is reachable (Attune stops scheduling on this worker after 90 s without a beat)',
      );
    } else {
      this.#log.debug({ worker_id: this.#workerId, err: s.lastError, failures: s.consecutiveFailures }, 'heartbeat still failing');
    }
    this.#schedule(this.#retry.next());
  }
}
