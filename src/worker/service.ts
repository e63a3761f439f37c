/**
 * The execution service: turns dispatches into runs. It owns the permits, the cancellation registry,
 * duplicate protection and the write/publish sequence of one execution; the database, the broker and
 * the process runner are handed in as ports, so its logic is tested with fakes and the adapters with
 * real servers.
 *
 * One execution, in four steps (docs/attune-compat.md §5.1–5.2 and #deliberate-differences):
 *   1. onDispatch, the consumer's handler: duplicate check, permit, then
 *   2. claim: the store's one statement moves the row to `running` and reads what the run needs;
 *      only once it committed (or was definitively refused) is the dispatch acked. A claim the
 *      database cannot answer within the claim window hands the dispatch back (nack, requeue)
 *      before the queue's message TTL; a redelivery finds the row `running` and is not run again.
 *      A refused claim says why (release mismatch → failed, canceling → cancelled, else skipped);
 *   3. run (worker/run-execution.ts): plan → process → outcome, one RunResult;
 *   4. finish: one terminal row (the log artifacts sealed meanwhile) → one status change +
 *      completion pair carrying the REAL outcome. A result the database cannot take goes to the
 *      durable result spool (worker/result-spool.ts), replayed when the database answers.
 * Every failure after the ack ends in a terminal row (or a spooled one) whose `result.error` says what went wrong.
 */
import type { Logger } from 'pino';
import { isTerminalStatus, type DispatchRelease, type ExecutionRow, type TerminalStatus } from '../model.ts';
import { cancelledResult, type CancelReason } from '../execution/cancel.ts';
import type { Retry } from '../db/retry.ts';
import type { RecoveredExecution } from '../db/recovery.ts';
import type { Claim, Clock, ExecutionStore, RunResult, StatusPublisher } from './ports.ts';
import { Permits } from './permits.ts';
import { Cancellations } from './cancellations.ts';
import type { ResultSpool } from './result-spool.ts';
import type { SpooledWrite } from '../db/executions.ts';

export type AckDecision = 'ack' | 'nack-requeue' | 'nack-drop';

export interface DispatchRequest {
  execution_id: number;
  action_ref: string;
  release_id?: number | null;
  release_digest?: string | null;
}

/** Runs one claimed execution (its row already `running`) to its result (worker/run-execution.ts). */
export type RunExecution = (claim: Claim, signal: AbortSignal, log: Logger) => Promise<RunResult>;

/** One execution ended (or a dispatch was skipped without running): the metrics hook. */
export interface FinishedEvent {
  executionId: number;
  status: TerminalStatus | 'skipped';
  runtime?: string;
  durationMs?: number;
  stdoutTruncated?: boolean;
  stderrTruncated?: boolean;
}

export interface ServiceDeps {
  store: ExecutionStore;
  run: RunExecution;
  publisher: StatusPublisher;
  logger: Logger;
  maxConcurrentTasks: number;
  /** Retries a database call until it succeeds or the window is over (database outages). */
  retry: Retry;
  /**
   * The claim's retry: shorter than `retry` so that a dispatch held for it goes back to the queue
   * well before the queue's 300 s message TTL (default: `retry`).
   */
  claimRetry?: Retry;
  /** Where results the database cannot take are kept, and their conditional write (absent: logged as lost). */
  spool?: { spool: ResultSpool; write: (id: number, status: TerminalStatus, result: Record<string, unknown>) => Promise<SpooledWrite> };
  now?: Clock;
  onFinished?: (e: FinishedEvent) => void;
}

export class ExecutionService {
  readonly permits: Permits;
  readonly cancellations = new Cancellations();
  readonly #deps: ServiceDeps;
  readonly #inFlight = new Set<Promise<void>>();
  /** Delivered but waiting for a permit: handed back to the queue on drain. */
  readonly #queued = new Set<number>();
  readonly #log: Logger;
  #draining = false;

  constructor(deps: ServiceDeps) {
    this.#deps = deps;
    this.#log = deps.logger;
    this.permits = new Permits(deps.maxConcurrentTasks);
  }

  get running(): number {
    return this.#inFlight.size;
  }

  /**
   * Consumer handler for `worker.{id}.executions`. Resolves when the claim committed (→ ack) or was
   * definitively refused (→ ack), or could not reach the database (→ nack, requeue); the run
   * itself continues in the background.
   */
  async onDispatch(req: DispatchRequest): Promise<AckDecision> {
    const id = req.execution_id;
    const log = this.#log.child({ execution_id: id, action_ref: req.action_ref });
    if (this.cancellations.has(id)) {
      log.warn('duplicate dispatch of an execution already taken by this worker: ignored');
      return 'ack';
    }
    if (this.#draining) return 'nack-requeue'; // another worker takes it
    const ac = this.cancellations.register(id);
    this.#queued.add(id);
    try {
      await this.permits.acquire(ac.signal);
    } catch {
      this.#queued.delete(id);
      const reason = ac.signal.reason as CancelReason;
      if (reason === 'shutdown') {
        this.cancellations.unregister(id);
        log.info('dispatch handed back to the queue: this worker is shutting down');
        return 'nack-requeue';
      }
      // Cancelled while queued behind the permits: claim it and finish it as cancelled without running.
      this.#track(this.#finishCancelledBeforeStart(req, log).finally(() => this.cancellations.unregister(id)));
      return 'ack';
    }
    this.#queued.delete(id);
    let claim: Claim | null;
    try {
      const retry = this.#deps.claimRetry ?? this.#deps.retry;
      const claiming = retry(`claim execution ${id}`, () => this.#deps.store.claim(id, dispatchRelease(req)));
      // A drain waits for a claim in flight too: one that commits must go on to a terminal row.
      this.#track(claiming.then(() => undefined, () => undefined));
      claim = await claiming;
    } catch (e) {
      this.cancellations.unregister(id);
      this.permits.release();
      const err = e as Error & { retryable?: boolean };
      if (err.retryable === false) {
        log.error({ err: err.message }, `the claim of execution ${id} failed and retrying cannot help: dispatch dropped (nack, no requeue); the row stays as it is`);
        return 'nack-drop';
      }
      // Not acked: RabbitMQ keeps the dispatch; its redelivery finds the row `running` if this claim
      // did commit after all (the store recognises its own claim), else claims it then.
      log.warn({ err: err.message }, `the claim of execution ${id} did not get through: dispatch handed back to the queue (nack, requeue)`);
      return 'nack-requeue';
    }
    this.#track(
      this.#execute(req, claim, ac.signal, log).finally(() => {
        this.cancellations.unregister(id);
        this.permits.release();
      }),
    );
    return 'ack';
  }

  /** Consumer handler for `worker.{id}.cancel`. */
  onCancel(executionId: number): AckDecision {
    const known = this.cancellations.cancel(executionId, 'cancel');
    this.#log.info({ execution_id: executionId, known }, known ? 'cancelling execution' : 'cancel for an execution not (yet) on this worker: remembered');
    return 'ack';
  }

  /** Stop taking work; dispatches waiting for a permit go back to the queue. */
  startDrain(): void {
    this.#draining = true;
    for (const id of this.#queued) this.cancellations.cancel(id, 'shutdown');
  }

  /** Cancel everything still running (reason recorded in the result). */
  cancelAll(reason: CancelReason): number {
    return this.cancellations.cancelAll(reason);
  }

  /** Resolves when every in-flight execution has written its terminal row (or `timeoutMs` passed). */
  async waitIdle(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (this.#inFlight.size > 0) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.allSettled([...this.#inFlight]), new Promise((r) => (timer = setTimeout(r, left)))]);
      clearTimeout(timer);
    }
    return true;
  }

  #track(p: Promise<void>): void {
    const tracked = p.catch((e) => this.#log.error({ err: e }, 'internal error in execution task')).finally(() => this.#inFlight.delete(tracked));
    this.#inFlight.add(tracked);
  }

  #now(): Date {
    return this.#deps.now?.() ?? new Date();
  }

  async #execute(req: DispatchRequest, claim: Claim | null, signal: AbortSignal, log: Logger): Promise<void> {
    const id = req.execution_id;
    // Loaded and claimed in one round trip (onDispatch); when the claim is refused the row says why.
    if (!claim) {
      log.error(`unknown execution ${id}: no row in the execution table (deleted, or ATTUNE__DATABASE__SCHEMA points at another schema); dispatch dropped`);
      this.#deps.onFinished?.({ executionId: id, status: 'skipped' });
      return;
    }
    const { execution } = claim;
    if (!claim.claimed) {
      const releaseProblem = checkRelease(req, execution);
      if (releaseProblem) {
        await this.#finish(execution, execution.status, 'failed', { succeeded: false, error: releaseProblem }, log);
      } else if (execution.status === 'canceling') {
        await this.#finish(execution, execution.status, 'cancelled', cancelledResult('cancel'), log);
      } else if (execution.status === 'running' || isTerminalStatus(execution.status)) {
        log.warn({ status: execution.status }, `execution ${id} is already ${execution.status}: duplicate dispatch ignored`);
        this.#deps.onFinished?.({ executionId: id, status: 'skipped' });
      } else {
        log.warn({ status: execution.status }, `execution ${id} is ${execution.status}, not a status a dispatch may start: not run`);
        this.#deps.onFinished?.({ executionId: id, status: 'skipped' });
      }
      return;
    }
    // null: a retried claim found its own committed first attempt; the executor's state before a dispatch.
    const previous = claim.previous ?? 'scheduled';
    this.#deps.publisher.statusChanged({ execution_id: id, action_ref: execution.action_ref, previous_status: previous, new_status: 'running', changed_at: this.#now() });

    let run: RunResult;
    try {
      run = await this.#deps.run({ ...claim, execution: { ...execution, status: 'running' } }, signal, log);
    } catch (e) {
      log.error({ err: e }, 'action execution failed before the process could finish');
      run = { status: 'failed', result: { succeeded: false, error: `Action execution failed: ${(e as Error).message}` } };
    }
    await this.#finish(execution, 'running', run.status, run.result, log, run);
  }

  async #finishCancelledBeforeStart(req: DispatchRequest, log: Logger): Promise<void> {
    const execution = await this.#deps.retry(`load execution ${req.execution_id}`, () => this.#deps.store.loadExecution(req.execution_id));
    if (!execution) {
      log.error(`unknown execution ${req.execution_id}: cancelled before start, but no row exists`);
      return;
    }
    if (isTerminalStatus(execution.status)) return;
    await this.#finish(execution, execution.status, 'cancelled', cancelledResult('cancel'), log);
  }

  /** The messages of executions finished at start-up (db/recovery.ts): their status change and completion pair. */
  announceRecovered(recovered: readonly RecoveredExecution[]): void {
    for (const r of recovered) this.#announce({ id: r.id, action: r.action, action_ref: r.action_ref, result: r.result }, r.previous_status, r.status, this.#log);
  }

  async #finish(execution: ExecutionRow, previous: string, status: TerminalStatus, result: Record<string, unknown>, log: Logger, facts: Partial<RunResult> = {}): Promise<void> {
    const id = execution.id;
    const [write] = await Promise.allSettled([
      this.#deps.retry(`write the ${status} result of execution ${id}`, () => this.#deps.store.writeTerminal(id, status, result)),
      facts.logsSealed,
    ]);
    if (write.status === 'rejected') {
      const spool = this.#deps.spool?.spool;
      const kept = spool
        ? await spool.put({ execution_id: id, status, result, action: execution.action ?? null, action_ref: execution.action_ref, previous_status: previous })
        : false;
      if (kept) {
        log.error({ err: (write.reason as Error).message, status, spool_dir: spool!.path },
          `RESULT SPOOLED: the database did not take the ${status} result of execution ${id}; it is kept in the result spool and written (then announced) when the database answers`);
        this.#armReplay();
      } else if (!spool) {
        log.error({ err: write.reason, status }, `LOST RESULT: could not write the ${status} result of execution ${id}; the row stays ${previous}`);
      }
      return;
    }
    const written = write.value;
    this.#announce({ id, ...written }, previous, status, log);
    log.info({ status, exit_code: result.exit_code, duration_ms: result.duration_ms, runtime: facts.runtime }, `execution ${id} ${status}`);
    this.#deps.onFinished?.({
      executionId: id, status, runtime: facts.runtime,
      durationMs: typeof result.duration_ms === 'number' ? result.duration_ms : undefined,
      stdoutTruncated: facts.stdoutTruncated, stderrTruncated: facts.stderrTruncated,
    });
  }

  #replayTimer: NodeJS.Timeout | null = null;
  #replaying: Promise<number> | null = null;
  #replayIntervalMs = 5_000;

  /**
   * Write the spooled results (oldest first) and announce each one written. Conditional: a row that
   * moved on meanwhile (terminal, reset) keeps its status, and the file is dropped. Stops at the
   * first database failure (the next pass retries). Resolves to the number of files left.
   */
  replaySpool(): Promise<number> {
    this.#replaying ??= this.#replayOnce().finally(() => {
      this.#replaying = null;
    });
    return this.#replaying;
  }

  /** Replay now, then every `intervalMs` while the spool holds results (until stopSpoolReplay). */
  startSpoolReplay(intervalMs = 5_000): Promise<number> {
    this.#replayIntervalMs = intervalMs;
    return this.#replayAndRearm();
  }

  stopSpoolReplay(): void {
    if (this.#replayTimer) clearTimeout(this.#replayTimer);
    this.#replayTimer = null;
    this.#replayIntervalMs = 0;
  }

  async #replayAndRearm(): Promise<number> {
    const left = await this.replaySpool().catch((e: Error) => {
      this.#log.error({ err: e.message }, 'result spool: replay failed; retrying later');
      return 1;
    });
    if (left > 0) this.#armReplay();
    return left;
  }

  #armReplay(): void {
    if (this.#replayTimer || this.#replayIntervalMs <= 0 || !this.#deps.spool) return;
    this.#replayTimer = setTimeout(() => {
      this.#replayTimer = null;
      void this.#replayAndRearm();
    }, this.#replayIntervalMs);
    this.#replayTimer.unref();
  }

  async #replayOnce(): Promise<number> {
    const s = this.#deps.spool;
    if (!s) return 0;
    const entries = await s.spool.list();
    let left = entries.length;
    for (const e of entries) {
      const r = await s.spool.read(e.name);
      if (!r) {
        left--;
        continue;
      }
      const log = this.#log.child({ execution_id: r.execution_id, spool_file: e.name, spooled_by: r.agent });
      let w: SpooledWrite;
      try {
        w = await s.write(r.execution_id, r.status, r.result);
      } catch (err) {
        log.warn({ err: (err as Error).message, left }, `result spool: the database does not take results yet; ${left} kept, retrying in ${this.#replayIntervalMs} ms`);
        return left;
      }
      // The row is written (or will never be): the file goes before the messages, so that a crash
      // in between costs at most the messages (the row is what Attune trusts), never a second write.
      await s.spool.remove(e.name);
      left--;
      if (w.written || w.already) {
        if (w.written) log.warn({ status: r.status, spooled_at: r.written_at }, `result spool: the ${r.status} result of execution ${r.execution_id} kept since ${r.written_at} is written`);
        else log.warn({ status: r.status }, `result spool: execution ${r.execution_id} already holds this ${r.status} result (the first write committed, its answer was lost); announcing it`);
        const previous = w.written ? (w.previous_status ?? r.previous_status) : r.previous_status;
        this.#announce({ id: r.execution_id, action: w.action ?? r.action, action_ref: w.action_ref ?? r.action_ref, result: r.result }, previous, r.status, log);
        this.#deps.onFinished?.({ executionId: r.execution_id, status: r.status });
      } else if (w.previous_status === null) {
        log.error(`result spool: execution ${r.execution_id} no longer exists; its kept ${r.status} result is dropped`);
      } else {
        log.warn({ row_status: w.previous_status, spooled_status: r.status },
          `result spool: execution ${r.execution_id} is already ${w.previous_status}; its kept ${r.status} result is dropped (a newer status is never overwritten)`);
      }
    }
    return left;
  }

  /** The status change to a terminal status and its completion: the pair Attune reads an outcome from. */
  #announce(row: { id: number; action: number | null; action_ref: string; result: unknown }, previous: string, status: TerminalStatus, log: Logger): void {
    const at = this.#now();
    this.#deps.publisher.statusChanged({ execution_id: row.id, action_ref: row.action_ref, previous_status: previous, new_status: status, changed_at: at });
    if (row.action !== null) {
      this.#deps.publisher.completed({ execution_id: row.id, action_id: row.action, action_ref: row.action_ref, status, result: row.result, completed_at: at });
    } else {
      log.warn(`execution ${row.id} has no action id: ExecutionCompleted not published (Attune requires action_id)`);
    }
  }
}

/** What the claim checks in SQL; checkRelease says it in words when the claim is refused. */
function dispatchRelease(req: DispatchRequest): DispatchRelease {
  const id = req.release_id == null ? null : Number(req.release_id);
  // A release id that is no integer matches no row (-1): the claim is refused and checkRelease explains.
  return { releaseId: id === null ? null : Number.isSafeInteger(id) ? id : -1, releaseDigest: req.release_digest || null };
}

function checkRelease(req: DispatchRequest, e: ExecutionRow): string | null {
  if (req.release_id != null && e.pack_release != null && Number(req.release_id) !== Number(e.pack_release)) {
    return `pack release mismatch: the dispatch names release ${req.release_id} but execution ${e.id} is pinned to release ${e.pack_release}; the execution was re-pinned after scheduling — re-run it`;
  }
  if (req.release_digest && e.pack_release_digest && req.release_digest !== e.pack_release_digest) {
    return `pack release digest mismatch: the dispatch names ${req.release_digest} but execution ${e.id} is pinned to ${e.pack_release_digest}; re-run it`;
  }
  return null;
}
