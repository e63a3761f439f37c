/**
 * The execution service: turns dispatches into runs. It owns the permits, the cancellation registry,
 * duplicate protection and the write/publish sequence of one execution; the database, the broker and
 * the process runner are handed in as ports, so its logic is tested with fakes and the adapters with
 * real servers.
 *
 * Per execution (contract §5.1–5.2, with the fixes listed at the top of the contract):
 *   permit → ack (claim) → load row → guards → `running` row + message → run → one terminal row
 *   → one terminal status + completion pair carrying the REAL outcome.
 * Every failure after the ack ends in a terminal row whose `result.error` says what went wrong.
 */
import type { Logger } from 'pino';
import { isTerminalStatus, type ExecutionRow, type ExecutionStatus, type TerminalStatus } from '../model.ts';
import type { DispatchRelease } from '../db/executions.ts';
import { cancelledResult, type CancelReason } from '../execution/cancel.ts';
import type { Completion, StatusChange } from '../protocol/messages.ts';
import { Permits } from './permits.ts';
import { Cancellations } from './cancellations.ts';
export type AckDecision = 'ack' | 'nack-requeue' | 'nack-drop';

export interface DispatchRequest {
  execution_id: number;
  action_ref: string;
  release_id?: number | null;
  release_digest?: string | null;
}

export interface ExecutionStore {
  loadExecution(id: number): Promise<ExecutionRow | null>;
  /**
   * Read the row and, in the same step, move it to `running` + `started_at` — refused when it is
   * not in a claimable status or is pinned to another release than the dispatch names. Null when
   * the execution does not exist. `execution` is the row as it was; `previous` its status (null
   * when unknown: a retried claim whose first attempt committed); `prefetched`: whatever else the
   * store read in that step for the run, handed to the runner as is.
   */
  claim(id: number, release: DispatchRelease): Promise<{ execution: ExecutionRow; claimed: boolean; previous: ExecutionStatus | null; prefetched?: unknown } | null>;
  /** The one terminal write; returns what the completion message needs. */
  writeTerminal(id: number, status: TerminalStatus, result: Record<string, unknown>): Promise<{ action: number | null; action_ref: string; result: unknown }>;
}

/** What a run tells the service; the optional facts only feed metrics. */
export interface RunOutcome {
  status: TerminalStatus;
  result: Record<string, unknown>;
  /** Runtime name the action ran with (`shell`, `python`, …). */
  runtime?: string;
  stdoutTruncated?: boolean;
  stderrTruncated?: boolean;
  /**
   * Work of the run still under way that must end before the terminal messages go out (sealing
   * the log artifacts): done while the terminal row is written. Never rejects.
   */
  logsSealed?: Promise<void>;
}

export interface ActionRunner {
  /** `prefetched`: what the store's claim read along for the run. */
  run(execution: ExecutionRow, signal: AbortSignal, log: Logger, prefetched?: unknown): Promise<RunOutcome>;
}

/** One execution ended (or a dispatch was skipped without running): the metrics hook. */
export interface FinishedEvent {
  executionId: number;
  status: TerminalStatus | 'skipped';
  runtime?: string;
  durationMs?: number;
  stdoutTruncated?: boolean;
  stderrTruncated?: boolean;
}

export interface StatusPublisher {
  /** Queued durably in memory until the broker confirms; never throws. */
  statusChanged(p: StatusChange): void;
  completed(p: Completion): void;
}

export interface ServiceDeps {
  store: ExecutionStore;
  runner: ActionRunner;
  publisher: StatusPublisher;
  logger: Logger;
  maxConcurrentTasks: number;
  /** Retries a database write until it succeeds or the window is over (database outages). */
  retryWrite: <T>(what: string, fn: () => Promise<T>) => Promise<T>;
  now?: () => Date;
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
   * Consumer handler for `worker.{id}.executions`. Resolves when the dispatch is claimed (permit
   * taken → ack) or refused; the run itself continues in the background.
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
    this.#track(
      this.#process(req, ac.signal, log).finally(() => {
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

  async #process(req: DispatchRequest, signal: AbortSignal, log: Logger): Promise<void> {
    const { store } = this.#deps;
    const id = req.execution_id;
    // Load and claim in one round trip; when the claim is refused the row says why.
    const claim = await this.#deps.retryWrite(`claim execution ${id}`, () => store.claim(id, dispatchRelease(req)));
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

    let outcome: RunOutcome;
    try {
      outcome = await this.#deps.runner.run({ ...execution, status: 'running' }, signal, log, claim.prefetched);
    } catch (e) {
      log.error({ err: e }, 'action execution failed before the process could finish');
      outcome = { status: 'failed', result: { succeeded: false, error: `Action execution failed: ${(e as Error).message}` } };
    }
    await this.#finish(execution, 'running', outcome.status, outcome.result, log, outcome);
  }

  async #finishCancelledBeforeStart(req: DispatchRequest, log: Logger): Promise<void> {
    const execution = await this.#deps.retryWrite(`load execution ${req.execution_id}`, () => this.#deps.store.loadExecution(req.execution_id));
    if (!execution) {
      log.error(`unknown execution ${req.execution_id}: cancelled before start, but no row exists`);
      return;
    }
    if (isTerminalStatus(execution.status)) return;
    await this.#finish(execution, execution.status, 'cancelled', cancelledResult('cancel'), log);
  }

  async #finish(execution: ExecutionRow, previous: string, status: TerminalStatus, result: Record<string, unknown>, log: Logger, facts: Partial<RunOutcome> = {}): Promise<void> {
    const id = execution.id;
    let written: { action: number | null; action_ref: string; result: unknown };
    try {
      [written] = await Promise.all([
        this.#deps.retryWrite(`write the ${status} result of execution ${id}`, () => this.#deps.store.writeTerminal(id, status, result)),
        facts.logsSealed,
      ]);
    } catch (e) {
      log.error({ err: e, status }, `LOST RESULT: could not write the ${status} result of execution ${id}; the row stays ${previous}`);
      return;
    }
    const at = this.#now();
    this.#deps.publisher.statusChanged({ execution_id: id, action_ref: written.action_ref, previous_status: previous, new_status: status, changed_at: at });
    if (written.action !== null) {
      this.#deps.publisher.completed({ execution_id: id, action_id: written.action, action_ref: written.action_ref, status, result: written.result, completed_at: at });
    } else {
      log.warn(`execution ${id} has no action id: ExecutionCompleted not published (Attune requires action_id)`);
    }
    log.info({ status, exit_code: result.exit_code, duration_ms: result.duration_ms, runtime: facts.runtime }, `execution ${id} ${status}`);
    this.#deps.onFinished?.({
      executionId: id, status, runtime: facts.runtime,
      durationMs: typeof result.duration_ms === 'number' ? result.duration_ms : undefined,
      stdoutTruncated: facts.stdoutTruncated, stderrTruncated: facts.stderrTruncated,
    });
  }
}

/** What claimExecution checks in SQL; checkRelease says it in words when the claim is refused. */
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
