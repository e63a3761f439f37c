/** Secret-backed parameters restored before the run, secret outputs stored encrypted (real PostgreSQL, real shell). */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import pino from 'pino';
import { createTestDatabase, type TestDatabase } from '../../helpers/pg.ts';
import { pgSecretValues } from '../../../src/db/execution-store.ts';
import { ENTITY_EXECUTION_CONFIG, findStoredSecretValues } from '../../../src/db/secret-values.ts';
import { decryptJson, encryptJson, hashEncryptionKey, redactionMarker } from '../../../src/execution/secrets.ts';
import { REDACTED_TEXT } from '../../../src/execution/secret-scrub.ts';
import * as h from '../../helpers/execution.ts';

const KEY = 'integration-test-encryption-key-0123456789';
let db: TestDatabase;
let artifactsDir: string;
before(async () => {
  db = await createTestDatabase('secret_values');
  artifactsDir = h.tempDir('secret-artifacts');
});
after(async () => {
  await db?.drop();
  rmSync(artifactsDir, { recursive: true, force: true });
});

const log = pino({ level: 'silent' });
const OUT_SCHEMA = { user: { type: 'string' }, token: { type: 'string', secret: true } };

async function execution(config: Record<string, unknown>): Promise<number> {
  return Number((await db.pool.query(`INSERT INTO execution (action_ref, status, config) VALUES ('testpack.echo', 'running', $1) RETURNING id`, [config])).rows[0].id);
}

async function storeParam(id: number, path: string, value: unknown, key = KEY): Promise<void> {
  await db.pool.query(
    `INSERT INTO execution_secret_value (entity_type, entity_id, json_path, source_kind, source_ref, encrypted_value, encryption_key_hash)
     VALUES ('execution_config', $1, $2, 'keystore', 'core.pw', to_jsonb($3::text), $4)`,
    [id, path, encryptJson(value, key), hashEncryptionKey(key)],
  );
}

async function run(id: number, config: Record<string, unknown>, encryptionKey: string) {
  // What the claim reads along with the row.
  const secrets = await findStoredSecretValues(db.pool, ENTITY_EXECUTION_CONFIG, id);
  return h.run({
    execution: h.execution({ id, config }),
    action: h.action('echo_params.sh', { ref: 'testpack.echo', output_format: 'json', out_schema: OUT_SCHEMA }), runtime: h.runtime('shell'),
    config: h.config({ artifactsDir, encryptionKey }), detected: h.detected(), baselineEnv: h.baseline(),
    secrets, secretValues: pgSecretValues(db.pool), logger: log,
  });
}

test('a secret-backed parameter reaches the action decrypted; a secret output is stored encrypted, never in clear', async () => {
  const config = { user: 'ada', password: redactionMarker(), token: 'tok-123' };
  const id = await execution(config);
  await storeParam(id, '/password', 'pw-secret');
  const out = await run(id, config, KEY);
  assert.equal(out.status, 'completed', JSON.stringify(out.result));
  const data = out.result.data as Record<string, unknown>;
  // The action echoed the decrypted parameter back; a secret never reaches the result in clear
  // (test/integration/secret-scrub.test.ts proves the action got the clear value).
  assert.equal(data.password, REDACTED_TEXT);
  assert.equal(data.user, 'ada');
  assert.deepEqual(data.token, redactionMarker(), 'the out_schema secret is a marker in the result');
  const rows = (await db.pool.query(`SELECT json_path, source_kind, encrypted_value, encryption_key_hash FROM execution_secret_value WHERE entity_type = 'execution_result' AND entity_id = $1`, [id])).rows;
  assert.equal(rows.length, 1);
  assert.equal(rows[0].json_path, '/data/token');
  assert.equal(rows[0].encryption_key_hash, hashEncryptionKey(KEY));
  assert.equal(decryptJson(rows[0].encrypted_value, KEY), 'tok-123');
  const resultJson = readFileSync(`${artifactsDir}/execution_${id}/result.json`, 'utf8');
  assert.ok(!resultJson.includes('tok-123'), 'result.json holds the marker only');
});

test('without the encryption key: secret parameters fail the run before it starts, with a clear error', async () => {
  const config = { user: 'ada', password: redactionMarker() };
  const id = await execution(config);
  await storeParam(id, '/password', 'pw-secret');
  const out = await run(id, config, '');
  assert.equal(out.status, 'failed');
  assert.equal(out.result.error, `Failed to prepare execution context: Failed to restore secret parameters for execution ${id}: No encryption key configured (set security.encryption_key / ATTUNE__SECURITY__ENCRYPTION_KEY to the key of the Attune API)`);
  assert.equal(out.result.exit_code, undefined, 'nothing ran');
});

test('a key that did not encrypt the values is refused by its hash', async () => {
  const config = { password: redactionMarker() };
  const id = await execution(config);
  await storeParam(id, '/password', 'pw', 'another-key-of-at-least-thirty-two-chars!');
  const out = await run(id, config, KEY);
  assert.equal(out.status, 'failed');
  assert.match(String(out.result.error), /Encryption key hash mismatch for secret path '\/password'/);
});

test('without the key, a secret output is not written in clear: the run fails and keeps the marker', async () => {
  const config = { user: 'ada', token: 'tok-456' };
  const id = await execution(config);
  const out = await run(id, config, '');
  assert.equal(out.status, 'failed');
  assert.match(String(out.result.error), /Failed to store the secret outputs \(\/data\/token\) of action testpack\.echo: No encryption key configured/);
  assert.ok(!JSON.stringify(out.result).includes('tok-456'));
});
