import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { createTestDatabase, type TestDatabase } from '../../helpers/pg.ts';
import { createPool, verifyDatabase } from '../../../src/db/pool.ts';
import { buildCapabilities, deregisterWorker, registerWorker, type WorkerRegistration } from '../../../src/db/registration.ts';
import { registerDetectedRuntimes } from '../../../src/db/runtimes.ts';
import { recoverInterruptedExecutions } from '../../../src/db/recovery.ts';
import { loadConfig } from '../../../src/config/index.ts';
import type { DetectedRuntime } from '../../../src/detect/detect.ts';
import type { Logger } from '../../../src/observe/logger.ts';
import { AGENT_VERSION } from '../../../src/version.ts';
import { waitFor } from '../../helpers/wait.ts';

let db: TestDatabase;
before(async () => {
  db = await createTestDatabase('registration');
});
after(() => db?.drop());

const silent = { info() {}, warn() {}, error() {}, debug() {}, child() { return silent; } } as unknown as Logger;
const rt = (name: string, path: string, version: string | null): DetectedRuntime => ({ name, path, version, binary: path.split('/').pop()! });
const reg = (name: string, o: Partial<WorkerRegistration> = {}): WorkerRegistration => ({
  name, workerType: 'container', runtimeId: null, host: 'host-a', port: null, capabilities: { runtimes: ['native'] }, ...o,
});

test('every pooled connection gets the schema search_path and application_name; ids are numbers', async () => {
  await verifyDatabase(db.pool, 'attune');
  const clients = await Promise.all([db.pool.connect(), db.pool.connect(), db.pool.connect()]);
  try {
    for (const c of clients) {
      const r = await c.query(`SELECT current_setting('search_path') AS sp, current_setting('application_name') AS app, 9007199254740991::bigint AS big, ARRAY[1,2]::bigint[] AS arr`);
      assert.deepEqual(r.rows[0], { sp: 'attune, public', app: 'attune:attune', big: 9007199254740991, arr: [1, 2] });
    }
  } finally {
    for (const c of clients) c.release();
  }
});

test('registering twice updates the one row and leaves type, role, runtime, meta and cordon alone', async () => {
  const first = await registerWorker(db.pool, reg('twice', { port: 8000 }));
  assert.equal(first.inserted, true);
  assert.equal(typeof first.id, 'number');
  assert.equal(first.worker_role, 'action');
  assert.equal(first.worker_type, 'container');
  assert.equal(first.status, 'active');
  await db.pool.query(
    `UPDATE worker SET status = 'inactive', meta = '{"k":1}', cordoned = true, cordon_reason = 'maintenance', last_heartbeat = now() - interval '1 hour' WHERE id = $1`,
    [first.id],
  );
  const second = await registerWorker(db.pool, reg('twice', { workerType: 'local', host: 'host-b', port: null, capabilities: { runtimes: ['shell', 'native'] } }));
  assert.equal(second.inserted, false);
  assert.equal(second.id, first.id);
  const { rows } = await db.pool.query(`SELECT * FROM worker WHERE name = 'twice'`);
  assert.equal(rows.length, 1);
  const row = rows[0];
  assert.equal(row.status, 'active');
  assert.equal(row.host, 'host-b');
  assert.equal(row.port, null);
  assert.deepEqual(row.capabilities, { runtimes: ['shell', 'native'] });
  assert.equal(row.worker_type, 'container', 'worker_type untouched');
  assert.deepEqual(row.meta, { k: 1 }, 'meta untouched');
  assert.equal(row.cordoned, true, 'cordon untouched');
  assert.equal(second.cordoned, true);
  assert.equal(second.cordon_reason, 'maintenance');
  assert.ok(Date.now() - row.last_heartbeat.getTime() < 60_000, 'last_heartbeat refreshed');
  assert.ok(row.updated.getTime() > row.created.getTime() || row.updated.getTime() === row.created.getTime());

  await deregisterWorker(db.pool, first.id);
  assert.equal((await db.pool.query('SELECT status FROM worker WHERE id = $1', [first.id])).rows[0].status, 'inactive');
});

test('stored capabilities equal the capabilities fixture (docs/attune-compat.md §3.2), field by field', async () => {
  const fixture = JSON.parse(readFileSync(new URL('../../fixtures/capabilities.json', import.meta.url), 'utf8'), (_k, v) => (v === '<AGENT_VERSION>' ? AGENT_VERSION : v));
  delete fixture._comment;
  const config = loadConfig({ env: {}, cwd: '/nonexistent-attune-test', flags: {}, implicitFiles: false });
  const env = { ATTUNE_AGENT_MODE: 'true', ATTUNE_AGENT_BINARY_NAME: 'attune-agent', ATTUNE_AGENT_BINARY_VERSION: AGENT_VERSION, ATTUNE_WORKER_RUNTIMES: 'shell,python' };
  const detected = [rt('shell', '/bin/bash', '5.2.15'), rt('python', '/usr/local/bin/python3', '3.12.1')];
  const w = await registerWorker(db.pool, reg('fixture', { capabilities: buildCapabilities(config, { detected, workerVersion: AGENT_VERSION }, env) }));
  const stored = (await db.pool.query('SELECT capabilities FROM worker WHERE id = $1', [w.id])).rows[0].capabilities;
  for (const key of Object.keys(fixture)) assert.deepEqual(stored[key], fixture[key], `capabilities.${key}`);
  assert.deepEqual(Object.keys(stored).sort(), Object.keys(fixture).sort());
});

test('replicas racing on one name end with one row and the same id', async () => {
  const other = createPool(db.dbConfig());
  try {
    for (let i = 0; i < 8; i++) {
      const name = `race-${i}`;
      const [a, b] = await Promise.all([registerWorker(db.pool, reg(name, { host: 'a' })), registerWorker(other, reg(name, { host: 'b' }))]);
      assert.equal(a.id, b.id);
      assert.equal([a.inserted, b.inserted].filter(Boolean).length, 1, 'exactly one inserted');
      assert.equal((await db.pool.query('SELECT count(*)::int AS n FROM worker WHERE name = $1', [name])).rows[0].n, 1);
    }
  } finally {
    await other.end();
  }
});

test('auto-registration: existing rows matched, retired core template cloned, others minimal, races harmless', async () => {
  await db.pool.query(`INSERT INTO pack (ref, label, version) VALUES ('core', 'Core', '1.0.0')`);
  await db.pool.query(
    `INSERT INTO runtime (ref, pack, pack_ref, name, aliases, distributions, execution_config)
     VALUES ('core.python', (SELECT id FROM pack WHERE ref = 'core'), 'core', 'Python', ARRAY['python','python3'], '{}',
             '{"interpreter":{"binary":"python3","args":["-u"],"file_extension":".py"}}'),
            ('mypack.shell', NULL, NULL, 'Shell', ARRAY[]::text[], '{}', '{}')`,
  );
  await db.pool.query(
    `INSERT INTO runtime (ref, pack, pack_ref, name, description, aliases, distributions, installation, execution_config, retired_at)
     VALUES ('core.ruby', (SELECT id FROM pack WHERE ref = 'core'), 'core', 'Ruby', 'Ruby from core', ARRAY['ruby','rb'],
             '{"verification":{"commands":[{"binary":"ruby","args":["-v"]}]}}', '{"apt":["ruby"]}',
             '{"interpreter":{"binary":"ruby","args":[],"file_extension":".rb"},"environment":{"env_type":"none","interpreter_path":"/usr/bin/ruby"}}',
             now())`,
  );
  const detected = [rt('shell', '/bin/bash', '5.2'), rt('python', '/usr/bin/python3', '3.11.2'), rt('ruby', '/opt/ruby/bin/ruby', '3.3.0'), rt('perl', '/usr/bin/perl', null), rt('node', '/usr/local/bin/node', '22.1.0')];
  const results = await registerDetectedRuntimes(db.pool, detected, silent);
  assert.deepEqual(results.map((r) => [r.name, r.outcome, r.ref]), [
    ['shell', 'present', 'mypack.shell'],
    ['python', 'present', 'core.python'],
    ['ruby', 'cloned', 'auto.ruby'],
    ['perl', 'created', 'auto.perl'],
    ['node', 'created', 'auto.node'],
  ]);
  const rows = new Map((await db.pool.query(`SELECT * FROM runtime WHERE ref LIKE 'auto.%'`)).rows.map((r) => [r.ref, r]));
  const ruby = rows.get('auto.ruby');
  assert.equal(ruby.pack_ref, 'core');
  assert.equal(ruby.name, 'Ruby');
  assert.deepEqual(ruby.aliases, ['ruby', 'rb']);
  assert.deepEqual(ruby.installation, { apt: ['ruby'] });
  assert.deepEqual(ruby.execution_config, { interpreter: { binary: '/opt/ruby/bin/ruby', args: [], file_extension: '.rb' }, environment: { env_type: 'none', interpreter_path: '/opt/ruby/bin/ruby' } });
  assert.equal(ruby.auto_detected, true);
  assert.deepEqual(ruby.detection_config, { detected_path: '/opt/ruby/bin/ruby', detected_name: 'ruby', detected_version: '3.3.0' });
  const perl = rows.get('auto.perl');
  assert.equal(perl.pack, null);
  assert.equal(perl.name, 'Perl');
  assert.deepEqual(perl.aliases, ['perl', 'perl5']);
  assert.deepEqual(perl.execution_config, { interpreter: { binary: '/usr/bin/perl', args: [], file_extension: '.pl' } });
  assert.deepEqual(perl.distributions, { verification: { commands: [{ binary: '/usr/bin/perl', args: ['--version'], exit_code: 0, priority: 1 }] } });
  assert.deepEqual(perl.detection_config, { detected_path: '/usr/bin/perl', detected_name: 'perl' });
  assert.deepEqual(rows.get('auto.node').aliases, ['node', 'nodejs', 'node.js']);

  // Second start: everything present. Two replicas at once with a new runtime: one row, no failure.
  const again = await registerDetectedRuntimes(db.pool, detected, silent);
  assert.ok(again.every((r) => r.outcome === 'present'), JSON.stringify(again));
  const other = createPool(db.dbConfig());
  try {
    const go = [rt('go', '/usr/local/go/bin/go', '1.22.1')];
    const [a, b] = await Promise.all([registerDetectedRuntimes(db.pool, go, silent), registerDetectedRuntimes(other, go, silent)]);
    const outcomes = [a[0].outcome, b[0].outcome].sort();
    assert.equal(outcomes.filter((o) => o === 'created').length, 1, outcomes.join());
    assert.ok(outcomes.every((o) => o === 'created' || o === 'exists' || o === 'present'), outcomes.join());
    assert.equal((await db.pool.query(`SELECT count(*)::int AS n FROM runtime WHERE ref = 'auto.go'`)).rows[0].n, 1);
  } finally {
    await other.end();
  }
});

test('auto-registration failures are reported, not thrown', async () => {
  const broken = createPool(db.dbConfig({ schema: 'no_such_schema' }));
  try {
    const warnings: string[] = [];
    const log = { ...silent, warn: (_o: unknown, m: string) => warnings.push(m) } as unknown as Logger;
    const r = await registerDetectedRuntimes(broken, [rt('shell', '/bin/sh', null)], log);
    assert.equal(r[0].outcome, 'failed');
    assert.match(r[0].detail!, /relation "runtime" does not exist/);
    assert.equal(warnings.length, 1);
  } finally {
    await broken.end();
  }
});

test('recovery finishes only this worker\'s running/canceling executions and says why', async () => {
  const me = await registerWorker(db.pool, reg('recovering'));
  const other = await registerWorker(db.pool, reg('someone-else'));
  const ins = async (worker: number, status: string) =>
    (await db.pool.query(`INSERT INTO execution (action_ref, worker, status) VALUES ('core.echo', $1, $2) RETURNING id`, [worker, status])).rows[0].id as number;
  const running = await ins(me.id, 'running');
  const canceling = await ins(me.id, 'canceling');
  const scheduled = await ins(me.id, 'scheduled');
  const done = await ins(me.id, 'completed');
  const othersRunning = await ins(other.id, 'running');

  const listener = new pg.Client({ connectionString: db.url });
  await listener.connect();
  const notes: { id: number; status: string; old_status: string }[] = [];
  listener.on('notification', (n) => notes.push(JSON.parse(n.payload!)));
  await listener.query('LISTEN execution_status_changed');
  try {
    const recovered = await recoverInterruptedExecutions(db.pool, me);
    assert.deepEqual(recovered.map((r) => [r.id, r.previous_status, r.status, r.action_ref]), [
      [running, 'running', 'failed', 'core.echo'],
      [canceling, 'canceling', 'cancelled', 'core.echo'],
    ]);
    assert.equal(recovered[0].result.succeeded, false);
    assert.match(String(recovered[0].result.error), /attune-agent restarted while this execution was running \(worker recovering, id \d+\).*outcome is unknown/);
    assert.equal(recovered[1].result.cancelled, true);
    const statuses = new Map((await db.pool.query('SELECT id, status FROM execution')).rows.map((r) => [r.id, r.status]));
    assert.equal(statuses.get(scheduled), 'scheduled');
    assert.equal(statuses.get(done), 'completed');
    assert.equal(statuses.get(othersRunning), 'running');
    assert.deepEqual(await recoverInterruptedExecutions(db.pool, me), [], 'nothing left the second time');
    // The notifier's real-time path fires for each change (AFTER UPDATE trigger).
    const seen = await waitFor('two execution_status_changed notifications', () => notes.length >= 2 && notes);
    assert.deepEqual(seen.map((n) => [n.id, n.old_status, n.status]).sort(), [[running, 'running', 'failed'], [canceling, 'canceling', 'cancelled']].sort());
  } finally {
    await listener.end();
  }
});

test('recovery leaves executions whose result waits in the result spool to the replay', async () => {
  const me = await registerWorker(db.pool, reg('recovering-with-spool'));
  const ins = async () => (await db.pool.query(`INSERT INTO execution (action_ref, worker, status) VALUES ('core.echo', $1, 'running') RETURNING id`, [me.id])).rows[0].id as number;
  const spooled = await ins();
  const lost = await ins();
  const recovered = await recoverInterruptedExecutions(db.pool, me, [spooled]);
  assert.deepEqual(recovered.map((r) => r.id), [lost]);
  const status = async (id: number) => (await db.pool.query('SELECT status::text AS s FROM execution WHERE id = $1', [id])).rows[0].s;
  assert.equal(await status(spooled), 'running', 'kept for the spool replay');
  assert.equal(await status(lost), 'failed');
});
