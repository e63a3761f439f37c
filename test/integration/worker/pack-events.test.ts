/**
 * Pack events and pack tests queues against a real RabbitMQ and PostgreSQL (docs/environments.md
 * "Pack events"): a PackRegistered published the way Attune's API publishes it makes the pack's
 * venv (a local wheel, no network) before the first execution, which then runs no setup command;
 * a PackDeleted removes that pack's environments only and refuses a path leaving runtime_envs_dir;
 * a bad pack_ref is dropped. Pack tests: pack-tests.test.ts.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ChannelModel } from 'amqplib';
import { MqConnection } from '../../../src/mq/connection.ts';
import { workerTopologySetup } from '../../../src/mq/topology.ts';
import { createPacksConsumer } from '../../../src/mq/worker-consumers.ts';
import { PackEvents } from '../../../src/worker/pack-events.ts';
import { loadRuntimesByName, refreshRuntimeVersionsCapability } from '../../../src/db/pack-runtimes.ts';
import { execFileSync } from 'node:child_process';
import type { DetectedInterpreter } from '../../../src/execution/plan.ts';
import { RuntimeEnvironments, DEPS_MARKER, READY_MARKER } from '../../../src/execution/environments.ts';
import { AMQP_URL, attuneEnvelope, captureLogger, connectTest, deleteWorkerQueues, publishLikeAttune, queueDepth, randomWorkerId } from '../../helpers/amqp.ts';
import { createTestDatabase, type TestDatabase } from '../../helpers/pg.ts';
import { waitFor } from '../../helpers/wait.ts';
import * as h from '../../helpers/execution.ts';
import { CORE_RUNTIMES } from '../../fixtures/catalog/core-runtimes.ts';
import type { RuntimeExecutionConfig } from '../../../src/model.ts';
import { makeWheel, writeDependencyPack } from '../../fixtures/environments/dep-pack.ts';

const PY_CONFIG = CORE_RUNTIMES.find((r) => r.ref === 'core.python')!.execution_config as RuntimeExecutionConfig;

let model: ChannelModel;
let db: TestDatabase;
let runtimeId: number;
const cleanups: Array<() => Promise<void>> = [];

before(async () => {
  model = await connectTest('pack-events-test');
  db = await createTestDatabase('pack_events');
  const { rows } = await db.pool.query<{ id: number }>(
    `INSERT INTO runtime (ref, name, aliases, distributions, execution_config) VALUES ('core.python', 'Python', ARRAY['python','python3'], '{}', $1) RETURNING id`,
    [JSON.stringify(PY_CONFIG)],
  );
  runtimeId = rows[0].id;
});
after(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await db?.drop();
  await model?.close();
});

/** An agent's pack consumers on their own connection, with a packs dir and runtime_envs dir. */
async function agent(opts: { detected?: DetectedInterpreter[]; refresh?: () => Promise<Record<string, string[]>> } = {}) {
  const workerId = randomWorkerId();
  const root = h.tempDir('pack-events');
  const packs = join(root, 'packs');
  const envs = join(root, 'runtime_envs');
  mkdirSync(packs, { recursive: true });
  const log = captureLogger('info');
  const conn = new MqConnection({ url: AMQP_URL, logger: log.logger, connectionName: `pack-events-${workerId}` });
  conn.addSetup(workerTopologySetup(workerId, log.logger, { includePackQueues: true }));
  await conn.start();
  const config = { ...h.config(), packsBaseDir: packs, runtimeEnvsDir: envs };
  const environments = new RuntimeEnvironments({ setupTimeoutMs: 300_000, baselineEnv: { PATH: process.env.PATH ?? '/usr/bin:/bin' } });
  const events = new PackEvents({
    config, detected: opts.detected ?? h.detected(), baselineEnv: { PATH: process.env.PATH ?? '/usr/bin:/bin' }, environments, verifiedReleases: new Set(),
    loadRuntimes: (names) => loadRuntimesByName(db.pool, names), log: log.logger, refreshRuntimeVersions: opts.refresh,
  });
  const packsConsumer = createPacksConsumer(conn, workerId, (env) => events.onMessage(env), log.logger);
  await packsConsumer.start();
  cleanups.push(async () => {
    await packsConsumer.close();
    await conn.close();
    await deleteWorkerQueues(model, workerId);
    rmSync(root, { recursive: true, force: true });
  });
  return { workerId, root, packs, envs, config, environments, log, packsConsumer };
}

async function publishPackEvent(type: 'PackRegistered' | 'PackDeleted' | 'RuleCreated', key: string, payload: unknown): Promise<void> {
  const { body, messageId } = attuneEnvelope(type, payload, 'api');
  await publishLikeAttune(model, 'attune.events', key, body, messageId);
}

test('PackRegistered makes the pack\'s venv with its dependencies; the first execution finds it ready and runs no setup command', async () => {
  const a = await agent();
  writeDependencyPack(a.packs, 'testpack', `${makeWheel(a.root, '1.0.0', 'early')}\n`);
  const envDir = join(a.envs, 'testpack', 'python');

  await publishPackEvent('PackRegistered', 'pack.registered', {
    pack_id: 7, pack_ref: 'testpack', version: '1.0.0', release_id: null, release_digest: null, runtime_names: ['python', 'ruby_not_here'],
  });
  await waitFor('the PackRegistered to be handled and acked', () => a.packsConsumer.stats.acked === 1, { timeoutMs: 240_000 });
  assert.ok(existsSync(join(envDir, READY_MARKER)), 'the venv exists before any execution');
  assert.ok(existsSync(join(envDir, DEPS_MARKER)), 'its dependencies are installed');
  const line = a.log.lines.find((l) => /pack testpack registered: 1 runtime environment\(s\) ready, 0 failed/.test(String(l.msg)));
  assert.ok(line, JSON.stringify(a.log.lines.map((l) => l.msg)));

  const runLog = captureLogger('info');
  const r = await h.run({
    execution: h.execution(), action: h.action('use_dep.py', { output_format: 'json', runtime: runtimeId }),
    runtime: h.runtime('python', { id: runtimeId, execution_config: PY_CONFIG }),
    config: a.config, detected: h.detected(), baselineEnv: { PATH: process.env.PATH ?? '/usr/bin:/bin' }, environments: a.environments, logger: runLog.logger,
  });
  assert.equal(r.status, 'completed', JSON.stringify(r.result));
  assert.deepEqual(r.result.data, { value: 'early', prefix: envDir });
  assert.equal(runLog.lines.filter((l) => /: running `/.test(String(l.msg))).length, 0, 'the first execution runs no setup command');
});

test('PackDeleted removes that pack\'s environments only; a path leaving runtime_envs_dir is refused; a bad pack_ref is dropped', async () => {
  const a = await agent();
  for (const d of ['testpack/python', 'testpack/python-3.11', 'otherpack/python', 'sha256/abc', 'sha256/ownedkey', 'sha256/otherkey', 'sha256/nomarker']) mkdirSync(join(a.envs, d), { recursive: true });
  // Attune's purge reads .attune-pack-ref in sha256/*: the pack's content-addressed environments go too.
  writeFileSync(join(a.envs, 'sha256', 'ownedkey', '.attune-pack-ref'), 'testpack');
  writeFileSync(join(a.envs, 'sha256', 'otherkey', '.attune-pack-ref'), 'otherpack');
  const outside = join(a.root, 'x');
  mkdirSync(outside);
  writeFileSync(join(outside, 'keep'), 'keep');

  await publishPackEvent('PackDeleted', 'pack.deleted', {
    pack_id: 7, pack_ref: 'testpack', runtime_environment_paths: ['../x', '/etc', 'sha256/abc'], release_digests: [],
  });
  await waitFor('the PackDeleted to be acked', () => a.packsConsumer.stats.acked === 1);
  assert.ok(!existsSync(join(a.envs, 'testpack')), 'the pack\'s environments are gone');
  assert.ok(!existsSync(join(a.envs, 'sha256', 'abc')), 'the listed relative path is removed');
  assert.ok(existsSync(join(a.envs, 'otherpack', 'python')), 'another pack\'s environment is untouched');
  assert.ok(!existsSync(join(a.envs, 'sha256', 'ownedkey')), 'the pack\'s sha256 environment is removed');
  assert.ok(existsSync(join(a.envs, 'sha256', 'otherkey')) && existsSync(join(a.envs, 'sha256', 'nomarker')), 'others\' (and unmarked) are kept');
  assert.ok(existsSync(join(outside, 'keep')), '../x is not touched');
  const refused = a.log.lines.filter((l) => /refusing runtime environment path/.test(String(l.msg))).map((l) => l.path);
  assert.deepEqual(refused, ['../x', '/etc']);

  await publishPackEvent('PackDeleted', 'pack.deleted', { pack_id: 8, pack_ref: '../otherpack', runtime_environment_paths: [] });
  await waitFor('the bad pack_ref to be dropped', () => a.packsConsumer.stats.dropped === 1);
  assert.ok(existsSync(join(a.envs, 'otherpack', 'python')));
  assert.ok(a.log.lines.some((l) => /is not a pack ref/.test(String(l.msg))));

  await publishPackEvent('RuleCreated', 'pack.registered', { rule_id: 1 });
  await waitFor('another message type to be acked', () => a.packsConsumer.stats.acked === 2);
  assert.equal(await queueDepth(model, `worker.${a.workerId}.packs`), 0);
});

test('PackRegistered re-verifies runtime versions: a version row added after start is verified here, advertised in the worker\'s capabilities, and its environment made', async () => {
  const PATH = process.env.PATH ?? '/usr/bin:/bin';
  const full = execFileSync('python3', ['-c', 'import sys; print("%d.%d.%d" % sys.version_info[:3])'], { encoding: 'utf8' }).trim();
  const minor = full.split('.').slice(0, 2).join('.');
  const detected = h.detected().map((d) => (d.name === 'python' ? { ...d, version: full } : d));
  const { rows: [w] } = await db.pool.query<{ id: number }>(
    `INSERT INTO worker (name, worker_type, worker_role, status, capabilities) VALUES ($1, 'container', 'action', 'active', $2) RETURNING id`,
    [`pack-events-versions-${process.pid}`, JSON.stringify({ runtimes: ['python', 'native'], worker_version: '0.6.0', runtime_versions: { python: [full] } })],
  );
  const a = await agent({
    detected,
    refresh: () => refreshRuntimeVersionsCapability(db.pool, w.id, new Set(['python', 'shell']), { python: [full] }, { PATH }),
  });
  writeDependencyPack(a.packs, 'testpack', `${makeWheel(a.root, '1.0.0', 'versioned')}\n`);
  // Registered with the pack, after this agent started: one this image has, one it has not.
  const versionConfig = { ...PY_CONFIG, interpreter: { ...PY_CONFIG.interpreter, binary: 'python3' } };
  await db.pool.query(
    `INSERT INTO runtime_version (runtime, runtime_ref, version, execution_config, distributions, is_default) VALUES
       ($1, 'core.python', $2, $3, $4, true),
       ($1, 'core.python', '9.99', $3, $5, false)`,
    [runtimeId, minor, JSON.stringify(versionConfig),
      JSON.stringify({ verification: { commands: [{ binary: 'python3', args: ['--version'], exit_code: 0, pattern: `Python ${minor.replace('.', '\\.')}\\.`, priority: 1 }] } }),
      JSON.stringify({ verification: { commands: [{ binary: 'python9.99', args: ['--version'], priority: 1 }] } })],
  );
  cleanups.push(async () => {
    await db.pool.query(`DELETE FROM runtime_version WHERE runtime = $1`, [runtimeId]);
  });

  await publishPackEvent('PackRegistered', 'pack.registered', {
    pack_id: 8, pack_ref: 'testpack', version: '1.0.0', release_id: null, release_digest: null, runtime_names: ['python'],
  });
  await waitFor('the PackRegistered to be handled and acked', () => a.packsConsumer.stats.acked === 1, { timeoutMs: 240_000 });
  const { rows: [row] } = await db.pool.query<{ capabilities: Record<string, unknown> }>('SELECT capabilities FROM worker WHERE id = $1', [w.id]);
  assert.deepEqual(row.capabilities.runtime_versions, { python: [full, minor] }, 'the verified row is advertised (detected version kept), 9.99 is not');
  assert.deepEqual(row.capabilities.runtimes, ['python', 'native'], 'the other capabilities are untouched');
  const envDir = join(a.envs, 'testpack', `python-${minor}`);
  assert.ok(existsSync(join(envDir, DEPS_MARKER)), `the environment of the new version is made ahead: ${JSON.stringify(a.log.lines.map((l) => l.msg))}`);
  assert.ok(a.log.lines.some((l) => /runtime versions verified, capabilities.runtime_versions refreshed/.test(String(l.msg))));
});
