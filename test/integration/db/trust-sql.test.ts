/**
 * SQL never depends on the session's client_encoding (real PostgreSQL): a session that starts in
 * SJIS with backslash_quote=on and standard_conforming_strings=off — where a multi-byte character
 * whose second byte is `\` once let crafted text break out of an escaped literal — is forced back
 * to UTF8 by the pool, and the hex-inlined text of the log-artifact allocation means the same bytes
 * even in a session left in SJIS.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { createTestDatabase, type TestDatabase } from '../../helpers/pg.ts';
import { createPool } from '../../../src/db/pool.ts';
import { allocateLogArtifacts, hexText } from '../../../src/db/log-artifacts.ts';

let db: TestDatabase;
before(async () => {
  db = await createTestDatabase('trust_sql');
});
after(async () => {
  await db?.drop();
});

// ソ is 0x83 0x5C in SJIS: its second byte is a backslash.
const CRAFTED = "enc.\u30bd' OR 1=1; DROP TABLE artifact; --\\'\u8868\\";
/** The same attack as an artifact ref can hold one (Attune's artifact_ref_path_safe forbids '/', ':' and '\\'): 表 is 0x95 0x5C in SJIS. */
const CRAFTED_REF = "enc.\u30bd' OR 1=1; DROP TABLE artifact; --\u8868'\u30bd";

test('a pool session that starts in SJIS + backslash_quote=on is UTF8 before its first query; a crafted ref stays data', async () => {
  const saved = process.env.PGOPTIONS;
  process.env.PGOPTIONS = '-c client_encoding=SJIS -c backslash_quote=on -c standard_conforming_strings=off';
  const pool = createPool(db.dbConfig({ maxConnections: 1 }));
  try {
    const ex = Number((await db.pool.query(`INSERT INTO execution (action_ref, status) VALUES ($1, 'running') RETURNING id`, [CRAFTED_REF])).rows[0].id);
    assert.equal((await pool.query('SHOW client_encoding')).rows[0].client_encoding, 'UTF8');
    assert.equal((await pool.query('SHOW backslash_quote')).rows[0].backslash_quote, 'on', 'the hostile setting is really in force');
    const a = await allocateLogArtifacts(pool, { executionId: ex, actionRef: CRAFTED_REF, retentionPolicy: 'days', retentionLimit: 7, maxUnflushedBytes: 65536, maxUnflushedMs: 500 });
    assert.equal(a.stdout.filePath, `${CRAFTED_REF.replaceAll('.', '/')}/stdout/log/v1.txt`);
    const refs = (await db.pool.query(`SELECT ref FROM artifact WHERE owner = $1 ORDER BY ref`, [CRAFTED_REF])).rows.map((r) => r.ref);
    assert.deepEqual(refs, [`${CRAFTED_REF}.stderr.log`, `${CRAFTED_REF}.stdout.log`]);
    assert.equal(Number((await db.pool.query('SELECT count(*) FROM artifact')).rows[0].count), 2, 'the artifact table is still there, with only these rows');
  } finally {
    if (saved === undefined) delete process.env.PGOPTIONS;
    else process.env.PGOPTIONS = saved;
    await pool.end();
  }
});

test('hexText means the same bytes in a session left in SJIS with backslash_quote=on and standard_conforming_strings=off', async () => {
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
    await client.query("SET client_encoding = 'SJIS'; SET backslash_quote = on; SET standard_conforming_strings = off");
    const r = await client.query(`SELECT encode(convert_to(${hexText(CRAFTED)}, 'UTF8'), 'hex') AS hex`);
    assert.equal(r.rows[0].hex, Buffer.from(CRAFTED, 'utf8').toString('hex'));
  } finally {
    await client.end();
  }
});
