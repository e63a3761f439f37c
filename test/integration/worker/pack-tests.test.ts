/**
 * Pack tests against a real RabbitMQ and PostgreSQL with real processes (docs/attune-compat.md
 * "Pack tests"): a PackTestRequested published as Attune's executor publishes it runs the suite of
 * a fixture pack (test/fixtures/pack-tests) and finishes its pack_install with Attune's statuses,
 * messages and columns; pack_test_execution rows have Attune's shape (camelCase result JSON).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ChannelModel } from 'amqplib';
import { MqConnection } from '../../../src/mq/connection.ts';
import { workerTopologySetup } from '../../../src/mq/topology.ts';
import { createPackTestsConsumer } from '../../../src/mq/worker-consumers.ts';
import { PackTests, hashIntegrationToken } from '../../../src/worker/pack-tests.ts';
import * as installs from '../../../src/db/pack-installs.ts';
import { loadRuntimeByRef } from '../../../src/db/pack-runtimes.ts';
import { RuntimeEnvironments } from '../../../src/execution/environments.ts';
import type { DetectedInterpreter } from '../../../src/execution/plan.ts';
import { AMQP_URL, attuneEnvelope, captureLogger, connectTest, deleteWorkerQueues, publishLikeAttune, queueDepth, randomWorkerId } from '../../helpers/amqp.ts';
import { createTestDatabase, type TestDatabase } from '../../helpers/pg.ts';
import { waitFor } from '../../helpers/wait.ts';
import * as h from '../../helpers/execution.ts';
import { CORE_RUNTIMES } from '../../fixtures/catalog/core-runtimes.ts';
import { makeWheel } from '../../fixtures/environments/dep-pack.ts';

const FIXTURES = join(import.meta.dirname, '../../fixtures/pack-tests');
const PY_CONFIG = CORE_RUNTIMES.find((r) => r.ref === 'core.python')!.execution_config;

let model: ChannelModel;
let db: TestDatabase;
const cleanups: Array<() => Promise<void>> = [];

/** The image's python must never receive a pack's dependency (it goes into the pack's environment only). */
function assertImagePythonUntouched(): void {
  assert.notEqual(spawnSync('python3', ['-c', 'import attune_fixture_dep'], { stdio: 'ignore' }).status, 0, 'attune_fixture_dep was installed into the image\'s python');
}

before(async () => {
  model = await connectTest('pack-tests-test');
  db = await createTestDatabase('pack_tests');
  await db.pool.query(
    `INSERT INTO runtime (ref, name, aliases, distributions, execution_config) VALUES ('core.python', 'Python', ARRAY['python','python3'], '{}', $1)`,
    [JSON.stringify(PY_CONFIG)],
  );
});
after(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await db?.drop();
  await model?.close();
});

interface AgentOpts { detected?: DetectedInterpreter[]; baselineEnv?: Record<string, string> }

/** An agent's pack tests consumer on its own connection, with the fixture packs in its packs dir. */
async function agent(o: AgentOpts = {}) {
  const workerId = randomWorkerId();
  const root = h.tempDir('pack-tests');
  const packs = join(root, 'packs');
  const envs = join(root, 'runtime_envs');
  cpSync(FIXTURES, packs, { recursive: true });
  const log = captureLogger('info');
  const conn = new MqConnection({ url: AMQP_URL, logger: log.logger, connectionName: `pack-tests-${workerId}` });
  conn.addSetup(workerTopologySetup(workerId, log.logger, { includePackQueues: true }));
  await conn.start();
  const baselineEnv = o.baselineEnv ?? { PATH: process.env.PATH ?? '/usr/bin:/bin' };
  const config = { ...h.config(), packsBaseDir: packs, runtimeEnvsDir: envs };
  const environments = new RuntimeEnvironments({ setupTimeoutMs: 300_000, baselineEnv });
  const tests = new PackTests({
    workerId, config, detected: o.detected ?? h.detected(), baselineEnv, verifiedReleases: new Set(), environments, log: log.logger,
    db: {
      findInstall: (id) => installs.findPackInstall(db.pool, id),
      finishRunning: (id, f) => installs.finishRunningPackInstall(db.pool, id, f),
      findPackIdByRef: (ref) => installs.findPackIdByRef(db.pool, ref),
      insertTestExecution: (r) => installs.insertPackTestExecution(db.pool, r),
      loadRuntimeByRef: (ref) => loadRuntimeByRef(db.pool, ref),
    },
  });
  const consumer = createPackTestsConsumer(conn, workerId, (env, d) => tests.onMessage(env, d), log.logger);
  await consumer.start();
  cleanups.push(async () => {
    tests.stop();
    await consumer.close();
    await conn.close();
    await deleteWorkerQueues(model, workerId);
    rmSync(root, { recursive: true, force: true });
  });

  /** A pack row (ON CONFLICT: the packs are shared by the tests of this file); its id. */
  const pack = async (ref: string) => (await db.pool.query<{ id: number }>(
    `INSERT INTO pack (ref, label, version) VALUES ($1, $1, '1.0.0') ON CONFLICT (ref) DO UPDATE SET label = EXCLUDED.label RETURNING id`, [ref])).rows[0].id;
  /** A pack_install attempt as Attune's executor leaves it once claimed for this worker. */
  const install = async (ref: string, version: string, trigger: string, over: { status?: string; worker?: number | null; packId?: number | null; hash?: string | null } = {}) =>
    (await db.pool.query<{ id: number }>(
      `INSERT INTO pack_install (pack_ref, pack_version, status, trigger_reason, pack_id, assigned_worker_id, candidate_access_token_hash)
       VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id`,
      [ref, version, over.status ?? 'running', trigger, over.packId === undefined ? await pack(ref) : over.packId,
        over.worker === undefined ? workerId : over.worker, over.hash ?? null])).rows[0].id;
  let published = 0;
  /** Publish a PackTestRequested as Attune's executor does. */
  const publish = async (payload: Record<string, unknown>) => {
    const { body, messageId } = attuneEnvelope('PackTestRequested', {
      candidate_path: null, required_runtimes: [], worker_selector: {}, worker_tolerations: [], worker_affinity: {}, ...payload,
    }, 'executor');
    await publishLikeAttune(model, 'attune.executions', `pack.test.dispatch.worker.${workerId}`, body, messageId);
  };
  /** …and wait until it is settled. */
  const request = async (payload: Record<string, unknown>) => {
    await publish(payload);
    published++;
    const s = consumer.stats;
    await waitFor(`pack test request ${published} to be settled`, () => s.acked + s.dropped + s.requeued >= published, { timeoutMs: 240_000 });
  };
  return { workerId, root, packs, envs, log, consumer, tests, pack, install, request, publish };
}

async function installRow(id: number) {
  return (await db.pool.query(
    `SELECT status, error_message, finished_at, candidate_access_token_hash, test_execution_id, test_result, updated_at, started_at
       FROM pack_install WHERE id = $1`, [id])).rows[0];
}

async function testRow(id: number) {
  return (await db.pool.query('SELECT * FROM pack_test_execution WHERE id = $1', [id])).rows[0];
}

test('a passing script suite: the install is activating (trigger install), a pack_test_execution row in Attune\'s shape, the snapshot on the install', async () => {
  const a = await agent();
  const id = await a.install('passing', '1.0.0', 'install');
  await a.request({ pack_install_id: id, pack_ref: 'passing', pack_version: '1.0.0', trigger_reason: 'install' });

  const row = await installRow(id);
  assert.equal(row.status, 'activating', JSON.stringify(row));
  assert.equal(row.error_message, null);
  assert.equal(row.finished_at, null, 'activating: not finished (the API activates the pack)');
  assert.ok(row.test_execution_id > 0);
  const t = await testRow(row.test_execution_id);
  assert.equal(t.pack_id, await a.pack('passing'));
  assert.deepEqual([t.pack_version, t.trigger_reason, t.total_tests, t.passed, t.failed, t.skipped, t.pass_rate], ['1.0.0', 'install', 3, 3, 0, 0, 1]);
  assert.equal(typeof t.duration_ms, 'number');
  assert.ok(t.duration_ms >= 0);
  // result: Attune's PackTestResult, camelCase
  const r = t.result;
  assert.deepEqual(Object.keys(r).sort(), ['durationMs', 'executionTime', 'failed', 'packRef', 'packVersion', 'passRate', 'passed', 'skipped', 'status', 'testSuites', 'totalTests']);
  assert.equal(new Date(r.executionTime).getTime(), t.execution_time.getTime(), 'execution_time is the result\'s');
  assert.deepEqual([r.packRef, r.packVersion, r.status, r.totalTests, r.passed, r.passRate, r.durationMs], ['passing', '1.0.0', 'passed', 3, 3, 1, Number(t.duration_ms)]);
  assert.equal(r.testSuites.length, 1);
  const suite = r.testSuites[0];
  assert.deepEqual([suite.name, suite.runnerType, suite.total, suite.passed, suite.failed, suite.skipped], ['shell', 'script', 3, 3, 0, 0]);
  assert.deepEqual(Object.keys(suite.testCases[0]).sort(), ['durationMs', 'errorMessage', 'name', 'status', 'stderr', 'stdout']);
  assert.deepEqual([suite.testCases[0].name, suite.testCases[0].status, suite.testCases[0].errorMessage], ['shell_suite', 'passed', null]);
  assert.match(suite.testCases[0].stdout, new RegExp(`running in ${a.packs}/passing with HOME=${a.packs}/passing`));
  assert.equal(suite.testCases[0].stderr, 'warnings go to stderr\n');
  assert.deepEqual(row.test_result, r, 'the install keeps the same snapshot');
  assert.equal(await queueDepth(model, `worker.${a.workerId}.packtests`), 0);

  // trigger manual → succeeded (finished)
  const manual = await a.install('passing', '1.0.0', 'manual');
  await a.request({ pack_install_id: manual, pack_ref: 'passing', pack_version: '1.0.0', trigger_reason: 'manual' });
  const m = await installRow(manual);
  assert.equal(m.status, 'succeeded');
  assert.ok(m.finished_at instanceof Date);
});

test('a suite below min_pass_rate: failed with Attune\'s message, the row and snapshot written; no pack row (pack_id NULL) → no test row', async () => {
  const a = await agent();
  const id = await a.install('belowrate', '2.0.0', 'update');
  await a.request({ pack_install_id: id, pack_ref: 'belowrate', pack_version: '2.0.0', trigger_reason: 'update' });
  const row = await installRow(id);
  assert.equal(row.status, 'failed');
  assert.equal(row.error_message, 'Pack tests did not pass (2/4 passed)');
  assert.ok(row.finished_at instanceof Date);
  const t = await testRow(row.test_execution_id);
  assert.deepEqual([t.total_tests, t.passed, t.failed, t.skipped, t.pass_rate, t.trigger_reason], [4, 2, 2, 0, 0.5, 'update']);
  assert.equal(t.result.status, 'failed');
  assert.deepEqual([t.result.testSuites[0].testCases[0].status, t.result.testSuites[0].testCases[0].errorMessage], ['failed', 'Exit code: 1']);

  const orphan = await a.install('belowrate', '2.0.0', 'install', { packId: null });
  await a.request({ pack_install_id: orphan, pack_ref: 'belowrate', pack_version: '2.0.0', trigger_reason: 'install' });
  const o = await installRow(orphan);
  assert.equal(o.status, 'failed');
  assert.equal(o.test_execution_id, null, 'no pack_test_execution row without the install\'s pack');
  assert.equal(o.test_result.totalTests, 4, 'the snapshot is still kept');
});

test('a python unittest suite imports the pack\'s dependency from its venv (local wheel, offline)', async () => {
  const a = await agent();
  writeFileSync(join(a.packs, 'pyunit', 'requirements.txt'), `${makeWheel(a.root, '1.0.0', 'from-venv')}\n`);
  const id = await a.install('pyunit', '1.1.0', 'manual');
  await a.request({ pack_install_id: id, pack_ref: 'pyunit', pack_version: '1.1.0', trigger_reason: 'manual' });
  const row = await installRow(id);
  assert.equal(row.status, 'succeeded', JSON.stringify(row.test_result ?? row.error_message));
  const suite = row.test_result.testSuites[0];
  assert.deepEqual([suite.runnerType, suite.total, suite.passed, suite.failed], ['unittest', 1, 1, 0], 'unittest prints no counts: one case from the exit code');
  assert.match(suite.testCases[0].stderr, /Ran 2 tests/);
  assert.match(suite.testCases[0].stdout, new RegExp(`PREFIX=${a.envs}/pyunit/python`));
  assert.ok(existsSync(join(a.envs, 'pyunit', 'python', '.attune_deps_installed')), 'the pack\'s environment an execution uses');
  assertImagePythonUntouched();
});

test('testing disabled or absent → succeeded without a row; pack.yaml missing → failed; stale, misrouted and mismatched requests', async () => {
  const a = await agent();
  const before = Number((await db.pool.query('SELECT count(*) FROM pack_test_execution')).rows[0].count);
  const disabled = await a.install('disabled', '1.0.0', 'manual');
  const absent = await a.install('notesting', '1.0.0', 'install');
  const noyaml = await a.install('noyaml', '1.0.0', 'install');
  const finished = await a.install('passing', '1.0.0', 'install', { status: 'succeeded' });
  const other = await a.install('passing', '1.0.0', 'install', { worker: a.workerId + 1 });
  const mismatch = await a.install('passing', '1.0.0', 'install');
  const mode = await a.install('passing', '1.0.0', 'install', { hash: hashIntegrationToken('secret') });
  await a.request({ pack_install_id: disabled, pack_ref: 'disabled', pack_version: '1.0.0', trigger_reason: 'manual' });
  await a.request({ pack_install_id: absent, pack_ref: 'notesting', pack_version: '1.0.0', trigger_reason: 'install' });
  await a.request({ pack_install_id: noyaml, pack_ref: 'noyaml', pack_version: '1.0.0', trigger_reason: 'install' });
  await a.request({ pack_install_id: finished, pack_ref: 'passing', pack_version: '1.0.0', trigger_reason: 'install' });
  await a.request({ pack_install_id: other, pack_ref: 'passing', pack_version: '1.0.0', trigger_reason: 'install' });
  await a.request({ pack_install_id: mismatch, pack_ref: 'passing', pack_version: '9.9.9', trigger_reason: 'install' });
  await a.request({ pack_install_id: mode, pack_ref: 'passing', pack_version: '1.0.0', trigger_reason: 'install' });
  await a.request({ pack_install_id: 999_999_999, pack_ref: 'passing', pack_version: '1.0.0', trigger_reason: 'install' });

  assert.deepEqual(Object.values(await installRow(disabled)).slice(0, 2), ['succeeded', null]);
  const ab = await installRow(absent);
  assert.deepEqual([ab.status, ab.error_message, ab.finished_at, ab.test_execution_id], ['activating', null, null, null]);
  const ny = await installRow(noyaml);
  assert.deepEqual([ny.status, ny.error_message], ['failed', 'pack.yaml not found for pack \'noyaml\' on worker']);
  const fin = await installRow(finished);
  assert.equal(fin.status, 'succeeded', 'a finished attempt is left alone');
  assert.equal(fin.finished_at, null, 'not even touched');
  assert.deepEqual(Object.values(await installRow(other)).slice(0, 2), ['running', null], 'another worker\'s attempt is left alone');
  assert.deepEqual(Object.values(await installRow(mismatch)).slice(0, 2), ['failed', 'Pack test delivery did not match its install record']);
  const md = await installRow(mode);
  assert.deepEqual([md.status, md.error_message, md.candidate_access_token_hash], ['failed', 'Pack test delivery did not match the claimed candidate mode', null]);
  assert.equal(Number((await db.pool.query('SELECT count(*) FROM pack_test_execution')).rows[0].count), before, 'no suite ran: no test rows');
  assert.ok(a.log.lines.some((l) => /pack_install 999999999 does not exist/.test(String(l.msg))));
  assert.equal(a.consumer.stats.acked, 8);
});

test('a staged candidate on the volume: token checked, path confined to .pack-test-{id}, tested, then removed', async () => {
  const a = await agent();
  const token = 'attempt-secret-token';
  const good = await a.install('passing', '1.0.0', 'install', { packId: null, hash: hashIntegrationToken(token) });
  const candidate = join(a.packs, `.pack-test-${good}`);
  cpSync(join(a.packs, 'passing'), candidate, { recursive: true });
  // a wrong token: ignored, the candidate stays
  await a.request({ pack_install_id: good, pack_ref: 'passing', pack_version: '1.0.0', trigger_reason: 'install', candidate_path: candidate, candidate_access_token: 'wrong' });
  assert.equal((await installRow(good)).status, 'running');
  assert.ok(existsSync(candidate));
  await a.request({ pack_install_id: good, pack_ref: 'passing', pack_version: '1.0.0', trigger_reason: 'install', candidate_path: candidate, candidate_access_token: token });
  const row = await installRow(good);
  assert.deepEqual([row.status, row.error_message, row.candidate_access_token_hash, row.test_result.passed], ['activating', null, null, 3]);
  assert.ok(!existsSync(candidate), 'the candidate is removed after its test, as Attune\'s worker does');
  assert.ok(!a.log.lines.some((l) => JSON.stringify(l).includes(token)), 'the token is never logged');

  // a candidate elsewhere (another attempt's directory): failed, nothing removed
  const bad = await a.install('passing', '1.0.0', 'install', { packId: null, hash: hashIntegrationToken(token) });
  const elsewhere = join(a.packs, `.pack-test-${bad + 1}`);
  mkdirSync(elsewhere);
  await a.request({ pack_install_id: bad, pack_ref: 'passing', pack_version: '1.0.0', trigger_reason: 'install', candidate_path: elsewhere, candidate_access_token: token });
  const b = await installRow(bad);
  assert.deepEqual([b.status, b.error_message], ['failed', `Internal error: Pack test candidate path is outside the configured pack root: ${elsewhere}`]);
  assert.ok(existsSync(elsewhere));
});

test('a runner that hangs is killed at its timeout with its process group; the next runner still runs; the result is recorded', async () => {
  const mark = h.marker();
  const a = await agent({ baselineEnv: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...mark.env } });
  const id = await a.install('hangs', '1.0.0', 'install');
  const started = Date.now();
  await a.request({ pack_install_id: id, pack_ref: 'hangs', pack_version: '1.0.0', trigger_reason: 'install' });
  assert.ok(Date.now() - started < 30_000, 'killed at its 1 s timeout, not after sleep 600');
  await waitFor('no process of the hung runner left', () => h.processesWithMarker(mark.value).length === 0);
  const row = await installRow(id);
  assert.deepEqual([row.status, row.error_message], ['failed', 'Pack tests did not pass (2/3 passed)']);
  const [hang, quick] = row.test_result.testSuites;
  assert.deepEqual([hang.name, hang.total, hang.failed, hang.testCases[0].name, hang.testCases[0].status, hang.testCases[0].errorMessage],
    ['hang', 1, 1, 'hang_execution', 'error', 'Operation timed out: Test execution timed out after 1s']);
  assert.deepEqual([quick.name, quick.total, quick.passed], ['quick', 2, 2]);
  assert.ok((await testRow(row.test_execution_id)).total_tests === 3);
});

test('a python runner on an image without python: the runner cannot start, the suite records why (naming what was detected)', async () => {
  const bash = h.detected().filter((d) => d.name === 'shell');
  const a = await agent({ detected: bash, baselineEnv: { PATH: '/nonexistent' } });
  const id = await a.install('pyunit', '1.1.0', 'install');
  await a.request({ pack_install_id: id, pack_ref: 'pyunit', pack_version: '1.1.0', trigger_reason: 'install' });
  const row = await installRow(id);
  assert.deepEqual([row.status, row.error_message], ['failed', 'Pack tests did not pass (0/1 passed)']);
  const c = row.test_result.testSuites[0].testCases[0];
  assert.equal(c.status, 'error');
  assert.match(c.errorMessage, /^Internal error: Failed to spawn command 'python3': No such file or directory \(os error 2\) \(attune-agent: this image has no python for the unittest runner python; interpreters detected: shell \//);
});

test('a python candidate gets a private environment under .pack-test-attempts/{id}, removed with the candidate after its run', async () => {
  const a = await agent();
  const token = 'python-candidate-token';
  const id = await a.install('pyunit', '1.1.0', 'install', { packId: null, hash: hashIntegrationToken(token) });
  const candidate = join(a.packs, `.pack-test-${id}`);
  cpSync(join(a.packs, 'pyunit'), candidate, { recursive: true });
  writeFileSync(join(candidate, 'requirements.txt'), `${makeWheel(a.root, '1.0.0', 'from-venv')}\n`);
  await a.request({ pack_install_id: id, pack_ref: 'pyunit', pack_version: '1.1.0', trigger_reason: 'install', candidate_path: candidate, candidate_access_token: token });
  const row = await installRow(id);
  assert.equal(row.status, 'activating', JSON.stringify(row.test_result ?? row.error_message));
  assert.match(row.test_result.testSuites[0].testCases[0].stdout, new RegExp(`PREFIX=${a.envs}/\\.pack-test-attempts/${id}/pyunit/python`));
  assert.ok(!existsSync(candidate), 'the candidate is removed');
  assert.ok(!existsSync(join(a.envs, '.pack-test-attempts', String(id))), 'its environment too');
  assert.ok(!existsSync(join(a.envs, 'pyunit')), 'the active pack\'s environment is not touched');
  assertImagePythonUntouched();
});

test('shutdown while a suite runs: its process group is killed, the request requeued, the install left running for the next start', async () => {
  const mark = h.marker();
  const a = await agent({ baselineEnv: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...mark.env } });
  const dir = join(a.packs, 'sleeper');
  mkdirSync(join(dir, 'tests'), { recursive: true });
  writeFileSync(join(dir, 'tests', 'sleep.sh'), 'sleep 600\n');
  writeFileSync(join(dir, 'pack.yaml'), 'ref: sleeper\ntesting:\n  enabled: true\n  discovery:\n    method: directory\n  runners:\n    s:\n      type: script\n      entry_point: tests/sleep.sh\n      timeout: 600\n');
  const id = await a.install('sleeper', '1.0.0', 'install');
  await a.publish({ pack_install_id: id, pack_ref: 'sleeper', pack_version: '1.0.0', trigger_reason: 'install' });
  await waitFor('the runner to start', () => h.processesWithMarker(mark.value).length > 0);
  await a.consumer.cancel();
  a.tests.stop();
  await waitFor('the request to be requeued', () => a.consumer.stats.requeued === 1);
  await waitFor('no process of the suite left', () => h.processesWithMarker(mark.value).length === 0);
  const row = await installRow(id);
  assert.deepEqual([row.status, row.error_message, row.test_result], ['running', null, null]);
  assert.ok(a.log.lines.some((l) => /stopped by the agent's shutdown/.test(String(l.msg))));
});
