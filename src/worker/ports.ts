/**
 * What the worker needs from the outside world, as ports: the execution rows (PostgreSQL:
 * db/execution-store.ts), the status messages (RabbitMQ: mq/status-publisher.ts), the log artifacts
 * and secret values of a run (PostgreSQL), and the clock. main.ts wires the adapters in; the
 * service and the run are tested with fakes of these.
 */
import type { ActionRow, DispatchRelease, EnforcementRefs, ExecutionRow, ExecutionStatus, PreparedSecretValue, RuntimeRow, RuntimeVersionRow, StoredSecretValue, TerminalStatus } from '../model.ts';
import type { Completion, StatusChange } from '../protocol/messages.ts';
import type { AllocateInput, LogAllocation, StreamEnd } from '../db/log-artifacts.ts';

/** Everything a run reads before it starts, read by the claim's one statement. */
export interface RunRows {
  /** From the executable snapshot when it has one, else the row by id, else by ref. */
  action: ActionRow;
  runtime: RuntimeRow | null;
  /** Live versions of `runtime` (or the snapshot's), in id order; may be empty. */
  runtimeVersions: readonly RuntimeVersionRow[];
  enforcement: EnforcementRefs | null;
  /** The execution's secret-backed parameters; null: the schema has no execution_secret_value table. */
  secrets: StoredSecretValue[] | null;
}

export interface Claim {
  /** The row as it was before the claim. */
  execution: ExecutionRow;
  /** True when this claim moved the row to `running`. */
  claimed: boolean;
  /** The status it replaced; null when unknown (a retried claim whose first attempt committed). */
  previous: ExecutionStatus | null;
  /** What the run needs, when claimed; null when the action is gone (no snapshot, no row by id or ref). */
  rows: RunRows | null;
}

/** What a terminal write returns for the completion message. */
export interface TerminalWritten {
  action: number | null;
  action_ref: string;
  result: unknown;
}

export interface ExecutionStore {
  loadExecution(id: number): Promise<ExecutionRow | null>;
  /**
   * In one statement: read the row and move it to `running` + `started_at` — refused when it is not
   * in a claimable status or is pinned to another release than the dispatch names — and read what
   * the run needs. Null when the execution does not exist.
   */
  claim(id: number, release: DispatchRelease): Promise<Claim | null>;
  /** The one terminal write. */
  writeTerminal(id: number, status: TerminalStatus, result: Record<string, unknown>): Promise<TerminalWritten>;
}

/** How one claimed execution ended: the terminal row to write, and facts that feed metrics. */
export interface RunResult {
  status: TerminalStatus;
  /** The `execution.result` JSON. */
  result: Record<string, unknown>;
  /** Runtime name the action ran with (`shell`, `python`, …). */
  runtime?: string;
  stdoutTruncated?: boolean;
  stderrTruncated?: boolean;
  /** Sealing the log artifacts, under way while the terminal row is written; awaited before the messages go out. Never rejects. */
  logsSealed?: Promise<void>;
}

export interface StatusPublisher {
  /** Queued durably in memory until the broker confirms; never throws. */
  statusChanged(p: StatusChange): void;
  completed(p: Completion): void;
}

/** An execution's log artifacts (db/log-artifacts.ts): what Attune's UI shows of its output. */
export interface LogArtifacts {
  /** The two log versions of a run (stdout, stderr), their files under artifacts_dir; rejects when they cannot be allocated. */
  allocate(input: Omit<AllocateInput, 'maxUnflushedBytes' | 'maxUnflushedMs'>): Promise<LogAllocation>;
  /** Seal them with what their files received. */
  seal(allocation: LogAllocation, ends: Record<'stdout' | 'stderr', StreamEnd>): Promise<void>;
}

export interface SecretValues {
  /** Store the encrypted secret outputs of an execution's result (execution_secret_value, `execution_result`). */
  storeResultSecrets(executionId: number, values: readonly PreparedSecretValue[]): Promise<void>;
}

export type Clock = () => Date;
