/**
 * Packs with dependencies end to end (docs/environments.md): two built agents sharing one
 * runtime_envs directory, Attune's core catalog (core.python 3.11 row: venv + pip install -r
 * requirements.txt), an image holding python 3.11 only, and a requirements.txt naming a wheel made
 * at test time (no network). Ten first executions, five dispatched to each agent at once: exactly
 * one environment creation and one install between them, all ten complete importing the wheel.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import type { ChannelModel } from 'amqplib';
import { createTestDatabase, type TestDatabase } from '../helpers/pg.ts';
import { collectExecutionMessages, connectTest, publishExecutionRequested, type Collector } from '../helpers/amqp.ts';
import { createExecution, executionRow, insertAction, seedCoreRuntimes, startAgent, type AgentProcess, separateIds, imagePath } from '../harness/platform.ts';
import { makeWheel, writeDependencyPack } from '../fixtures/environments/dep-pack.ts';

const PACK = 'envpack';

let db: TestDatabase;
let mq: ChannelModel;
let collector: Collector;
let work: string;
const agents: AgentProcess[] = [];

before(async () => {
  work = mkdtempSync(join(tmpdir(), 'attune-envs-e2e-'));
  writeDependencyPack(join(work, 'packs'), PACK, `${makeWheel(work, '1.0.0', 'e2e')}\n`);
  // The "image": python 3.11 only (plus sh/bash), as the agent's PATH.
  const image = imagePath(join(work, 'image'), { python3: '/usr/bin/python3.11', 'python3.11': '/usr/bin/python3.11' });
  db = await createTestDatabase('pack_environments');
  await separateIds(db.pool);
  const runtimeIds = await seedCoreRuntimes(db.pool);
  await insertAction(db.pool, PACK, { ref: `${PACK}.use_dep`, entrypoint: 'use_dep.py', runtime: 'python', output_format: 'json' }, runtimeIds);
  mq = await connectTest();
  collector = await collectExecutionMessages(mq);
  for (const name of ['a', 'b']) {
    const workerName = `envs-${name}-${randomUUID().slice(0, 8)}`;
    const agent = startAgent({
      PATH: image,
      ATTUNE__DATABASE__URL: db.url,
      ATTUNE__DATABASE__SCHEMA: db.schema,
      ATTUNE__MESSAGE_QUEUE__URL: 'amqp://guest:guest@127.0.0.1:5672/%2f',
      ATTUNE__WORKER__NAME: workerName,
      ATTUNE__PACKS_BASE_DIR: join(work, 'packs'),
      ATTUNE__ARTIFACTS_DIR: join(work, 'artifacts'),
      ATTUNE__RUNTIME_ENVS_DIR: join(work, 'runtime_envs'),
      ATTUNE__LOG__LEVEL: 'debug',
    });
    agents.push(agent);
    await agent.waitForLog(`worker ${workerName} to consume`, (l) => l.msg === 'consuming execution dispatches', { timeoutMs: 30_000 });
  }
});

after(async () => {
  for (const a of agents) await a.stop().catch(() => undefined);
  await collector?.close();
  await mq?.close();
  await db?.drop();
  if (work) rmSync(work, { recursive: true, force: true });
});

test('10 concurrent first executions on two agents sharing runtime_envs: one creation, one install, all complete', async () => {
  const workers = (await db.pool.query<{ id: string }>('SELECT id FROM worker ORDER BY id')).rows.map((r) => Number(r.id));
  assert.equal(workers.length, 2);
  const ids: number[] = [];
  for (let i = 0; i < 10; i++) ids.push(await createExecution(db.pool, { actionRef: `${PACK}.use_dep`, workerId: workers[i % 2] }));
  await Promise.all(ids.map((id, i) => publishExecutionRequested(mq, workers[i % 2], { execution_id: id, action_ref: `${PACK}.use_dep`, config: {} })));
  await collector.waitFor('10 ExecutionCompleted', (m) => ids.every((id) => m.some((x) => x.routingKey === 'execution.completed' && x.json?.payload?.execution_id === id)), { timeoutMs: 180_000 });
  const envDir = join(work, 'runtime_envs', PACK, 'python-3.11');
  for (const id of ids) {
    const row = await executionRow(db.pool, id);
    assert.equal(row.status, 'completed', JSON.stringify(row.result));
    const data = (row.result as { data: { value: string; prefix: string } }).data;
    assert.equal(data.value, 'e2e');
    assert.equal(data.prefix, envDir, 'the 3.11 row\'s venv under runtime_envs_dir, in Attune\'s {pack}/{runtime}-{version} layout');
  }
  const count = (re: RegExp) => agents.flatMap((a) => a.logs).filter((l) => re.test(String(l.msg))).length;
  assert.equal(count(/runtime environment created/), 1, 'exactly one creation across both agents');
  assert.equal(count(/dependencies installed/), 1, 'exactly one install across both agents');
  assert.deepEqual(readdirSync(join(work, 'runtime_envs', PACK)), ['python-3.11'], 'no lock or temporary sibling left');
});
