/**
 * `npm run demo`: the agent's main job on the local PostgreSQL and RabbitMQ, end to end.
 * Builds the executable if needed, creates the database `attune_agent_demo` with the development
 * schema, seeds Attune's core runtimes and the sample pack in examples/packs/demo, starts the built
 * agent, dispatches one execution per action the way Attune's executor does, prints the results,
 * and stops the agent with SIGTERM.
 *
 * Env: ATTUNE_DEMO_PG_URL (admin URL, default postgresql://postgres@127.0.0.1:5432/postgres),
 *      ATTUNE_DEMO_AMQP_URL (default amqp://guest:guest@127.0.0.1:5672/%2f).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { connect } from 'amqplib';
import { devSchemaSql } from '../test/helpers/pg.ts';
import { collectExecutionMessages, publishExecutionRequested } from '../test/helpers/amqp.ts';
import { createExecution, executionRow, seedCoreRuntimes, seedPackFromDir, startAgent } from '../test/harness/platform.ts';
import { waitFor } from '../test/helpers/wait.ts';

const ADMIN_URL = process.env.ATTUNE_DEMO_PG_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';
const AMQP_URL = process.env.ATTUNE_DEMO_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672/%2f';
const DB_NAME = 'attune_agent_demo';
const WORKER_NAME = 'attune-agent-demo';
const root = new URL('..', import.meta.url).pathname;
const packsDir = join(root, 'examples/packs');

const SAMPLES: Record<string, Record<string, unknown>> = {
  'demo.hello': { name: "Ada O'Brien", times: 2 },
  'demo.stats': { numbers: [3, 1, 4, 1, 5, 9, 2, 6] },
  'demo.transform': { text: 'attune agent', mode: 'upper' },
};

function step(msg: string): void {
  process.stdout.write(`\n== ${msg}\n`);
}

async function main(): Promise<void> {
  step('build (incremental)');
  execFileSync(process.execPath, [join(root, 'build/build.ts')], { stdio: 'inherit', cwd: root });

  step(`database ${DB_NAME} with the development schema`);
  const admin = new pg.Client({ connectionString: ADMIN_URL, connectionTimeoutMillis: 5000 });
  await admin.connect().catch((e: Error) => {
    throw new Error(`PostgreSQL at ${new URL(ADMIN_URL).host} is unreachable (${e.message}): start it, or set ATTUNE_DEMO_PG_URL`);
  });
  await admin.query(`DROP DATABASE IF EXISTS ${DB_NAME} WITH (FORCE)`);
  await admin.query(`CREATE DATABASE ${DB_NAME}`);
  await admin.end();
  const dbUrl = new URL(ADMIN_URL);
  dbUrl.pathname = `/${DB_NAME}`;
  const db = new pg.Pool({ connectionString: dbUrl.toString(), options: '-c search_path=attune,public' });
  await db.query(devSchemaSql('attune'));
  const runtimeIds = await seedCoreRuntimes(db);
  const actions = await seedPackFromDir(db, join(packsDir, 'demo'), runtimeIds);
  console.log(`seeded runtimes ${Object.keys(runtimeIds).join(', ')} and actions ${actions.map((a) => a.ref).join(', ')}`);

  step('start the agent (dist/attune-agent)');
  const work = mkdtempSync(join(tmpdir(), 'attune-agent-demo-'));
  const agent = startAgent({
    ATTUNE__DATABASE__URL: dbUrl.toString(),
    ATTUNE__MESSAGE_QUEUE__URL: AMQP_URL,
    ATTUNE__PACKS_BASE_DIR: packsDir,
    ATTUNE__ARTIFACTS_DIR: join(work, 'artifacts'),
    ATTUNE__RUNTIME_ENVS_DIR: join(work, 'runtime_envs'),
    ATTUNE_WORKER_NAME: WORKER_NAME,
    ATTUNE__WORKER__HEARTBEAT_INTERVAL: '10',
  });
  try {
    const worker = await waitFor('the worker row', async () => (await db.query(`SELECT id, status, capabilities FROM worker WHERE name = $1 AND status = 'active'`, [WORKER_NAME])).rows[0], { timeoutMs: 15_000 });
    await agent.waitForLog('the agent to consume dispatches', (l) => l.msg === 'consuming execution dispatches');
    const workerId = Number(worker.id);
    console.log(`worker ${WORKER_NAME} registered as id ${workerId}; runtimes ${JSON.stringify(worker.capabilities.runtimes)}`);
    for (const d of worker.capabilities.detected_interpreters as { name: string; path: string; version: string | null }[]) {
      console.log(`  ${d.name.padEnd(8)} ${d.path} (${d.version ?? 'unknown version'})`);
    }

    step('dispatch one execution per action (ExecutionRequested, as Attune\'s executor sends it)');
    const mq = await connect(AMQP_URL);
    const collector = await collectExecutionMessages(mq);
    const ids: [string, number][] = [];
    for (const a of actions) {
      const config = SAMPLES[a.ref] ?? {};
      const id = await createExecution(db, { actionRef: a.ref, workerId, config });
      await publishExecutionRequested(mq, workerId, { execution_id: id, action_ref: a.ref, config });
      ids.push([a.ref, id]);
      console.log(`execution ${id}: ${a.ref} ${JSON.stringify(config)}`);
    }
    await collector.waitFor('ExecutionCompleted for every execution', (m) => ids.every(([, id]) => m.some((x) => x.routingKey === 'execution.completed' && x.json?.payload?.execution_id === id)), { timeoutMs: 60_000 });

    step('results (execution rows written by the agent)');
    let failures = 0;
    for (const [ref, id] of ids) {
      const r = await executionRow(db, id);
      const completion = collector.forExecution(id).find((m) => m.routingKey === 'execution.completed')!;
      if (r.status !== 'completed') failures++;
      console.log(`${ref} (execution ${id}): ${r.status} / ExecutionCompleted.status=${completion.json?.payload?.status}`);
      console.log(`  result: ${JSON.stringify(r.result)}`);
    }
    await collector.close();
    await mq.close();

    step('stop the agent (SIGTERM)');
    const exit = await agent.stop('SIGTERM');
    const after = (await db.query('SELECT status FROM worker WHERE id = $1', [workerId])).rows[0];
    console.log(`agent exited with code ${exit.code}; worker row status: ${after.status}`);
    if (failures > 0 || exit.code !== 0) process.exitCode = 1;
  } catch (e) {
    console.error(`demo failed: ${(e as Error).message}`);
    console.error(agent.stderr.join(''));
    for (const l of agent.logs.slice(-20)) console.error(JSON.stringify(l));
    await agent.stop('SIGKILL');
    process.exitCode = 1;
  } finally {
    await db.end();
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e: Error) => {
  console.error(`demo failed: ${e.message}`);
  process.exitCode = 1;
});
