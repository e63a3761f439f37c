/**
 * Pack events end to end with the built agent (docs/environments.md "Pack events"): the worker
 * queues declared the way Attune's worker declares them BEFORE the agent starts (the agent's
 * declarations must be identical, or RabbitMQ answers 406 and the agent exits), then a
 * PackRegistered makes the pack's venv (core.python 3.11 row, a local wheel) before the first
 * execution, which runs no setup command; a PackTestRequested published as Attune's executor
 * publishes it runs the pack's unittest suite in that venv and finishes the running pack install
 * with a pack_test_execution row; a PackDeleted removes the pack's environments.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import type { ChannelModel } from 'amqplib';
import { createTestDatabase, type TestDatabase } from '../helpers/pg.ts';
import { attuneEnvelope, collectExecutionMessages, connectTest, declareWorkerQueuesLikeAttune, deleteWorkerQueues, publishExecutionRequested, publishLikeAttune, queueDepth, type Collector } from '../helpers/amqp.ts';
import { createExecution, executionRow, insertAction, seedCoreRuntimes, startAgent, type AgentProcess, separateIds, imagePath } from '../harness/platform.ts';
import { waitFor } from '../helpers/wait.ts';
import { makeWheel, writeDependencyPack } from '../fixtures/environments/dep-pack.ts';

const PACK = 'eventpack';

let db: TestDatabase;
let mq: ChannelModel;
let collector: Collector;
let work: string;
let agent: AgentProcess;
let workerId: number;

before(async () => {
  work = mkdtempSync(join(tmpdir(), 'attune-pack-events-e2e-'));
  const packDir = writeDependencyPack(join(work, 'packs'), PACK, `${makeWheel(work, '1.0.0', 'registered')}\n`);
  // The pack's test suite: unittest, importing the pack's dependency (so only its venv can pass it).
  mkdirSync(join(packDir, 'tests'));
  writeFileSync(join(packDir, 'tests', 'test_dep.py'),
    'import sys, unittest\nimport attune_fixture_dep\n\nclass T(unittest.TestCase):\n' +
    '    def test_dep(self):\n        print("PREFIX=" + sys.prefix)\n        self.assertEqual(attune_fixture_dep.VALUE, "registered")\n');
  writeFileSync(join(packDir, 'pack.yaml'), `ref: ${PACK}\nlabel: ${PACK}\nversion: 1.0.0\ntesting:\n  enabled: true\n  discovery:\n    method: directory\n` +
    '  runners:\n    python:\n      type: unittest\n      entry_point: tests/test_dep.py\n      timeout: 120\n');
  const image = imagePath(join(work, 'image'), { python3: '/usr/bin/python3.11', 'python3.11': '/usr/bin/python3.11' });
  db = await createTestDatabase('pack_events_e2e');
  const base = await separateIds(db.pool);
  workerId = base + 1; // the id the agent will be registered with
  const runtimeIds = await seedCoreRuntimes(db.pool);
  await insertAction(db.pool, PACK, { ref: `${PACK}.use_dep`, entrypoint: 'use_dep.py', runtime: 'python', output_format: 'json' }, runtimeIds);
  mq = await connectTest();
  collector = await collectExecutionMessages(mq);
  // Attune's worker (or an earlier Attune worker with this id) declared the four queues first.
  await declareWorkerQueuesLikeAttune(mq, workerId);
  const workerName = `pack-events-${randomUUID().slice(0, 8)}`;
  agent = startAgent({
    PATH: image,
    ATTUNE__DATABASE__URL: db.url,
    ATTUNE__DATABASE__SCHEMA: db.schema,
    ATTUNE__MESSAGE_QUEUE__URL: 'amqp://guest:guest@127.0.0.1:5672/%2f',
    ATTUNE__WORKER__NAME: workerName,
    ATTUNE__PACKS_BASE_DIR: join(work, 'packs'),
    ATTUNE__ARTIFACTS_DIR: join(work, 'artifacts'),
    ATTUNE__RUNTIME_ENVS_DIR: join(work, 'runtime_envs'),
    ATTUNE__LOG__LEVEL: 'info',
  });
  await agent.waitForLog(`worker ${workerName} to consume`, (l) => l.msg === 'consuming execution dispatches', { timeoutMs: 30_000 });
});

after(async () => {
  await agent?.stop().catch(() => undefined);
  await collector?.close();
  if (mq) await deleteWorkerQueues(mq, workerId);
  await mq?.close();
  await db?.drop();
  if (work) rmSync(work, { recursive: true, force: true });
});

async function publishEvent(type: string, exchange: string, key: string, payload: unknown): Promise<void> {
  const { body, messageId } = attuneEnvelope(type, payload, 'api');
  await publishLikeAttune(mq, exchange, key, body, messageId);
}

test('queues declared by Attune first: the agent starts (no 406) and consumes all four with Attune\'s consumer tags', async () => {
  const { rows } = await db.pool.query<{ id: string }>('SELECT id FROM worker');
  assert.deepEqual(rows.map((r) => Number(r.id)), [workerId]);
  const consuming = agent.logs.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('consuming worker.')).map((l) => `${l.queue} ${l.consumer_tag} ${l.prefetch}`).sort();
  assert.deepEqual(consuming, [
    `worker.${workerId}.cancel worker-${workerId}-cancel 10`,
    `worker.${workerId}.executions worker-${workerId} 12`,
    `worker.${workerId}.packs worker-${workerId}-packs 5`,
    `worker.${workerId}.packtests worker-${workerId}-packtests 1`,
  ]);
});

test('PackRegistered → the environment exists before the first execution, which runs no setup command', async () => {
  await publishEvent('PackRegistered', 'attune.events', 'pack.registered', {
    pack_id: 1, pack_ref: PACK, version: '1.0.0', release_id: null, release_digest: null, runtime_names: ['python'],
  });
  await agent.waitForLog('the pack\'s environments made', (l) => typeof l.msg === 'string' && l.msg.startsWith(`pack ${PACK} registered:`) && l.msg.includes('runtime environment(s) ready'), { timeoutMs: 240_000 });
  const envDir = join(work, 'runtime_envs', PACK, 'python-3.11');
  assert.ok(existsSync(join(envDir, '.attune-runtime-ready')), 'the venv of the 3.11 row (the one this image has)');
  assert.ok(existsSync(join(envDir, '.attune_deps_installed')));
  const setupBefore = agent.logs.filter((l) => /: running `/.test(String(l.msg))).length;
  assert.equal(setupBefore, 2, 'create_command + install_command, on PackRegistered');

  const id = await createExecution(db.pool, { actionRef: `${PACK}.use_dep`, workerId });
  await publishExecutionRequested(mq, workerId, { execution_id: id, action_ref: `${PACK}.use_dep`, config: {} });
  await collector.waitFor('ExecutionCompleted', (m) => m.some((x) => x.routingKey === 'execution.completed' && x.json?.payload?.execution_id === id), { timeoutMs: 60_000 });
  const row = await executionRow(db.pool, id);
  assert.equal(row.status, 'completed', JSON.stringify(row.result));
  assert.deepEqual((row.result as { data: unknown }).data, { value: 'registered', prefix: envDir });
  assert.equal(agent.logs.filter((l) => /: running `/.test(String(l.msg))).length, setupBefore, 'no setup command ran for the execution');
});

test('PackTestRequested from the executor: the suite runs in the pack\'s venv; the install is activating with a pack_test_execution row', async () => {
  const packId = Number((await db.pool.query('SELECT id FROM pack WHERE ref = $1', [PACK])).rows[0].id);
  const installId = Number((await db.pool.query(
    `INSERT INTO pack_install (pack_ref, pack_version, status, trigger_reason, pack_id, assigned_worker_id) VALUES ($1, '1.0.0', 'running', 'install', $2, $3) RETURNING id`,
    [PACK, packId, workerId])).rows[0].id);
  const { body, messageId } = attuneEnvelope('PackTestRequested', {
    pack_install_id: installId, pack_ref: PACK, pack_version: '1.0.0', candidate_path: null, trigger_reason: 'install',
    required_runtimes: ['python'], worker_selector: {}, worker_tolerations: [], worker_affinity: {},
  }, 'executor');
  await publishLikeAttune(mq, 'attune.executions', `pack.test.dispatch.worker.${workerId}`, body, messageId);
  const line = await agent.waitForLog('the pack test finished', (l) => typeof l.msg === 'string' && l.msg.startsWith(`pack tests of ${PACK} 1.0.0 (pack_install ${installId}):`), { timeoutMs: 120_000 });
  assert.match(String(line.msg), /: activating \(1\/1 passed\)$/);
  await waitFor('worker.{id}.packtests empty', async () => (await queueDepth(mq, `worker.${workerId}.packtests`)) === 0);
  const row = (await db.pool.query('SELECT status, error_message, finished_at, test_execution_id, test_result FROM pack_install WHERE id = $1', [installId])).rows[0];
  assert.deepEqual([row.status, row.error_message, row.finished_at], ['activating', null, null]);
  const t = (await db.pool.query('SELECT * FROM pack_test_execution WHERE id = $1', [row.test_execution_id])).rows[0];
  assert.deepEqual([Number(t.pack_id), t.pack_version, t.trigger_reason, t.total_tests, t.passed, t.failed, t.skipped, t.pass_rate], [packId, '1.0.0', 'install', 1, 1, 0, 0, 1]);
  const testCase = t.result.testSuites[0].testCases[0];
  assert.equal(testCase.status, 'passed');
  assert.match(testCase.stdout, new RegExp(`PREFIX=${join(work, 'runtime_envs', PACK, 'python-3.11')}`), 'the venv PackRegistered made');
  assert.deepEqual(row.test_result, t.result);
});

test('PackDeleted → the pack\'s environments are gone', async () => {
  await publishEvent('PackDeleted', 'attune.events', 'pack.deleted', { pack_id: 1, pack_ref: PACK, runtime_environment_paths: [], release_digests: [] });
  await agent.waitForLog('the pack\'s environments removed', (l) => typeof l.msg === 'string' && l.msg.startsWith(`pack ${PACK} deleted:`));
  assert.ok(!existsSync(join(work, 'runtime_envs', PACK)));
  assert.ok(existsSync(join(work, 'runtime_envs')), 'runtime_envs_dir itself stays');
});
