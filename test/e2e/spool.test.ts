/**
 * Nothing lost, nothing stuck (issue 15), end to end: the BUILT agent against real PostgreSQL and
 * RabbitMQ, the database cut through a TCP proxy (test/helpers/proxy.ts; the servers are shared).
 *
 * (a) The database unreachable for 3 × db_retry_window while 50 dispatches arrive: dispatches are
 *     acked only after their claim commits (requeued meanwhile, never dead-lettered), results that
 *     the database does not take are spooled and written when it returns; each action runs once.
 * (b) The database down when 21 runs finish: their results go to the spool on the artifacts volume;
 *     the agent is SIGKILLed; a NEW agent with another worker name on the same volume writes them,
 *     each once, and leaves the row an operator finished meanwhile as the operator set it.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Channel, ChannelModel } from 'amqplib';
import { createTestDatabase, type TestDatabase } from '../helpers/pg.ts';
import { AMQP_URL, collectExecutionMessages, connectTest, publishExecutionRequested, type Collector } from '../helpers/amqp.ts';
import { TcpProxy } from '../helpers/proxy.ts';
import { createExecution, insertAction, seedCoreRuntimes, startAgent, type AgentProcess, separateIds, consumingWorkerId } from '../harness/platform.ts';
import { waitFor } from '../helpers/wait.ts';

const WINDOW_S = 2;
const ACTION = 'spoolpack.record';

let db: TestDatabase;
let mq: ChannelModel;
let collector: Collector;
let dlxChannel: Channel;
const deadLettered: number[] = [];
let work: string;
let recordFile: string;
const agents: Agent[] = [];
const proxies: TcpProxy[] = [];

interface Agent {
  name: string;
  proc: AgentProcess;
  workerId: number;
  dbProxy: TcpProxy;
}

async function launch(name: string, artifactsDir: string, maxConcurrent: number): Promise<Agent> {
  const dbUrl = new URL(db.url);
  const dbProxy = await TcpProxy.start(Number(dbUrl.port || 5432), dbUrl.hostname);
  proxies.push(dbProxy);
  const proc = startAgent({
    ATTUNE__DATABASE__URL: dbProxy.url(db.url),
    ATTUNE__DATABASE__SCHEMA: db.schema,
    ATTUNE__DATABASE__CONNECT_TIMEOUT: '5',
    ATTUNE__MESSAGE_QUEUE__URL: AMQP_URL,
    ATTUNE__PACKS_BASE_DIR: join(work, 'packs'),
    ATTUNE__ARTIFACTS_DIR: artifactsDir,
    ATTUNE__RUNTIME_ENVS_DIR: join(work, `envs-${name}`),
    ATTUNE__WORKER__MAX_CONCURRENT_TASKS: String(maxConcurrent),
    ATTUNE__WORKER__HEARTBEAT_INTERVAL: '1',
    ATTUNE__WORKER__DB_RETRY_WINDOW: String(WINDOW_S),
    ATTUNE__WORKER__KILL_GRACE_PERIOD: '1',
    ATTUNE__WORKER__SHUTDOWN_TIMEOUT: '5',
    ATTUNE__LOG__LEVEL: 'debug',
    ATTUNE_WORKER_RUNTIMES: 'shell',
    ATTUNE_WORKER_NAME: name,
  });
  const agent: Agent = { name, proc, workerId: 0, dbProxy };
  agents.push(agent);
  agent.workerId = await consumingWorkerId(proc, db.pool, name, { timeoutMs: 30_000 });
  return agent;
}

before(async () => {
  db = await createTestDatabase('e2e_spool');
  // Shared broker: worker and execution ids (queue names, payloads) must not collide with other files'.
  await separateIds(db.pool);
  const runtimeIds = await seedCoreRuntimes(db.pool);
  work = mkdtempSync(join(tmpdir(), 'attune-e2e-spool-'));
  recordFile = join(work, 'started.log');
  const actions = join(work, 'packs', 'spoolpack', 'actions');
  mkdirSync(actions, { recursive: true });
  // Each start appends the execution id (the marker a second run would leave).
  writeFileSync(join(actions, 'record.sh'), `#!/bin/bash\neval "$(cat)"\necho "$ATTUNE_EXEC_ID" >> ${JSON.stringify(recordFile)}\nsleep "\${s:-0.2}"\necho "done $ATTUNE_EXEC_ID"\n`);
  chmodSync(join(actions, 'record.sh'), 0o755);
  await insertAction(db.pool, 'spoolpack', { ref: ACTION, entrypoint: 'record.sh', runtime: 'shell', parameter_format: 'dotenv' }, runtimeIds);
  mq = await connectTest('e2e-spool');
  collector = await collectExecutionMessages(mq);
  // Dead-lettered dispatches keep their routing key (execution.dispatch.worker.{id}); the test binds per agent.
  dlxChannel = await mq.createChannel();
});

after(async () => {
  for (const a of agents) {
    const errors = [...new Set(a.proc.logs.filter((l) => l.level === 'error' || l.level === 'fatal').map((l) => String(l.msg).slice(0, 100)))];
    console.log(`# ${a.name}: ${errors.length} distinct error lines${errors.length ? `: ${errors.join(' | ')}` : ''}`);
    a.dbProxy.up();
    await a.proc.stop('SIGTERM');
  }
  for (const p of proxies) await p.close();
  await dlxChannel?.close().catch(() => undefined);
  await collector?.close();
  await mq?.close();
  await db?.drop();
  if (work) rmSync(work, { recursive: true, force: true });
});

async function watchDeadLetters(workerId: number): Promise<void> {
  const { queue } = await dlxChannel.assertQueue('', { exclusive: true, autoDelete: true, durable: false });
  await dlxChannel.bindQueue(queue, 'attune.dlx', `execution.dispatch.worker.${workerId}`);
  await dlxChannel.consume(queue, (m) => {
    if (!m) return;
    try {
      deadLettered.push(Number(JSON.parse(m.content.toString('utf8')).payload.execution_id));
    } catch {
      deadLettered.push(-1);
    }
  }, { noAck: true });
}

async function create(agent: Agent, n: number, s: number): Promise<number[]> {
  const ids: number[] = [];
  for (let i = 0; i < n; i++) ids.push(await createExecution(db.pool, { actionRef: ACTION, workerId: agent.workerId, config: { s } }));
  return ids;
}

async function dispatch(agent: Agent, ids: number[], s: number): Promise<void> {
  for (const id of ids) await publishExecutionRequested(mq, agent.workerId, { execution_id: id, action_ref: ACTION, config: { s } });
}

const completions = (id: number) => collector.forExecution(id).filter((m) => m.routingKey === 'execution.completed' && m.json?.payload?.action_ref === ACTION);
/** Completions counted once per message id (a broker republish keeps the id). */
const uniqueCompletions = (id: number) => new Set(completions(id).map((m) => m.properties.messageId)).size;

function starts(): Map<number, number> {
  const counts = new Map<number, number>();
  if (!existsSync(recordFile)) return counts;
  for (const line of readFileSync(recordFile, 'utf8').split('\n').filter(Boolean)) counts.set(Number(line), (counts.get(Number(line)) ?? 0) + 1);
  return counts;
}

async function rows(ids: number[]): Promise<Map<number, { status: string; result: Record<string, unknown> | null }>> {
  const r = await db.pool.query<{ id: string; status: string; result: Record<string, unknown> | null }>('SELECT id, status::text AS status, result FROM execution WHERE id = ANY($1)', [ids]);
  return new Map(r.rows.map((x) => [Number(x.id), { status: x.status, result: x.result }]));
}

const TERMINAL = new Set(['completed', 'failed', 'timeout', 'cancelled', 'abandoned']);

test('(a) database unreachable for 3 × db_retry_window during 50 dispatches: all 50 terminal afterwards, none run twice, none dead-lettered', async () => {
  const a = await launch(`e2e-spool-a-${process.pid}`, join(work, 'artifacts-a'), 8);
  await watchDeadLetters(a.workerId);
  const ids = await create(a, 50, 0.3);
  await dispatch(a, ids, 0.3);
  await waitFor('some actions started', () => ids.filter((id) => starts().has(id)).length >= 6, { timeoutMs: 20_000 });
  const startedBefore = ids.filter((id) => starts().has(id)).length;
  a.dbProxy.goDown();
  const cutAt = Date.now();
  const logsOf = (re: RegExp) => a.proc.logs.filter((l) => ids.includes(Number(l.execution_id)) && re.test(String(l.msg)));
  // The outage lasts 3 × the window, and long enough that results were spooled and dispatches requeued in it.
  await waitFor('3 × db_retry_window with spooled results and requeued dispatches', () =>
    Date.now() - cutAt >= 3 * WINDOW_S * 1000 && logsOf(/RESULT SPOOLED/).length > 0 && logsOf(/handed back to the queue \(nack, requeue\)/).length > 0,
  { timeoutMs: 60_000 });
  const outageMs = Date.now() - cutAt;
  const spooled = logsOf(/RESULT SPOOLED/).length;
  const requeued = logsOf(/handed back to the queue \(nack, requeue\)/).length;
  a.dbProxy.up();
  const upAt = Date.now();
  await waitFor('all 50 rows terminal', async () => [...(await rows(ids)).values()].every((r) => TERMINAL.has(r.status)), { timeoutMs: 90_000 });
  const recoverMs = Date.now() - upAt;
  await waitFor('one completion per execution', () => ids.every((id) => uniqueCompletions(id) === 1), { timeoutMs: 30_000 }).catch((e: Error) => {
    const odd = ids.filter((id) => uniqueCompletions(id) !== 1).map((id) => ({ id, completions: uniqueCompletions(id), starts: starts().get(id) ?? 0, logs: a.proc.logs.filter((l) => Number(l.execution_id) === id).map((l) => String(l.msg).slice(0, 90)) }));
    throw new Error(`${e.message}: ${JSON.stringify(odd)}`);
  });
  const final = await rows(ids);
  const notCompleted = ids.filter((id) => final.get(id)!.status !== 'completed').map((id) => ({ id, ...final.get(id) }));
  assert.deepEqual(notCompleted, [], 'every row completed with its real result');
  const started = starts();
  const wrongStarts = ids.filter((id) => started.get(id) !== 1).map((id) => ({ id, starts: started.get(id) ?? 0 }));
  assert.deepEqual(wrongStarts, [], 'every action started exactly once');
  for (const id of ids) assert.match(String(final.get(id)!.result?.stdout), new RegExp(`done ${id}`));
  const extraCompletions = ids.reduce((n, id) => n + uniqueCompletions(id) - 1, 0);
  assert.equal(extraCompletions, 0);
  assert.deepEqual(deadLettered.filter((id) => ids.includes(id)), [], 'no dispatch dead-lettered');
  assert.ok(spooled > 0 && requeued > 0, 'the outage was long enough to spool results and requeue dispatches');
  assert.deepEqual(readdirSync(join(work, 'artifacts-a', '.attune-agent-spool')).filter((f) => f.startsWith('execution-')), [], 'the spool drained');
  console.log(`# spool (a): 50 dispatches, ${startedBefore} started before the cut, db down ${outageMs} ms (window ${WINDOW_S} s); ${spooled} results spooled, ${requeued} dispatch requeues; `
    + `50/50 terminal rows ${recoverMs} ms after the database returned; 0 duplicate runs, ${extraCompletions} duplicate completions, ${deadLettered.filter((id) => ids.includes(id)).length} dead-lettered`);
});

test('(b) database down when 21 runs finish, agent SIGKILLed, a new agent (other name, same volume) writes the spooled results once, never over a newer status', async () => {
  const volume = join(work, 'artifacts-shared');
  const b1 = await launch(`e2e-spool-b1-${process.pid}`, volume, 24);
  const ids = await create(b1, 21, 1.5);
  await dispatch(b1, ids, 1.5);
  await waitFor('all 21 actions running', async () => ids.every((id) => starts().get(id) === 1) && [...(await rows(ids)).values()].every((r) => r.status === 'running'), { timeoutMs: 30_000 });
  b1.dbProxy.goDown();
  await waitFor('21 results spooled', () => b1.proc.logs.filter((l) => ids.includes(Number(l.execution_id)) && /RESULT SPOOLED/.test(String(l.msg))).length === 21, { timeoutMs: 30_000 });
  const spoolDir = join(volume, '.attune-agent-spool');
  const files = readdirSync(spoolDir).filter((f) => /^execution-\d+\.json$/.test(f));
  assert.equal(files.length, 21);
  assert.equal(statSync(spoolDir).mode & 0o777, 0o700);
  for (const f of files) assert.equal(statSync(join(spoolDir, f)).mode & 0o777, 0o600);
  b1.proc.child.kill('SIGKILL');
  const killed = await b1.proc.exited;
  assert.equal(killed.signal, 'SIGKILL');
  assert.equal((await rows(ids)).get(ids[0])!.status, 'running', 'the rows were not written before the kill');
  // Meanwhile an operator finishes one of them by hand: that newer status must stay.
  const byHand = ids[5];
  await db.pool.query(`UPDATE execution SET status = 'cancelled', result = '{"by":"operator"}'::jsonb, updated = now() WHERE id = $1`, [byHand]);
  const startAt = Date.now();
  const b2 = await launch(`e2e-spool-b2-${process.pid}`, volume, 4);
  const written = ids.filter((id) => id !== byHand);
  await waitFor('20 rows completed from the spool', async () => {
    const r = await rows(written);
    return written.every((id) => r.get(id)!.status === 'completed');
  }, { timeoutMs: 30_000 });
  const recoverMs = Date.now() - startAt;
  await waitFor('20 completions', () => written.every((id) => uniqueCompletions(id) === 1), { timeoutMs: 20_000 });
  await b2.proc.waitForLog('the dropped spool file', (l) => Number(l.execution_id) === byHand && /already cancelled; its kept completed result is dropped/.test(String(l.msg)));
  const final = await rows(ids);
  for (const id of written) assert.match(String(final.get(id)!.result?.stdout), new RegExp(`done ${id}`), `execution ${id} has its real result`);
  assert.deepEqual(final.get(byHand), { status: 'cancelled', result: { by: 'operator' } }, 'the row finished by hand keeps what the operator set');
  assert.equal(completions(byHand).length, 0, 'no completion for the row the spool did not write');
  assert.deepEqual(readdirSync(spoolDir).filter((f) => f.startsWith('execution-')), [], 'the spool drained');
  const started = starts();
  assert.deepEqual(ids.filter((id) => started.get(id) !== 1), [], 'each action ran once');
  const dupCompletions = written.reduce((n, id) => n + uniqueCompletions(id) - 1, 0);
  assert.equal(dupCompletions, 0);
  const replayLines = b2.proc.logs.filter((l) => /result spool: the completed result of execution \d+ kept since .* is written/.test(String(l.msg)));
  assert.equal(replayLines.length, 20, 'the new agent wrote 20 results');
  assert.ok(replayLines.every((l) => l.spooled_by === b1.name), 'kept by the killed agent');
  console.log(`# spool (b): 21 runs finished with the database down, 21 spooled, agent SIGKILLed; new agent ${b2.name}: 20 rows written from the spool `
    + `(${dupCompletions} duplicate completions, 20 completions), 1 row finished by hand kept as set (spool file dropped); ${recoverMs} ms from the new agent's start to 20 terminal rows`);
});
