/**
 * The runtime rows a `PackRegistered` names (its `runtime_names` are lower(runtime.name), as Attune
 * writes them), each with its live versions: what worker/pack-events.ts plans environments from.
 */
import type { RuntimeRow, RuntimeVersionRow } from '../model.ts';
import type { Queryable } from './pool.ts';
import { RUNTIME_COLUMNS, RUNTIME_VERSION_COLUMNS } from './executions.ts';

export async function loadRuntimesByName(db: Queryable, names: readonly string[]): Promise<Array<{ runtime: RuntimeRow; versions: RuntimeVersionRow[] }>> {
  if (names.length === 0) return [];
  const { rows } = await db.query<RuntimeRow>(
    `SELECT ${RUNTIME_COLUMNS.join(', ')} FROM runtime WHERE lower(name) = ANY($1::text[]) AND retired_at IS NULL ORDER BY id`,
    [names.map((n) => n.toLowerCase())],
  );
  const out: Array<{ runtime: RuntimeRow; versions: RuntimeVersionRow[] }> = [];
  for (const runtime of rows) {
    const v = await db.query<RuntimeVersionRow>(
      `SELECT ${RUNTIME_VERSION_COLUMNS.join(', ')} FROM runtime_version WHERE runtime = $1 AND retired_at IS NULL ORDER BY id`,
      [runtime.id],
    );
    out.push({ runtime, versions: v.rows });
  }
  return out;
}
