/**
 * The rows of a pack test request (docs/attune-compat.md "Pack tests"), written as Attune's
 * PackInstallRepository / PackTestRepository write them:
 * - `pack_install` read by id; finished with `finish_running`'s UPDATE (status, test_execution_id
 *   and test_result kept unless given, error_message set or cleared, the candidate token hash
 *   cleared, finished_at left NULL for `activating`), only while the row is still `running`.
 * - `pack_test_execution` inserted with the columns PackTestRepository::create writes.
 * - `pack` read by ref (its id: a test-run row is written only for the pack the install names).
 */
import type { Queryable } from './pool.ts';

export interface PackInstallRow {
  id: number;
  pack_ref: string;
  pack_version: string;
  status: string;
  trigger_reason: string;
  pack_id: number | null;
  assigned_worker_id: number | null;
  candidate_access_token_hash: string | null;
}

/** Attune's PackInstallStatus values the worker writes. */
export type FinishStatus = 'succeeded' | 'activating' | 'failed';

export async function findPackInstall(db: Queryable, id: number): Promise<PackInstallRow | null> {
  const { rows } = await db.query<PackInstallRow>(
    `SELECT id, pack_ref, pack_version, status, trigger_reason, pack_id, assigned_worker_id,
            candidate_access_token_hash
       FROM pack_install WHERE id = $1`,
    [id],
  );
  return rows[0] ?? null;
}

/** Attune's finish_running: true when the row was still `running` and now has `status`. */
export async function finishRunningPackInstall(
  db: Queryable,
  id: number,
  f: { status: FinishStatus; testExecutionId: number | null; testResult: unknown; errorMessage: string | null },
): Promise<boolean> {
  const { rowCount } = await db.query(
    `UPDATE pack_install
        SET status = $2,
            test_execution_id = COALESCE($3, test_execution_id),
            test_result = COALESCE($4::jsonb, test_result),
            error_message = $5,
            candidate_access_token_hash = NULL,
            finished_at = CASE WHEN $2 = 'activating' THEN NULL ELSE COALESCE(finished_at, NOW()) END,
            updated_at = NOW()
      WHERE id = $1 AND status = 'running'`,
    [id, f.status, f.testExecutionId, f.testResult === null || f.testResult === undefined ? null : JSON.stringify(f.testResult), f.errorMessage],
  );
  return rowCount === 1;
}

/** The id of the pack with this ref, or null. */
export async function findPackIdByRef(db: Queryable, ref: string): Promise<number | null> {
  const { rows } = await db.query<{ id: number }>('SELECT id FROM pack WHERE ref = $1', [ref]);
  return rows[0]?.id ?? null;
}

export interface PackTestExecutionInsert {
  packId: number;
  packVersion: string;
  triggerReason: string;
  /** The PackTestResult (its executionTime, counts, passRate, durationMs and the whole of it as `result`). */
  result: { executionTime: string; totalTests: number; passed: number; failed: number; skipped: number; passRate: number; durationMs: number };
}

/** PackTestRepository::create; returns the new row's id. */
export async function insertPackTestExecution(db: Queryable, r: PackTestExecutionInsert): Promise<number> {
  const { rows } = await db.query<{ id: number }>(
    `INSERT INTO pack_test_execution (
         pack_id, pack_version, execution_time, trigger_reason,
         total_tests, passed, failed, skipped, pass_rate, duration_ms, result)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb)
     RETURNING id`,
    [r.packId, r.packVersion, r.result.executionTime, r.triggerReason, r.result.totalTests, r.result.passed, r.result.failed,
      r.result.skipped, r.result.passRate, r.result.durationMs, JSON.stringify(r.result)],
  );
  return rows[0].id;
}
