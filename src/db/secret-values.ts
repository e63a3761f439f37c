/**
 * `execution_secret_value` rows (docs/attune-compat.md §5.5, §5.9): the encrypted values behind the redaction
 * markers of `execution.config` (entity_type `execution_config`) and of the result the worker
 * writes (`execution_result`), keyed by (entity_type, entity_id, json_path).
 */
import { prepared, type Queryable } from './pool.ts';
import type { PreparedSecretValue, StoredSecretValue } from '../model.ts';

export const ENTITY_EXECUTION_CONFIG = 'execution_config';
export const ENTITY_EXECUTION_RESULT = 'execution_result';

export async function findStoredSecretValues(db: Queryable, entityType: string, entityId: number): Promise<StoredSecretValue[]> {
  const r = await db.query<StoredSecretValue>(prepared('find-secret-values',
    `SELECT json_path, encrypted_value, encryption_key_hash FROM execution_secret_value
      WHERE entity_type = $1 AND entity_id = $2 ORDER BY json_path`,
    [entityType, entityId],
  ));
  return r.rows;
}

export async function upsertSecretValues(db: Queryable, entityType: string, entityId: number, values: readonly PreparedSecretValue[]): Promise<void> {
  if (values.length === 0) return;
  await db.query(
    `INSERT INTO execution_secret_value (entity_type, entity_id, json_path, source_kind, source_ref, encrypted_value, encryption_key_hash)
     SELECT $1, $2, x.json_path, x.source_kind, x.source_ref, to_jsonb(x.encrypted_value), x.key_hash
       FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[]) AS x(json_path, source_kind, source_ref, encrypted_value, key_hash)
     ON CONFLICT (entity_type, entity_id, json_path) DO UPDATE SET
       source_kind = EXCLUDED.source_kind, source_ref = EXCLUDED.source_ref,
       encrypted_value = EXCLUDED.encrypted_value, encryption_key_hash = EXCLUDED.encryption_key_hash`,
    [entityType, entityId, values.map((v) => v.json_path), values.map((v) => v.source_kind), values.map((v) => v.source_ref),
      values.map((v) => v.encrypted_value), values.map((v) => v.encryption_key_hash)],
  );
}
