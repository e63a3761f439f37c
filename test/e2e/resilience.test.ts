/**
 * Outages, end to end: the BUILT agent (dist/attune-agent) against real PostgreSQL and RabbitMQ.
 * Both servers are shared with other test files, so they are never stopped: each agent reaches them
 * through a TCP proxy (test/helpers/proxy.ts) that the test cuts. The test itself (rows, dispatches,
 * the observer of the agent's messages) talks to the servers directly and sees everything.
 *
 * Agent A (db_retry_window 60 s): broker outages in the middle of a burst of executions, and a
 * database outage shorter than the window. Agent B (db_retry_window 2 s): a database outage longer
 * than the window.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { ChannelModel } from 'amqplib';
import { createTestDatabase, type TestDatabase } from '../helpers/pg.ts';
import { AMQP_URL, collectExecutionMessages, connectTest, publishExecutionRequested, type Collector } from '../helpers/amqp.ts';
import { TcpProxy } from '../helpers/proxy.ts';
import { createExecution, insertAction, seedCoreRuntimes, startAgent, type AgentProcess, separateIds, consumingWorkerId } from '../harness/platform.ts';
import { waitFor } from '../helpers/wait.ts';

const run = promisify(execFile);
const MAX_CONCURRENT = 8;

let db: TestDatabase;
let mq: ChannelModel;
let collector: Collector;
let work: string;
let recordFile: string;

interface Agent {
  name: string;
  proc: AgentProcess;
  workerId: number;
  mqProxy: TcpProxy;
  dbProxy: TcpProxy;
}
let A: Agent;
let B: Agent;

async function launch(name: string, retryWindowSec: number): Promise<Agent> {
  const mqProxy = await TcpProxy.start(Number(new URL(AMQP_URL).port || 5672), new URL(AMQP_URL).hostname);
  const dbUrl = new URL(db.url);
  const dbProxy = await TcpProxy.start(Number(dbUrl.port || 5432), dbUrl.hostname);
  const proc = startAgent({
    ATTUNE__DATABASE__URL: dbProxy.url(db.url),
    ATTUNE__DATABASE__SCHEMA: db.schema,
    ATTUNE__DATABASE__CONNECT_TIMEOUT: '5',
    ATTUNE__MESSAGE_QUEUE__URL: mqProxy.url(AMQP_URL),
    ATTUNE__PACKS_BASE_DIR: join(work, 'packs'),
    ATTUNE__ARTIFACTS_DIR: join(work, `artifacts-${name}`),
    ATTUNE__RUNTIME_ENVS_DIR: join(work, `envs-${name}`),
    ATTUNE__WORKER__MAX_CONCURRENT_TASKS: String(MAX_CONCURRENT),
    ATTUNE__WORKER__HEARTBEAT_INTERVAL: '1',
    ATTUNE__WORKER__DB_RETRY_WINDOW: String(retryWindowSec),
    ATTUNE__WORKER__KILL_GRACE_PERIOD: '1',
    ATTUNE__WORKER__SHUTDOWN_TIMEOUT: '5',
    ATTUNE__LOG__LEVEL: 'debug',
    ATTUNE_WORKER_RUNTIMES: 'shell',
    ATTUNE_WORKER_NAME: name,
  });
  const workerId = await consumingWorkerId(proc, db.pool, name, { timeoutMs: 30_000 });
  return { name, proc, workerId, mqProxy, dbProxy };
}

before(async () => {
  db = await createTestDatabase('e2e_resilience');
  // Other test files run agents against the same broker with their own databases, where worker and
  // execution ids start at 1 too: queue names (worker.{id}.*) and message ids must not collide.
  await separateIds(db.pool);
  const runtimeIds = await seedCoreRuntimes(db.pool);
  work = mkdtempSync(join(tmpdir(), 'attune-e2e-resilience-'));
  recordFile = join(work, 'started.log');
  const actions = join(work, 'packs', 'respack', 'actions');
  mkdirSync(actions, { recursive: true });
  // Each start of the action appends its execution id: a second run of one execution shows up here.
  writeFileSync(join(actions, 'record.sh'), `#!/bin/bash\neval "$(cat)"\necho "$ATTUNE_EXEC_ID" >> ${JSON.stringify(recordFile)}\nsleep "\${s:-0.2}"\necho "done $ATTUNE_EXEC_ID"\n`);
  chmodSync(join(actions, 'record.sh'), 0o755);
  await insertAction(db.pool, 'respack', { ref: 'respack.record', entrypoint: 'record.sh', runtime: 'shell', parameter_format: 'dotenv' }, runtimeIds);
  mq = await connectTest('e2e-resilience');
  collector = await collectExecutionMessages(mq);
  const tag = `${process.pid}-${Date.now() % 100000}`;
  [A, B] = await Promise.all([launch(`e2e-res-a-${tag}`, 60), launch(`e2e-res-b-${tag}`, 2)]);
});

after(async () => {
  for (const a of [A, B].filter(Boolean)) {
    const errors = [...new Set(a.proc.logs.filter((l) => l.level === 'error' || l.level === 'fatal').map((l) => String(l.msg).slice(0, 120)))];
    if (process.env.RESILIENCE_LOG_DIR) writeFileSync(join(process.env.RESILIENCE_LOG_DIR, `${a.name}.jsonl`), a.proc.logs.map((l) => JSON.stringify(l)).join('\n'));
    console.log(`# ${a.name}: ${errors.length} distinct error lines${errors.length ? `: ${errors.join(' | ')}` : ''}`);
  }
  const exits = await Promise.all([A, B].filter(Boolean).map(async (a) => {
    a.mqProxy.up();
    a.dbProxy.up();
    const exit = await a.proc.stop('SIGTERM');
    await a.mqProxy.close();
    await a.dbProxy.close();
    return exit;
  }));
  await collector?.close();
  await mq?.close();
  await db?.drop();
  if (work) rmSync(work, { recursive: true, force: true });
  for (const e of exits) assert.equal(e.code, 0, 'each agent stops cleanly after its outages');
});

/** Create + dispatch executions of respack.record for `agent`. */
async function dispatch(agent: Agent, n: number, s = 0.2): Promise<number[]> {
  const ids: number[] = [];
  for (let i = 0; i < n; i++) ids.push(await createExecution(db.pool, { actionRef: 'respack.record', workerId: agent.workerId, config: { s } }));
  for (const id of ids) await publishExecutionRequested(mq, agent.workerId, { execution_id: id, action_ref: 'respack.record', config: { s } });
  return ids;
}

/**
 * This test's messages about execution `id`. The broker is shared and other test files' databases
 * reuse the same execution ids, so messages are also matched on this test's action ref.
 */
const messagesFor = (id: number) => collector.forExecution(id).filter((m) => m.json?.payload?.action_ref === 'respack.record');
const completions = (id: number) => messagesFor(id).filter((m) => m.routingKey === 'execution.completed');
const completedCount = (ids: number[]) => ids.filter((id) => completions(id).length > 0).length;

function starts(): Map<number, number> {
  const counts = new Map<number, number>();
  if (!existsSync(recordFile)) return counts;
  for (const line of readFileSync(recordFile, 'utf8').split('\n').filter(Boolean)) counts.set(Number(line), (counts.get(Number(line)) ?? 0) + 1);
  return counts;
}

/** Live (non-zombie) processes started for respack.record by either agent. */
function actionProcesses(): number[] {
  const found: number[] = [];
  for (const pid of readdirSync('/proc').filter((e) => /^\d+$/.test(e))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      if (/^[ZX]$/.test(stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3))) continue;
      // This run's actions only (other runs of this file on the machine use the same action ref):
      // their ATTUNE_ARTIFACTS_DIR lies under this run's work directory.
      const environ = readFileSync(`/proc/${pid}/environ`, 'utf8');
      if (environ.includes('ATTUNE_ACTION=respack.record') && environ.includes(`ATTUNE_ARTIFACTS_DIR=${work}/`)) found.push(Number(pid));
    } catch {
      /* gone, or not ours to read */
    }
  }
  return found;
}

/**
 * Every execution: row `completed`, the action started exactly once, exactly one ExecutionCompleted
 * and status messages running → completed (in that order). Duplicates the broker may see when a
 * publish was in flight at the cut carry the SAME message id (at-least-once republish); they are
 * counted and reported, and there must be none of anything else.
 */
/**
 * Every message the agent published before now has arrived: one more execution's completion, which
 * its outbox sends after anything still waiting there (one channel, in order). Late duplicates of
 * earlier messages would have arrived before it.
 */
async function publishedSoFar(agent: Agent): Promise<void> {
  const [marker] = await dispatch(agent, 1, 0);
  await waitFor('a later completion (the outbox is through)', () => completions(marker).length === 1, { timeoutMs: 20_000 });
}

async function assertExactlyOnce(ids: number[], label: string): Promise<{ republished: number }> {
  const rows = (await db.pool.query<{ id: number; status: string }>('SELECT id, status::text AS status FROM execution WHERE id = ANY($1)', [ids])).rows;
  const notDone = rows.filter((r) => r.status !== 'completed');
  assert.deepEqual(notDone, [], `${label}: every row completed`);
  const started = starts();
  const wrongStarts = ids.filter((id) => started.get(id) !== 1).map((id) => ({ id, starts: started.get(id) ?? 0 }));
  assert.deepEqual(wrongStarts, [], `${label}: every action started exactly once`);
  let republished = 0;
  for (const id of ids) {
    const msgs = messagesFor(id);
    const unique = new Map(msgs.map((m) => [m.properties.messageId as string, m]));
    republished += msgs.length - unique.size;
    const done = [...unique.values()].filter((m) => m.routingKey === 'execution.completed');
    assert.equal(done.length, 1, `${label}: exactly one ExecutionCompleted for execution ${id}`);
    assert.equal(done[0].json!.payload!.status, 'Completed');
    const statuses = [...unique.values()].filter((m) => m.routingKey === 'execution.status.changed').map((m) => m.json!.payload!.new_status);
    assert.deepEqual(statuses, ['running', 'completed'], `${label}: status messages of execution ${id}, in order`);
  }
  return { republished };
}

describe('broker outages in the middle of a burst', () => {
  test('proxy cut for 3 s during 100 executions: each runs once, one terminal row, one completion', async () => {
    const ids = await dispatch(A, 100);
    await waitFor('a quarter of the executions completed', () => completedCount(ids) >= 25, { timeoutMs: 30_000 });
    const before = completedCount(ids);
    const cutAt = new Date();
    await A.mqProxy.outage(3000);
    const upAt = new Date();
    // A second, shorter cut once work flows again: recovery must work more than once.
    await waitFor('work flowing again after the first cut', () => completedCount(ids) >= Math.min(before + 25, 90), { timeoutMs: 30_000 });
    await A.mqProxy.outage(1000);
    await waitFor('all 100 ExecutionCompleted messages', () => completedCount(ids) === 100, { timeoutMs: 60_000 });
    await publishedSoFar(A);
    const { republished } = await assertExactlyOnce(ids, 'proxy outage');
    // Actions that finished while the broker was away: their messages waited in the outbox.
    const finishedDuringCut = (await db.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM execution WHERE id = ANY($1) AND status = 'completed' AND updated > $2 AND updated < $3`, [ids, cutAt, upAt])).rows[0].n;
    assert.ok(finishedDuringCut > 0, 'some actions finished during the cut (their results were published after it)');
    assert.ok(before < 100, 'the outage happened in the middle of the burst');
    assert.ok(A.proc.logs.some((l) => /lost the RabbitMQ connection/.test(String(l.msg))), 'the loss was noticed');
    assert.ok(A.proc.logs.filter((l) => l.msg === 'reconnected to RabbitMQ').length >= 2, 'the agent reconnected after each cut');
    assert.ok(A.mqProxy.refused > 0, 'reconnect attempts were refused while the broker was away');
    const dups = A.proc.logs.filter((l) => /duplicate/.test(String(l.msg)) && ids.includes(Number(l.execution_id))).length;
    const lostAcks = A.proc.logs.filter((l) => /cannot ack a message .* its channel is gone/.test(String(l.msg))).length;
    console.log(`# proxy outage: ${before}/100 completed before the first cut, ${finishedDuringCut} finished during it; ${lostAcks} acks lost with the channel, ${dups} redelivered dispatches recognised as duplicates, ${republished} completion/status messages republished (same message id)`);
  });

  test('rabbitmqctl close_connection of the agent\'s connection during 30 executions', async () => {
    const ids = await dispatch(A, 30, 0.3);
    await waitFor('some executions completed', () => completedCount(ids) >= 5, { timeoutMs: 30_000 });
    const reconnectsBefore = A.proc.logs.filter((l) => l.msg === 'reconnected to RabbitMQ').length;
    const { stdout } = await run('rabbitmqctl', ['list_connections', 'pid', 'client_properties', '-q', '--no-table-headers']);
    const line = stdout.split('\n').find((l) => l.includes(`attune-agent ${A.name}`));
    assert.ok(line, `the agent's connection is listed by rabbitmqctl (connection_name "attune-agent ${A.name}")`);
    await run('rabbitmqctl', ['close_connection', line.split('\t')[0], 'resilience test']);
    await waitFor('the reconnect', () => A.proc.logs.filter((l) => l.msg === 'reconnected to RabbitMQ').length > reconnectsBefore, { timeoutMs: 30_000 });
    await waitFor('all 30 ExecutionCompleted messages', () => completedCount(ids) === 30, { timeoutMs: 60_000 });
    await publishedSoFar(A);
    await assertExactlyOnce(ids, 'close_connection');
  });
});

describe('database outages', () => {
  const lastBeat = async (a: Agent): Promise<number> =>
    ((await db.pool.query<{ t: Date }>('SELECT last_heartbeat AS t FROM worker WHERE id = $1', [a.workerId])).rows[0].t).getTime();

  test('outage shorter than db_retry_window: heartbeats resume, the result is written, a dispatch sent meanwhile runs', async () => {
    const [running] = await dispatch(A, 1, 2.5);
    await waitFor('the action process started', () => starts().get(running) === 1, { timeoutMs: 15_000 });
    A.dbProxy.goDown();
    const cutAt = Date.now();
    // Attune's executor dispatches more while the agent's database link is down.
    const [meanwhile] = await dispatch(A, 1, 0.1);
    await waitFor('the agent notices the outage', () => A.proc.logs.some((l) => /heartbeat failed/.test(String(l.msg))), { timeoutMs: 10_000 });
    await waitFor('the action to finish during the outage', () => Date.now() - cutAt > 3500, { timeoutMs: 10_000 });
    const beatDuringOutage = await lastBeat(A);
    assert.ok(beatDuringOutage <= cutAt + 50, 'no heartbeat reached the database during the outage');
    assert.equal((await db.pool.query(`SELECT status FROM execution WHERE id = $1`, [meanwhile])).rows[0].status, 'scheduled', 'the dispatch sent during the outage waits');
    A.dbProxy.up();
    const upAt = Date.now();
    await waitFor('heartbeats resume', async () => (await lastBeat(A)) > upAt - 50, { timeoutMs: 10_000 });
    await waitFor('both executions complete', () => completions(running).length === 1 && completions(meanwhile).length === 1, { timeoutMs: 20_000 });
    await assertExactlyOnce([running, meanwhile], 'db outage');
    assert.ok(A.proc.logs.some((l) => l.msg === 'heartbeat recovered: database reachable again'));
    assert.ok(A.proc.logs.some((l) => /database back/.test(String(l.msg))), 'the result write was retried until the database came back');
    await waitFor('two more heartbeats', async () => (await lastBeat(A)) > upAt + 1000, { timeoutMs: 10_000 });
  });

  test('the answer to the running claim is lost in a cut: the claim is kept, the execution runs once', async () => {
    let armed = true;
    A.dbProxy.onClientData = (chunk, conn) => {
      // The claim is a named statement: its name is in every Bind (the SQL only in the first Parse).
      if (!armed || !chunk.includes('attune-agent.claim-with-context')) return;
      armed = false;
      conn.dropResponses(); // PostgreSQL commits the claim; the agent never sees the reply
      setTimeout(() => A.dbProxy.goDown(1000), 300);
    };
    try {
      const [id] = await dispatch(A, 1, 0.1);
      await waitFor('the execution completes', () => completions(id).length === 1, { timeoutMs: 20_000 });
      assert.equal(armed, false, 'the claim went through the proxy');
      await assertExactlyOnce([id], 'lost claim answer');
      assert.ok(A.proc.logs.some((l) => l.execution_id === id && /running claim committed before the database connection was lost/.test(String(l.msg))));
    } finally {
      A.dbProxy.onClientData = null;
      A.dbProxy.up();
    }
  });

  test('outage longer than db_retry_window: the result is spooled and written when the database returns, dispatches are not lost, the agent keeps serving', async () => {
    const [lost] = await dispatch(B, 1, 1);
    await waitFor('the action process started', () => starts().get(lost) === 1, { timeoutMs: 15_000 });
    B.dbProxy.goDown();
    const entry = await B.proc.waitForLog('the result to be spooled', (l) => l.execution_id === lost && /RESULT SPOOLED/.test(String(l.msg)), { timeoutMs: 15_000 });
    assert.equal(entry.level, 'error');
    assert.equal(completions(lost).length, 0, 'no completion for a result that is not in the database yet');
    const [heldBack] = await dispatch(B, 1, 0.1);
    await B.proc.waitForLog('the dispatch to be held back', (l) => l.execution_id === heldBack && /database unreachable/.test(String(l.msg)), { timeoutMs: 10_000 });
    // After the window (db_retry_window) the held dispatch goes back to the queue: not acked, not dropped.
    await B.proc.waitForLog('the held dispatch to go back to the queue', (l) => l.execution_id === heldBack && /handed back to the queue \(nack, requeue\)/.test(String(l.msg)), { timeoutMs: 10_000 });
    B.dbProxy.up();
    const [after] = await dispatch(B, 1, 0.1);
    await waitFor('the spooled, the held-back and the new execution complete', () => [lost, heldBack, after].every((id) => completions(id).length === 1), { timeoutMs: 30_000 });
    await assertExactlyOnce([lost, heldBack, after], 'after a long db outage');
    assert.equal(B.proc.child.exitCode, null, 'the agent is still running');
    assert.ok(B.proc.logs.some((l) => l.execution_id === lost && /result spool: the completed result of execution \d+ kept since .* is written/.test(String(l.msg))), 'written from the spool');
    assert.deepEqual(actionProcesses(), [], 'no action process left behind by the outages');
  });
});
