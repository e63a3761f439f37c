/**
 * Start-up recovery of executions a previous incarnation of this worker (same worker row) left
 * in flight: their processes died with it, so the rows would otherwise stay `running` until
 * Attune's supervisor remediates them hours later. `running` → `failed`; `canceling` (a cancel
 * was being delivered) → `cancelled`. The caller publishes the status/completion messages.
 *
 * Caveat: two live agents sharing one worker name is a misconfiguration Attune does not support
 * (they share queues too); the second one's start-up would fail the first one's running actions.
 */
import type { ExecutionStatus, TerminalStatus } from '../model.ts';
import type { Queryable } from './pool.ts';

export interface RecoveredExecution {
  id: number;
  action: number | null;
  action_ref: string;
  previous_status: ExecutionStatus;
  status: Extract<TerminalStatus, 'failed' | 'cancelled'>;
  result: Record<string, unknown>;
}

export function recoveryMessage(worker: { id: number; name: string }, cancelling: boolean): string {
  return cancelling
    ? `attune-agent restarted while this execution was being cancelled (worker ${worker.name}, id ${worker.id}); its process did not survive the restart.`
    : `attune-agent restarted while this execution was running (worker ${worker.name}, id ${worker.id}); the action's outcome is unknown. Re-run the execution if it is safe.`;
}

/** `keep`: executions whose result waits in the result spool (worker/result-spool.ts): the replay writes those. */
export async function recoverInterruptedExecutions(db: Queryable, worker: { id: number; name: string }, keep: readonly number[] = []): Promise<RecoveredExecution[]> {
  const failed = { succeeded: false, error: recoveryMessage(worker, false) };
  const cancelled = { succeeded: false, cancelled: true, error: recoveryMessage(worker, true) };
  const { rows } = await db.query<RecoveredExecution>(
    `WITH stale AS (
       SELECT id, status FROM execution
        WHERE worker = $1 AND status IN ('running', 'canceling') AND NOT (id = ANY($4::bigint[]))
        FOR UPDATE
     )
     UPDATE execution e
        SET status = CASE WHEN stale.status = 'canceling' THEN 'cancelled'::execution_status_enum
                          ELSE 'failed'::execution_status_enum END,
            result = CASE WHEN stale.status = 'canceling' THEN $3::jsonb ELSE $2::jsonb END,
            updated = now()
       FROM stale
      WHERE e.id = stale.id
      RETURNING e.id, e.action, e.action_ref, stale.status AS previous_status, e.status, e.result`,
    [worker.id, JSON.stringify(failed), JSON.stringify(cancelled), keep],
  );
  return rows.sort((a, b) => a.id - b.id);
}
