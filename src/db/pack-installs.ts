/**
 * The `pack_install` row of a pack test request (docs/attune-compat.md "Messages consumed"): read
 * to check the request is this worker's running attempt, and finished as `failed` the way Attune's
 * worker finishes an attempt whose tests could not run (status, error_message, finished_at,
 * updated_at; the candidate token hash cleared; test_execution_id and test_result kept), only while
 * it is still `running`. No pack_test_execution row: Attune writes one only for a suite that ran.
 */
import type { Queryable } from './pool.ts';

export interface PackInstallRow {
  id: number;
  pack_ref: string;
  pack_version: string;
  status: string;
  trigger_reason: string;
  assigned_worker_id: number | null;
}

export async function findPackInstall(db: Queryable, id: number): Promise<PackInstallRow | null> {
  const { rows } = await db.query<PackInstallRow>(
    'SELECT id, pack_ref, pack_version, status, trigger_reason, assigned_worker_id FROM pack_install WHERE id = $1',
    [id],
  );
  return rows[0] ?? null;
}

/** True when the row was still `running` and is now `failed`. */
export async function failRunningPackInstall(db: Queryable, id: number, errorMessage: string): Promise<boolean> {
  const { rowCount } = await db.query(
    `UPDATE pack_install
        SET status = 'failed', error_message = $2, candidate_access_token_hash = NULL,
            finished_at = COALESCE(finished_at, NOW()), updated_at = NOW()
      WHERE id = $1 AND status = 'running'`,
    [id, errorMessage],
  );
  return rowCount === 1;
}
