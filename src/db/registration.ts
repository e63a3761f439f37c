/**
 * The worker row (docs/attune-compat.md §3.2, §3.5): name-keyed upsert at start, `inactive` at stop.
 *
 * Attune does SELECT-then-UPDATE-or-INSERT; two replicas starting with the same name can both miss
 * the SELECT and one INSERT then fails on `name UNIQUE`. One INSERT … ON CONFLICT (name) DO UPDATE
 * has the same outcome (an existing row keeps worker_type, worker_role, runtime, meta and the cordon
 * columns; only status, last_heartbeat, host, port, capabilities, updated change) and cannot race.
 */
import type { WorkerRow } from '../model.ts';
import type { Queryable } from './pool.ts';
export { buildCapabilities, resolveWorkerName, parseRuntimeList } from './capabilities.ts';

export interface WorkerRegistration {
  name: string;
  workerType: 'local' | 'remote' | 'container';
  /** `worker.runtime` for a new row (NULL when null). */
  runtimeId: number | null;
  host: string;
  port: number | null;
  capabilities: Record<string, unknown>;
}

export interface RegisteredWorker extends WorkerRow {
  runtime: number | null;
  host: string | null;
  port: number | null;
  cordoned: boolean;
  cordon_reason: string | null;
  /** True when this call created the row; false when it re-activated an existing one. */
  inserted: boolean;
}

const WORKER_COLUMNS = 'id, name, worker_type, worker_role, runtime, host, port, status, capabilities, last_heartbeat, cordoned, cordon_reason';

export async function registerWorker(db: Queryable, w: WorkerRegistration): Promise<RegisteredWorker> {
  const { rows } = await db.query<RegisteredWorker>(
    `INSERT INTO worker (name, worker_type, worker_role, runtime, host, port, status, capabilities, last_heartbeat)
     VALUES ($1, $2, 'action', $3, $4, $5, 'active', $6::jsonb, now())
     ON CONFLICT (name) DO UPDATE
        SET status = 'active', last_heartbeat = now(), host = EXCLUDED.host, port = EXCLUDED.port,
            capabilities = EXCLUDED.capabilities, updated = now()
     RETURNING ${WORKER_COLUMNS}, (xmax = 0) AS inserted`,
    [w.name, w.workerType, w.runtimeId, w.host, w.port, JSON.stringify(w.capabilities)],
  );
  return rows[0];
}

/** docs/attune-compat.md §3.5: on stop. Call after the heartbeat has stopped, or a late beat flips it back. */
export async function deregisterWorker(db: Queryable, workerId: number): Promise<void> {
  await db.query(`UPDATE worker SET status = 'inactive', updated = now() WHERE id = $1`, [workerId]);
}
