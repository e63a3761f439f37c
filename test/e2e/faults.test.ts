/**
 * Faults that used to leave a run stuck or a message lost, end to end: the BUILT agent
 * (dist/attune-agent) against the real PostgreSQL and RabbitMQ, windows shortened through its
 * configuration (lock_timeout 1 s, log_lock_timeout 1 s, one permit so a stuck run would block the
 * next one). Another session holds the locks (as Attune's API or an operator's psql would); the
 * broker's max_message_size is lowered to RabbitMQ 4's 16 MiB for the oversized-output case (and
 * restored: other test files share the broker).
 *
 * Each test prints its figures (`# fault …`): dispatches, terminal rows, duplicates, time to recover.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { ChannelModel } from 'amqplib';
import pg from 'pg';
import pino from 'pino';
import { createTestDatabase, type TestDatabase } from '../helpers/pg.ts';
import { AMQP_URL, collectExecutionMessages, connectTest, publishExecutionRequested, type Collector } from '../helpers/amqp.ts';
import { createExecution, seedCoreRuntimes, startAgent, type AgentProcess, separateIds, consumingWorkerId } from '../harness/platform.ts';
import { waitFor } from '../helpers/wait.ts';
import { MqConnection } from '../../src/mq/connection.ts';
import { ConfirmPublisher, PublishError } from '../../src/mq/publisher.ts';
import { assertCommonTopology } from '../../src/mq/topology.ts';
import { encodeEnvelope } from '../../src/protocol/envelope.ts';
import { DEFAULT_MAX_MESSAGE_BYTES } from '../../src/protocol/message-size.ts';

const run = promisify(execFile);
const MiB = 1024 * 1024;
/** The agent's bounds in this file. */
const LOCK_TIMEOUT_S = 1;
const LOG_LOCK_TIMEOUT_S = 1;
/** 3 attempts of lock_timeout + 0.25 + 0.5 s between them (db/errors.ts CONTENTION_ATTEMPTS). */
const CONTENTION_BOUND_MS = 3 * LOCK_TIMEOUT_S * 1000 + 750;

let db: TestDatabase;
let mq: ChannelModel;
let collector: Collector;
let work: string;
let recordFile: string;
let agent: { name: string; proc: AgentProcess; workerId: number; artifacts: string };
const others: pg.Client[] = [];

async function launch(name: string): Promise<typeof agent> {
  const artifacts = join(work, `artifacts-${name}`);
  const proc = startAgent({
    ATTUNE__DATABASE__URL: db.url,
    ATTUNE__DATABASE__SCHEMA: db.schema,
    ATTUNE__DATABASE__CONNECT_TIMEOUT: '5',
    ATTUNE__DATABASE__LOCK_TIMEOUT: String(LOCK_TIMEOUT_S),
    ATTUNE__DATABASE__STATEMENT_TIMEOUT: '5',
    ATTUNE__DATABASE__LOG_LOCK_TIMEOUT: String(LOG_LOCK_TIMEOUT_S),
    ATTUNE__MESSAGE_QUEUE__URL: AMQP_URL,
    ATTUNE__PACKS_BASE_DIR: join(work, 'packs'),
    ATTUNE__ARTIFACTS_DIR: artifacts,
    ATTUNE__RUNTIME_ENVS_DIR: join(work, `envs-${name}`),
    ATTUNE__WORKER__MAX_CONCURRENT_TASKS: '1',
    ATTUNE__WORKER__HEARTBEAT_INTERVAL: '1',
    ATTUNE__WORKER__KILL_GRACE_PERIOD: '1',
    ATTUNE__WORKER__SHUTDOWN_TIMEOUT: '5',
    ATTUNE__LOG__LEVEL: 'debug',
    ATTUNE_WORKER_RUNTIMES: 'shell',
    ATTUNE_WORKER_NAME: name,
  });
  const workerId = await consumingWorkerId(proc, db.pool, name, { timeoutMs: 30_000 });
  return { name, proc, workerId, artifacts };
}

before(async () => {
  db = await createTestDatabase('e2e_faults');
  // Shared broker: other files' databases reuse ids from 1; queue names and payload ids must not collide.
  await separateIds(db.pool);
  await seedRows();
  work = mkdtempSync(join(tmpdir(), 'attune-e2e-faults-'));
  recordFile = join(work, 'started.log');
  const actions = join(work, 'packs', 'faults', 'actions');
  mkdirSync(actions, { recursive: true });
  // Each start appends its execution id (a second run of one execution shows up as a duplicate).
  writeFileSync(join(actions, 'quick.sh'), `#!/bin/bash\neval "$(cat)"\necho "$ATTUNE_EXEC_ID" >> ${JSON.stringify(recordFile)}\nsleep "\${s:-0}"\necho "out $ATTUNE_EXEC_ID"\necho "err $ATTUNE_EXEC_ID" >&2\n`);
  writeFileSync(join(actions, 'ctrl.sh'), `#!/bin/bash\necho "$ATTUNE_EXEC_ID" >> ${JSON.stringify(recordFile)}\nhead -c ${10 * MiB} /dev/zero | tr '\\0' '\\1'\n`);
  for (const f of ['quick.sh', 'ctrl.sh']) chmodSync(join(actions, f), 0o755);
  mq = await connectTest('e2e-faults');
  collector = await collectExecutionMessages(mq);
  agent = await launch(`e2e-faults-${process.pid}-${Date.now() % 100000}`);
});

/**
 * The shell runtime, the pack and the two actions, as Attune's pack loader leaves them. Plain
 * INSERTs: the dev schema mirrors Attune's, where these refs carry no unique constraint to
 * upsert on.
 */
async function seedRows(): Promise<void> {
  await seedCoreRuntimes(db.pool); // Attune's real core catalog (test/fixtures/catalog)
  await db.pool.query(`INSERT INTO pack (ref, label, version) VALUES ('faults', 'Faults', '1.0.0')`);
  for (const [ref, entrypoint, format] of [['faults.quick', 'quick.sh', 'dotenv'], ['faults.ctrl', 'ctrl.sh', 'json']]) {
    await db.pool.query(`INSERT INTO action (ref, pack, pack_ref, label, entrypoint, runtime, parameter_delivery, parameter_format, output_format, is_adhoc)
      VALUES ($1, (SELECT id FROM pack WHERE ref = 'faults'), 'faults', $1, $2, (SELECT id FROM runtime WHERE ref = 'core.shell'), 'stdin', $3, 'text', false)`,
    [ref, entrypoint, format]);
  }
}

after(async () => {
  for (const c of others) await c.end().catch(() => undefined);
  const exit = agent ? await agent.proc.stop('SIGTERM') : null;
  await collector?.close();
  await mq?.close();
  await db?.drop();
  if (work) rmSync(work, { recursive: true, force: true });
  if (exit) assert.equal(exit.code, 0, 'the agent stops cleanly');
});

/** Another session holding locks, as Attune's API or an operator would. */
async function otherSession(): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: db.url });
  await c.connect();
  await c.query(`SET search_path TO ${db.schema}`);
  others.push(c);
  return c;
}

async function create(actionRef: string, config: Record<string, unknown> = {}): Promise<number> {
  return createExecution(db.pool, { actionRef, workerId: agent.workerId, config });
}

async function dispatchExisting(ids: number[], actionRef = 'faults.quick'): Promise<void> {
  for (const id of ids) await publishExecutionRequested(mq, agent.workerId, { execution_id: id, action_ref: actionRef });
}

async function status(id: number): Promise<string> {
  return (await db.pool.query('SELECT status::text AS s FROM execution WHERE id = $1', [id])).rows[0].s;
}

const TERMINAL = new Set(['completed', 'failed', 'timeout', 'cancelled']);
const isTerminal = async (id: number) => TERMINAL.has(await status(id));

function starts(): Map<number, number> {
  const counts = new Map<number, number>();
  if (!existsSync(recordFile)) return counts;
  for (const line of readFileSync(recordFile, 'utf8').split('\n').filter(Boolean)) counts.set(Number(line), (counts.get(Number(line)) ?? 0) + 1);
  return counts;
}

const completions = (id: number) => collector.forExecution(id).filter((m) => m.routingKey === 'execution.completed' && String(m.json?.payload?.action_ref).startsWith('faults.'));
const logsOf = (id: number, re: RegExp) => agent.proc.logs.filter((l) => Number(l.execution_id) === id && re.test(String(l.msg)));

/** How many of `ids` started more than once, and how many completions beyond one each carry distinct message ids. */
function duplicates(ids: number[]): { runs: number; completions: number } {
  const s = starts();
  return {
    runs: ids.filter((id) => (s.get(id) ?? 0) > 1).length,
    completions: ids.reduce((n, id) => n + Math.max(0, new Set(completions(id).map((m) => m.properties.messageId)).size - 1), 0),
  };
}

test('Attune\'s advisory lock held past log_lock_timeout: every run still ends in a terminal row within the bound, logs in plain files', async () => {
  // A first run creates the action's log artifacts (and tells us the artifact id to lock).
  const first = await create('faults.quick');
  await dispatchExisting([first]);
  await waitFor('the first run', () => isTerminal(first), { timeoutMs: 20_000 });
  const artifactId = String((await db.pool.query(`SELECT id FROM artifact WHERE ref = 'faults.quick.stdout.log'`)).rows[0].id);
  const attune = await otherSession();
  await attune.query(`SELECT pg_advisory_lock(hashtext('artifact_version'), hashtext($1))`, [artifactId]);
  const ids = [await create('faults.quick'), await create('faults.quick'), await create('faults.quick')];
  const sent = Date.now();
  await dispatchExisting(ids);
  const endedAt = new Map<number, number>();
  await waitFor('three terminal rows while the lock is held', async () => {
    for (const id of ids) if (!endedAt.has(id) && (await isTerminal(id))) endedAt.set(id, Date.now() - sent);
    return endedAt.size === ids.length;
  }, { timeoutMs: 30_000 });
  // One permit: the runs go one after another, each waiting at most log_lock_timeout for the lock.
  const bound = ids.length * (LOG_LOCK_TIMEOUT_S * 1000 + 2500);
  for (const id of ids) {
    assert.equal(await status(id), 'completed');
    assert.ok(endedAt.get(id)! < bound, `execution ${id} ended after ${endedAt.get(id)} ms (bound ${bound} ms)`);
    assert.equal(readFileSync(join(agent.artifacts, `execution_${id}`, 'stdout.log'), 'utf8'), `out ${id}\n`, 'stdout in the plain file');
    assert.equal(readFileSync(join(agent.artifacts, `execution_${id}`, 'stderr.log'), 'utf8'), `err ${id}\n`);
    assert.equal(logsOf(id, /cannot allocate the log artifacts of this execution: its logs go to execution_\{id\}/).length, 1, 'the fallback is logged');
    await waitFor(`the completion of ${id}`, () => completions(id).length >= 1);
  }
  assert.equal(Number((await db.pool.query('SELECT count(*) FROM artifact_version WHERE execution = ANY($1)', [ids])).rows[0].count), 0, 'no version row left behind');
  await attune.query('SELECT pg_advisory_unlock_all()');
  // Once the lock is gone, runs get their artifact versions again.
  const next = await create('faults.quick');
  const releasedAt = Date.now();
  await dispatchExisting([next]);
  await waitFor('the run after the lock is gone', () => isTerminal(next), { timeoutMs: 20_000 });
  const recovered = Date.now() - releasedAt;
  assert.equal(Number((await db.pool.query('SELECT count(*) FROM artifact_version WHERE execution = $1', [next])).rows[0].count), 2);
  const dups = duplicates([first, ...ids, next]);
  assert.deepEqual(dups, { runs: 0, completions: 0 });
  console.log(`# fault advisory lock held: ${ids.length} dispatches, ${ids.length} terminal rows (completed, logs in execution_{id}/), `
    + `${dups.runs} duplicate runs, ${dups.completions} duplicate completions; run times ${ids.map((id) => endedAt.get(id)).join('/')} ms from dispatch (bound ${bound} ms); `
    + `first run with artifact logs after release: ${recovered} ms`);
});

test('the execution row locked by another session at the claim, released within the bound: the claim is retried and the run completes', async () => {
  const id = await create('faults.quick');
  const other = await otherSession();
  await other.query('BEGIN');
  await other.query('SELECT id FROM execution WHERE id = $1 FOR UPDATE', [id]);
  await dispatchExisting([id]);
  await agent.proc.waitForLog('a claim retry', (l) => Number(l.execution_id) === id && /lock or statement timeout: retrying claim execution/.test(String(l.msg)), { timeoutMs: 10_000 });
  await other.query('ROLLBACK');
  const releasedAt = Date.now();
  await waitFor('the run', () => isTerminal(id), { timeoutMs: 15_000 });
  const recovered = Date.now() - releasedAt;
  assert.equal(await status(id), 'completed');
  assert.equal(starts().get(id), 1);
  await waitFor('its completion', () => completions(id).length === 1);
  console.log(`# fault row lock at claim (released after one lock_timeout): 1 dispatch, 1 terminal row, 0 duplicates; terminal ${recovered} ms after the lock was released`);
});

test('the execution row locked past the bound during the run: the run gives up on its terminal write within the bound, spools the result and frees its permit; the spool writes it once the lock is gone', async () => {
  const stuck = await create('faults.quick', { s: 1 });
  const nextOne = await create('faults.quick');
  await dispatchExisting([stuck, nextOne]); // one permit: nextOne waits for stuck's
  await waitFor('the first run to be running', async () => (await status(stuck)) === 'running' && starts().get(stuck) === 1, { timeoutMs: 15_000 });
  const other = await otherSession();
  await other.query('BEGIN');
  await other.query('SELECT id FROM execution WHERE id = $1 FOR UPDATE', [stuck]);
  const lockedAt = Date.now();
  try {
    const gaveUp = await agent.proc.waitForLog('the terminal write to give up', (l) => Number(l.execution_id) === stuck && /giving up on write the completed result of execution \d+ after 3 attempts/.test(String(l.msg)), { timeoutMs: 20_000 });
    const gaveUpAfter = Date.now() - lockedAt;
    assert.match(String(gaveUp.err), /database\.lock_timeout \(1 s\) for a lock another session holds/);
    // Logged right after the give-up line (the next stdout chunk may not be read yet).
    await waitFor('the RESULT SPOOLED line', () => logsOf(stuck, /RESULT SPOOLED/).length === 1, { timeoutMs: 5_000 });
    assert.deepEqual(readdirSync(join(agent.artifacts, '.attune-agent-spool')).filter((f) => f === `execution-${stuck}.json`), [`execution-${stuck}.json`]);
    // The action takes ~1 s after the lock is taken; then at most the contention bound.
    assert.ok(gaveUpAfter < 1000 + CONTENTION_BOUND_MS + 2000, `gave up ${gaveUpAfter} ms after the lock was taken`);
    // The permit is free: the next dispatch runs and ends while the lock is still held.
    await waitFor('the next run, while the lock is still held', () => isTerminal(nextOne), { timeoutMs: 15_000 });
    const permitFreedAfter = Date.now() - lockedAt;
    assert.equal(await status(nextOne), 'completed');
    assert.equal(await status(stuck), 'running', 'the locked row could not be written');
    assert.equal(completions(stuck).length, 0, 'no completion before the row is written');
    await other.query('ROLLBACK');
    const releasedAt = Date.now();
    await waitFor('the spooled result written once the lock is gone', () => isTerminal(stuck), { timeoutMs: 15_000 });
    const writtenAfter = Date.now() - releasedAt;
    assert.equal(await status(stuck), 'completed');
    await waitFor('its completion', () => completions(stuck).length === 1);
    const dups = duplicates([stuck, nextOne]);
    assert.deepEqual(dups, { runs: 0, completions: 0 });
    console.log(`# fault row lock during the run (held > bound): 2 dispatches, 2 terminal rows (the locked one from the result spool, ${writtenAfter} ms after the lock went), `
      + `0 duplicates; gave up ${gaveUpAfter} ms after the lock (bound: action 1 s + ${CONTENTION_BOUND_MS} ms); next run ended ${permitFreedAfter} ms after the lock`);
  } finally {
    await other.query('ROLLBACK');
  }
});

test('the execution row locked past the bound at the claim: the claim gives up within the bound and requeues the dispatch, the next dispatch runs, the blocked one runs once the lock is gone', async () => {
  const blocked = await create('faults.quick');
  const nextOne = await create('faults.quick');
  const other = await otherSession();
  await other.query('BEGIN');
  await other.query('SELECT id FROM execution WHERE id = $1 FOR UPDATE', [blocked]);
  const sent = Date.now();
  try {
    await dispatchExisting([blocked, nextOne]);
    const gaveUp = await agent.proc.waitForLog('the claim to give up', (l) => Number(l.execution_id) === blocked && /giving up on claim execution \d+ after 3 attempts/.test(String(l.msg)), { timeoutMs: 20_000 });
    const gaveUpAfter = Date.now() - sent;
    assert.match(String(gaveUp.err), /lock_timeout/);
    assert.ok(gaveUpAfter < CONTENTION_BOUND_MS + 2000, `${gaveUpAfter} ms`);
    await agent.proc.waitForLog('the dispatch handed back', (l) => Number(l.execution_id) === blocked && /handed back to the queue \(nack, requeue\)/.test(String(l.msg)));
    await waitFor('the next run', () => isTerminal(nextOne), { timeoutMs: 15_000 });
    assert.equal(await status(nextOne), 'completed');
    assert.equal(starts().get(blocked), undefined, 'the blocked execution has not run while its row is locked');
    assert.equal(await status(blocked), 'scheduled');
    await other.query('ROLLBACK');
    const releasedAt = Date.now();
    await waitFor('the blocked execution, redelivered, runs once the lock is gone', () => isTerminal(blocked), { timeoutMs: 20_000 });
    const ranAfter = Date.now() - releasedAt;
    assert.equal(await status(blocked), 'completed');
    assert.equal(starts().get(blocked), 1);
    await waitFor('its completion', () => completions(blocked).length === 1);
    const requeues = logsOf(blocked, /handed back to the queue \(nack, requeue\)/).length;
    const dups = duplicates([blocked, nextOne]);
    assert.deepEqual(dups, { runs: 0, completions: 0 });
    console.log(`# fault row lock at claim (held > bound): 2 dispatches, 2 terminal rows (the locked one requeued ${requeues}× unacked, then run ${ranAfter} ms after the lock went), `
      + `0 duplicates; claim gave up ${gaveUpAfter} ms after dispatch (3 × lock_timeout + 0.75 s backoff = ${CONTENTION_BOUND_MS} ms, plus delivery)`);
  } finally {
    await other.query('ROLLBACK');
  }
});

test('10 MiB of \\x01 against a broker limited to 16 MiB: the completion is under the cap, and messages published right after it all arrive', async (t) => {
  const previous = (await run('rabbitmqctl', ['eval', 'application:get_env(rabbit, max_message_size).'])).stdout.trim();
  const old = /^\{ok,(\d+)\}$/.exec(previous)?.[1];
  assert.ok(old, `cannot read the broker's max_message_size: ${previous}`);
  await run('rabbitmqctl', ['eval', `application:set_env(rabbit, max_message_size, ${16 * MiB}).`]);
  t.after(() => run('rabbitmqctl', ['eval', `application:set_env(rabbit, max_message_size, ${old}).`]).then(() => undefined));
  // The limit applies to channels opened from now on: a second agent, started now, publishes on one.
  const big = await launch(`e2e-faults-16m-${process.pid}-${Date.now() % 100000}`);
  t.after(async () => {
    const exit = await big.proc.stop('SIGTERM');
    assert.equal(exit.code, 0);
  });

  // The publisher alone against the same limit: a message over it closes the channel; only it fails.
  const conn = new MqConnection({ url: AMQP_URL, logger: pino({ level: 'silent' }), connectionName: 'e2e-faults-publisher' });
  conn.addSetup((m) => assertCommonTopology(m, pino({ level: 'silent' })));
  await conn.start();
  t.after(() => conn.close());
  const publisher = new ConfirmPublisher({ connection: conn, logger: pino({ level: 'silent' }) });
  t.after(() => publisher.close());
  const probeId = randomInt(1_000_000_000, 2_000_000_000);
  const small = (n: number) => encodeEnvelope('ExecutionStatusChanged', { execution_id: probeId, action_ref: 'faults.probe', previous_status: 'x', new_status: String(n), changed_at: '2026-03-01T00:00:00Z' }, { sourceService: 'worker' });
  const oversized = encodeEnvelope('ExecutionCompleted', { execution_id: probeId, action_ref: 'faults.probe', result: 'x'.repeat(17 * MiB) }, { sourceService: 'worker' });
  const outcomes = await Promise.all([
    ...[0, 1, 2, 3, 4].map((n) => publisher.publish(small(n)).then(() => 'ok', (e: Error) => e.message)),
    publisher.publish(oversized).then(() => 'ok', (e: Error) => (e instanceof PublishError ? `refused: ${e.message}` : e.message)),
    ...[5, 6, 7, 8, 9].map((n) => publisher.publish(small(n)).then(() => 'ok', (e: Error) => e.message)),
  ]);
  assert.match(outcomes[5], /^refused: RabbitMQ refused ExecutionCompleted .*406 \(PRECONDITION-FAILED\).*larger than configured max size 16777216/);
  assert.deepEqual(outcomes.filter((_, i) => i !== 5), Array(10).fill('ok'), 'the messages in flight with it are delivered');
  await collector.waitFor('the ten small messages', () => new Set(collector.forExecution(probeId).map((m) => m.json?.payload?.new_status)).size === 10);

  // The agent: an action printing 10 MiB of \x01 (60 MiB once JSON-escaped), then ten more dispatches right after it.
  const ctrl = await createExecution(db.pool, { actionRef: 'faults.ctrl', workerId: big.workerId });
  const after10 = await Promise.all(Array.from({ length: 10 }, () => createExecution(db.pool, { actionRef: 'faults.quick', workerId: big.workerId })));
  const sent = Date.now();
  await publishExecutionRequested(mq, big.workerId, { execution_id: ctrl, action_ref: 'faults.ctrl' });
  for (const id of after10) await publishExecutionRequested(mq, big.workerId, { execution_id: id, action_ref: 'faults.quick' });
  await waitFor('the completion of the 10 MiB run', () => completions(ctrl).length >= 1, { timeoutMs: 60_000 });
  await waitFor('the ten completions after it', () => after10.every((id) => completions(id).length >= 1), { timeoutMs: 60_000 });
  const allIn = Date.now() - sent;
  const [done] = completions(ctrl);
  assert.ok(done.body.length <= DEFAULT_MAX_MESSAGE_BYTES, `ExecutionCompleted is ${done.body.length} bytes (cap ${DEFAULT_MAX_MESSAGE_BYTES})`);
  const payload = done.json!.payload as { result_truncated?: boolean; status: string; result: { stdout: string; exit_code: number } };
  assert.equal(payload.result_truncated, true);
  assert.equal(payload.status, 'Completed');
  assert.equal(payload.result.exit_code, 0);
  assert.match(payload.result.stdout, /^\x01+\n\[attune-agent: \d+ characters left out of this message to keep it under the broker's size limit; the full value is in execution\.result\]$/);
  // The row keeps the whole capture: 10 MiB − 128 bytes of output, then the capture's own notice (max_stdout_bytes).
  const row = (await db.pool.query(`SELECT status::text AS status, length(result->>'stdout') AS n,
      ltrim(result->>'stdout', chr(1)) AS tail FROM execution WHERE id = $1`, [ctrl])).rows[0];
  assert.deepEqual(row, { status: 'completed', n: 10 * MiB - 128 + '\n\n[OUTPUT TRUNCATED: stdout exceeded size limit]\n'.length, tail: '\n\n[OUTPUT TRUNCATED: stdout exceeded size limit]\n' }, 'the row keeps the whole capture');
  for (const id of after10) assert.equal(await status(id), 'completed');
  assert.equal(big.proc.logs.filter((l) => /publish channel closed by RabbitMQ|LOST MESSAGE/.test(String(l.msg))).length, 0, 'no channel closed, no message lost');
  assert.ok(big.proc.logs.some((l) => Number(l.execution_id) === ctrl && /result shortened to fit message_queue\.max_message_bytes/.test(String(l.msg))));
  const ids = [ctrl, ...after10];
  const dups = duplicates(ids);
  assert.deepEqual(dups, { runs: 0, completions: 0 });
  console.log(`# fault 10 MiB of \\x01 (broker max_message_size 16 MiB): ${ids.length} dispatches, ${ids.length} terminal rows, ${dups.runs} duplicate runs, ${dups.completions} duplicate completions; `
    + `ExecutionCompleted ${done.body.length} bytes (result_truncated), all ${ids.length} completions in ${allIn} ms; publisher alone: the 17 MiB message refused, 10/10 others delivered`);
});
