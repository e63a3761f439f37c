/**
 * Reads and a claim the agent itself no longer makes, kept for the tests (as oracles: the claim's
 * one statement must answer what these separate reads answer) and for the benchmark's floor worker
 * (the bare `running` claim, without the reads along).
 */
import type { ActionRow, DispatchRelease, ExecutionStatus } from '../../src/model.ts';
import { ACTION_COLUMNS, CLAIMABLE_STATUSES, EXECUTION_COLUMNS, type ExecutionRecord } from '../../src/db/executions.ts';
import type { Queryable } from '../../src/db/pool.ts';

/** By id when given (whatever its state), else — or when that id is gone — by ref. */
export async function loadAction(db: Queryable, key: { id: number | null; ref: string }): Promise<ActionRow | null> {
  if (key.id !== null) {
    const byId = (await db.query<ActionRow>(`SELECT ${ACTION_COLUMNS.join(', ')} FROM action WHERE id = $1`, [key.id])).rows[0];
    if (byId) return byId;
  }
  const { rows } = await db.query<ActionRow>(`SELECT ${ACTION_COLUMNS.join(', ')} FROM action WHERE ref = $1`, [key.ref]);
  return rows[0] ?? null;
}

export async function currentStatus(db: Queryable, id: number): Promise<ExecutionStatus | null> {
  const { rows } = await db.query<{ status: ExecutionStatus }>('SELECT status FROM execution WHERE id = $1', [id]);
  return rows[0]?.status ?? null;
}

/** The bare `running` claim (the floor worker's): the row under its lock, moved to `running` when claimable and the release matches. */
export async function claimExecution(db: Queryable, id: number, release: DispatchRelease): Promise<{ execution: ExecutionRecord; claimed: boolean } | null> {
  const { rows } = await db.query<ExecutionRecord & { claimed: boolean }>(
    `WITH prev AS (SELECT ${EXECUTION_COLUMNS.join(', ')} FROM execution WHERE id = $1 FOR UPDATE),
          upd AS (UPDATE execution e SET status = 'running', started_at = now(), updated = now()
                    FROM prev WHERE e.id = prev.id AND prev.status = ANY($2::execution_status_enum[])
                     AND ($3::bigint IS NULL OR prev.pack_release IS NULL OR prev.pack_release = $3)
                     AND ($4::text IS NULL OR prev.pack_release_digest IS NULL OR prev.pack_release_digest = '' OR prev.pack_release_digest = $4)
                  RETURNING e.id)
     SELECT prev.*, EXISTS (SELECT 1 FROM upd) AS claimed FROM prev`,
    [id, CLAIMABLE_STATUSES, release.releaseId, release.releaseDigest === '' ? null : release.releaseDigest],
  );
  const r = rows[0];
  if (!r) return null;
  const { claimed, ...execution } = r;
  return { execution, claimed };
}
