/**
 * Lifecycle end to end: the BUILT agent (dist/attune-agent) against real PostgreSQL and RabbitMQ.
 *
 * - Drain (first SIGTERM): nothing new is taken (a dispatch prefetched behind the permits and one
 *   published after the signal stay in the queue), heartbeats go on, an action that ends inside
 *   worker.shutdown_timeout completes, the rest end `cancelled` with reason `shutdown` (one of them
 *   ignores SIGTERM), row inactive, exit 0, all far inside a 45 s grace period.
 * - Health and metrics on the same agent: /readyz 200 when running, 503 while the broker is cut (its
 *   broker link goes through a TCP proxy; RabbitMQ itself is shared and never stopped) and from the
 *   SIGTERM on; /metrics parses as Prometheus text and its counters match the runs.
 * - Second signal: running actions cancelled at once (not after the 30 s drain); exit 128+15.
 * - Third signal: exit at once with 128+15, no action process left behind.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChannelModel } from 'amqplib';
import { createTestDatabase, type TestDatabase } from '../helpers/pg.ts';
import { AMQP_URL, collectExecutionMessages, connectTest, deleteWorkerQueues, publishExecutionRequested, queueDepth, type Collector } from '../helpers/amqp.ts';
import { TcpProxy } from '../helpers/proxy.ts';
import { createExecution, executionRow, insertAction, seedCoreRuntimes, startAgent, type AgentProcess, separateIds, consumingWorkerId } from '../harness/platform.ts';
import { waitFor } from '../helpers/wait.ts';

const PACK = 'lifepack';
let db: TestDatabase;
let mq: ChannelModel;
let collector: Collector;
let work: string;
const tag = `${process.pid}-${randomInt(1e6)}`;

interface Agent { name: string; proc: AgentProcess; workerId: number; port: number; mqProxy: TcpProxy | null }
const agents: Agent[] = [];

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

async function launch(name: string, env: Record<string, string>, viaProxy = false): Promise<Agent> {
  const port = await freePort();
  const mqProxy = viaProxy ? await TcpProxy.start(Number(new URL(AMQP_URL).port || 5672), new URL(AMQP_URL).hostname) : null;
  const proc = startAgent({
    ATTUNE__DATABASE__URL: db.url,
    ATTUNE__DATABASE__SCHEMA: db.schema,
    ATTUNE__MESSAGE_QUEUE__URL: mqProxy ? mqProxy.url(AMQP_URL) : AMQP_URL,
    ATTUNE__PACKS_BASE_DIR: join(work, 'packs'),
    ATTUNE__ARTIFACTS_DIR: join(work, `artifacts-${name}`),
    ATTUNE__RUNTIME_ENVS_DIR: join(work, `envs-${name}`),
    ATTUNE__WORKER__HEARTBEAT_INTERVAL: '1',
    ATTUNE__WORKER__KILL_GRACE_PERIOD: '1',
    ATTUNE__WORKER__HEALTH_PORT: String(port),
    ATTUNE__WORKER__HEALTH_HOST: '127.0.0.1',
    ATTUNE_WORKER_RUNTIMES: 'shell',
    ATTUNE_WORKER_NAME: name,
    ...env,
  });
  const workerId = await consumingWorkerId(proc, db.pool, name, { timeoutMs: 30_000 });
  const a = { name, proc, workerId, port, mqProxy };
  agents.push(a);
  return a;
}

async function get(a: Agent, path: string): Promise<{ status: number; body: string; type: string }> {
  const res = await fetch(`http://127.0.0.1:${a.port}${path}`);
  return { status: res.status, body: await res.text(), type: res.headers.get('content-type') ?? '' };
}

async function dispatch(a: Agent, action: string, config: Record<string, unknown> = {}): Promise<number> {
  const id = await createExecution(db.pool, { actionRef: `${PACK}.${action}`, workerId: a.workerId, config });
  await publishExecutionRequested(mq, a.workerId, { execution_id: id, action_ref: `${PACK}.${action}`, config });
  return id;
}

const completion = (id: number) => collector.forExecution(id).find((m) => m.routingKey === 'execution.completed' && m.json?.payload?.action_ref?.toString().startsWith(`${PACK}.`))?.json?.payload;
const status = async (id: number) => (await executionRow(db.pool, id)).status;
const workerRow = async (a: Agent) => (await db.pool.query('SELECT status::text AS status, last_heartbeat FROM worker WHERE id = $1', [a.workerId])).rows[0] as { status: string; last_heartbeat: Date };

/** Live (non-zombie) processes whose environment carries LIFE_TAG=`needle` (the long-running actions export it). */
function liveProcesses(needle: string): number[] {
  const out: number[] = [];
  for (const pid of readdirSync('/proc').filter((e) => /^\d+$/.test(e))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      if (/^[ZX]/.test(stat.slice(stat.lastIndexOf(')') + 2))) continue;
      if (readFileSync(`/proc/${pid}/environ`, 'utf8').includes(`LIFE_TAG=${needle}`)) out.push(Number(pid));
    } catch {
      /* gone */
    }
  }
  return out;
}

/**
 * Minimal Prometheus text-format parser: every line is a comment (# HELP / # TYPE) or
 * `name{label="v",…} value`; throws on anything else. Returns samples keyed by `name{labels}`.
 */
function parsePrometheus(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
      assert.ok(m, `bad comment line: ${line}`);
      if (m[1] === 'TYPE') {
        assert.match(m[3], /^(counter|gauge|histogram|summary|untyped)$/, line);
        types.set(m[2], m[3]);
      }
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (-?[0-9.e+-]+|NaN|\+Inf|-Inf)( -?\d+)?$/.exec(line);
    assert.ok(m, `bad sample line: ${line}`);
    const base = m[1].replace(/_(bucket|sum|count|total)$/, '');
    assert.ok(types.has(m[1]) || types.has(base) || types.has(m[1].replace(/_(bucket|sum|count)$/, '')), `sample without # TYPE: ${line}`);
    samples.set(m[1] + (m[2] ?? ''), Number(m[3]));
  }
  return samples;
}

before(async () => {
  db = await createTestDatabase('e2e_lifecycle');
  // The broker is shared: queue names (worker.{id}.*) and execution ids must not collide with other runs.
  await separateIds(db.pool);
  const runtimeIds = await seedCoreRuntimes(db.pool);
  work = mkdtempSync(join(tmpdir(), 'attune-e2e-lifecycle-'));
  const actions = join(work, 'packs', PACK, 'actions');
  mkdirSync(actions, { recursive: true });
  const scripts: Record<string, string> = {
    // Sleeps s seconds (dotenv parameter), then prints done.
    'quick.sh': '#!/bin/bash\neval "$(cat)"\nsleep "${s:-0}"\necho "done"\n',
    // Runs until killed; SIGTERM ends it (its group gets the signal).
    'long.sh': `#!/bin/bash\nexport LIFE_TAG=${tag}\necho started\nsleep 300\n`,
    // Ignores SIGTERM (the whole tree): only the SIGKILL after kill_grace_period ends it.
    'stubborn.sh': `#!/bin/bash\nexport LIFE_TAG=${tag}\ntrap '' TERM\n( trap '' TERM; sleep 300 ) &\necho started\nwhile true; do sleep 0.2; done\n`,
    'fail.sh': '#!/bin/bash\necho nope >&2\nexit 3\n',
    // 20 KiB of output: over the 10 KiB cap set below.
    'big.sh': '#!/bin/bash\nhead -c 20480 /dev/zero | tr "\\0" x\n',
  };
  for (const [f, body] of Object.entries(scripts)) {
    writeFileSync(join(actions, f), body);
    chmodSync(join(actions, f), 0o755);
    await insertAction(db.pool, PACK, { ref: `${PACK}.${f.replace(/\.sh$/, '')}`, entrypoint: f, runtime: 'shell', parameter_format: 'dotenv' }, runtimeIds);
  }
  mq = await connectTest('e2e-lifecycle');
  collector = await collectExecutionMessages(mq);
});

after(async () => {
  for (const a of agents) {
    a.mqProxy?.up();
    if (a.proc.child.exitCode === null && a.proc.child.signalCode === null) a.proc.child.kill('SIGKILL');
    await a.proc.exited;
    await a.mqProxy?.close();
    await deleteWorkerQueues(mq, a.workerId);
  }
  await collector?.close();
  await mq?.close();
  await db?.drop();
  if (work) rmSync(work, { recursive: true, force: true });
  assert.deepEqual(liveProcesses(tag), [], 'no action process of this file is left');
});

describe('first SIGTERM: drain', () => {
  test('health, metrics, broker cut, then SIGTERM with 3 actions running: drain, cancel leftovers as shutdown, exit 0', async () => {
    const a = await launch(`e2e-life-drain-${tag}`, {
      ATTUNE__WORKER__MAX_CONCURRENT_TASKS: '3',
      ATTUNE__WORKER__SHUTDOWN_TIMEOUT: '3',
      ATTUNE__WORKER__MAX_STDOUT_BYTES: '10240',
      ATTUNE__LOG__MIRROR_RUNTIME_STDOUT_TO_STDIO: 'true',
      ATTUNE__LOG__MIRROR_RUNTIME_STDERR_TO_STDIO: 'true',
      ATTUNE__LOG__LEVEL: 'attune_worker=debug,info', // RUST_LOG-style value → info
    }, true);

    // --- health while running
    assert.equal((await get(a, '/healthz')).status, 200);
    const ready = await waitFor('/readyz 200', async () => {
      const r = await get(a, '/readyz');
      return r.status === 200 ? r : null;
    }, { timeoutMs: 15_000 });
    assert.deepEqual(JSON.parse(ready.body).checks, { registered: true, database: true, broker: true, consuming: true, not_draining: true });

    // --- runs for the metrics: 3 completed, 1 failed, 1 truncated (completed)
    const runs = [await dispatch(a, 'quick'), await dispatch(a, 'quick'), await dispatch(a, 'quick'), await dispatch(a, 'fail'), await dispatch(a, 'big')];
    await waitFor('5 runs finished', () => runs.every((id) => completion(id)), { timeoutMs: 20_000 });
    const m1 = parsePrometheus((await get(a, '/metrics')).body);
    assert.equal(m1.get('attune_agent_executions_total{runtime="shell",status="completed"}'), 4);
    assert.equal(m1.get('attune_agent_executions_total{runtime="shell",status="failed"}'), 1);
    assert.equal(m1.get('attune_agent_execution_duration_seconds_count{runtime="shell",status="completed"}'), 4);
    assert.equal(m1.get('attune_agent_output_truncations_total{stream="stdout"}'), 1);
    assert.equal(m1.get('attune_agent_output_truncations_total{stream="stderr"}'), 0);
    assert.equal(m1.get('attune_agent_executions_running'), 0);
    assert.equal(m1.get('attune_agent_permits_total'), 3);
    assert.equal(m1.get('attune_agent_broker_reconnects_total'), 0);
    assert.equal(m1.get('attune_agent_ready'), 1);
    const age = m1.get('attune_agent_heartbeat_age_seconds')!;
    assert.ok(age >= 0 && age < 5, `heartbeat age ${age}`);
    assert.ok(m1.has('attune_agent_process_resident_memory_bytes'), 'default process metrics');

    // --- broker cut: not ready, then ready again, one reconnect counted
    a.mqProxy!.goDown();
    a.mqProxy!.cut();
    const down = await waitFor('/readyz 503 while the broker is away', async () => {
      const r = await get(a, '/readyz');
      return r.status === 503 ? r : null;
    }, { timeoutMs: 15_000 });
    assert.equal(JSON.parse(down.body).checks.broker, false);
    assert.equal((await get(a, '/healthz')).status, 200, 'liveness does not depend on the broker');
    a.mqProxy!.up();
    await waitFor('/readyz 200 after the broker is back', async () => (await get(a, '/readyz')).status === 200, { timeoutMs: 30_000 });
    assert.equal(parsePrometheus((await get(a, '/metrics')).body).get('attune_agent_broker_reconnects_total'), 1);

    // --- the drain
    const finishes = await dispatch(a, 'quick', { s: 1.5 });
    const outlasts = await dispatch(a, 'long');
    const ignoresTerm = await dispatch(a, 'stubborn');
    await waitFor('3 actions running', async () => (await Promise.all([finishes, outlasts, ignoresTerm].map(status))).every((s) => s === 'running'), { timeoutMs: 15_000 });
    // Delivered but waiting for a permit (prefetch is max_concurrent_tasks + 2): must be handed back.
    const prefetched = await dispatch(a, 'quick');
    await waitFor('the 4th dispatch delivered (unacked)', async () => (await queueDepth(mq, `worker.${a.workerId}.executions`)) === 0, { timeoutMs: 15_000 });

    const t0 = Date.now();
    a.proc.child.kill('SIGTERM');
    const publishedAfter = await dispatch(a, 'quick');
    await waitFor('/readyz 503 with not_draining false', async () => {
      const r = await get(a, '/readyz');
      return r.status === 503 && JSON.parse(r.body).checks.not_draining === false;
    }, { timeoutMs: 2_000 });
    const metricsDuringDrain = parsePrometheus((await get(a, '/metrics')).body);
    assert.equal(metricsDuringDrain.get('attune_agent_draining'), 1);
    assert.equal(metricsDuringDrain.get('attune_agent_ready'), 0);

    await waitFor('the finishing action completed during the drain', () => completion(finishes), { timeoutMs: 10_000 });
    assert.equal(completion(finishes)!.status, 'Completed');
    const hbBefore = (await workerRow(a)).last_heartbeat.getTime();
    await waitFor('a heartbeat during the drain', async () => (await workerRow(a)).last_heartbeat.getTime() > hbBefore, { timeoutMs: 3_000 });

    const exit = await a.proc.exited;
    const took = Date.now() - t0;
    assert.equal(exit.code, 0, `exit code (stderr: ${a.proc.stderr.join('')})`);
    assert.ok(took < 10_000, `shutdown took ${took} ms (shutdown_timeout 3 s + kill_grace_period 1 s; grace period 45 s)`);
    assert.ok(took >= 3_000, `the drain waited for shutdown_timeout (took ${took} ms)`);

    for (const id of [outlasts, ignoresTerm]) {
      const row = await executionRow(db.pool, id);
      assert.equal(row.status, 'cancelled', `execution ${id}`);
      assert.equal(row.result?.cancel_reason, 'shutdown');
      assert.equal(row.result?.cancelled, true);
      assert.equal(row.result?.error, 'Execution cancelled: attune-agent shutting down');
      assert.equal(completion(id)?.status, 'Cancelled', 'ExecutionCompleted published');
      assert.deepEqual(collector.forExecution(id).filter((m) => m.routingKey === 'execution.status.changed').map((m) => m.json!.payload!.new_status), ['running', 'cancelled']);
    }
    assert.equal(await status(prefetched), 'scheduled', 'the prefetched dispatch was not claimed');
    assert.equal(await status(publishedAfter), 'scheduled', 'the dispatch published after SIGTERM was not claimed');
    assert.equal(await queueDepth(mq, `worker.${a.workerId}.executions`), 2, 'both stay in the queue for another worker');
    assert.equal((await workerRow(a)).status, 'inactive');
    assert.ok(a.proc.logs.some((l) => l.msg === 'attune-agent stopped' && l.exit_code === 0));
    await waitFor('no action process left', () => liveProcesses(tag).length === 0, { timeoutMs: 3_000 });

    // --- logs: JSON lines; every line about an execution carries execution_id, action_ref, worker_id
    assert.ok(a.proc.logs.every((l) => typeof l.level === 'string' && typeof l.time === 'string'), 'every stdout line is a pino JSON line (mirrored output included)');
    assert.ok(!a.proc.logs.some((l) => l.level === 'debug'), 'log.level attune_worker=debug,info → info');
    const runLines = a.proc.logs.filter((l) => l.execution_id !== undefined);
    const incomplete = runLines.filter((l) => l.worker_id !== a.workerId || typeof l.action_ref !== 'string');
    assert.deepEqual(incomplete.map((l) => l.msg), [], 'lines without worker_id/action_ref');
    for (const id of [...runs, finishes, outlasts, ignoresTerm]) assert.ok(runLines.some((l) => l.execution_id === id), `log lines for execution ${id}`);
    // Mirrored action output: one JSON line per output line, tagged with the run.
    const mirrored = a.proc.logs.filter((l) => l.stream === 'stdout' && l.execution_id === runs[0]);
    assert.deepEqual(mirrored.map((l) => l.msg), ['done']);
    assert.equal(mirrored[0].action_ref, `${PACK}.quick`);
    assert.ok(a.proc.logs.some((l) => l.stream === 'stderr' && l.execution_id === runs[3] && l.msg === 'nope'), 'stderr mirrored too');
  });
});

describe('escalation', () => {
  test('second signal cancels running actions at once, writes their results, exits 128+signal; third exits at once', async () => {
    const [two, three] = await Promise.all([
      launch(`e2e-life-2nd-${tag}`, { ATTUNE__WORKER__SHUTDOWN_TIMEOUT: '30' }),
      // kill_grace_period 20 s: after the second signal the SIGTERM-ignoring tree is still alive when the third comes.
      launch(`e2e-life-3rd-${tag}`, { ATTUNE__WORKER__SHUTDOWN_TIMEOUT: '30', ATTUNE__WORKER__KILL_GRACE_PERIOD: '20' }),
    ]);
    const ids2 = [await dispatch(two, 'long'), await dispatch(two, 'stubborn')];
    const ids3 = [await dispatch(three, 'long'), await dispatch(three, 'stubborn')];
    await waitFor('actions running', async () => (await Promise.all([...ids2, ...ids3].map(status))).every((s) => s === 'running'), { timeoutMs: 15_000 });

    // Second signal
    const t0 = Date.now();
    two.proc.child.kill('SIGTERM');
    await two.proc.waitForLog('the drain to start', (l) => String(l.msg).startsWith('shutting down'));
    // A heartbeat of the draining agent (1 s interval): time enough for a cancel to have shown.
    const beatAtSignal = (await workerRow(two)).last_heartbeat.getTime();
    await waitFor('a heartbeat during the drain', async () => (await workerRow(two)).last_heartbeat.getTime() > beatAtSignal);
    assert.ok(ids2.every((id) => !completion(id)), 'the first signal alone does not cancel (shutdown_timeout 30 s)');
    two.proc.child.kill('SIGINT');
    const exit2 = await two.proc.exited;
    assert.equal(exit2.code, 130, 'exit 128+SIGINT after the second signal');
    assert.ok(Date.now() - t0 < 8_000, `stopped in ${Date.now() - t0} ms, not after the 30 s drain`);
    for (const id of ids2) {
      const row = await executionRow(db.pool, id);
      assert.equal(row.status, 'cancelled');
      assert.equal(row.result?.cancel_reason, 'shutdown');
      assert.equal(completion(id)?.status, 'Cancelled');
    }
    assert.equal((await workerRow(two)).status, 'inactive');

    // Third signal
    three.proc.child.kill('SIGTERM');
    await three.proc.waitForLog('the drain to start', (l) => String(l.msg).startsWith('shutting down'));
    three.proc.child.kill('SIGTERM');
    await three.proc.waitForLog('the second signal', (l) => String(l.msg).startsWith('second signal'));
    const t1 = Date.now();
    three.proc.child.kill('SIGTERM');
    const exit3 = await three.proc.exited;
    assert.equal(exit3.code, 143, 'exit 128+SIGTERM at the third signal');
    assert.ok(Date.now() - t1 < 1_000, `exited ${Date.now() - t1} ms after the third signal`);
    // The third signal kills the actions' process groups (even the one ignoring SIGTERM) and writes nothing more.
    await waitFor('no action process of the third agent left', () => liveProcesses(tag).length === 0, { timeoutMs: 2_000 });
    assert.equal(await status(ids3[1]), 'running', 'no result written for the action still running at the third signal (recovered at the next start)');
    assert.equal((await workerRow(three)).status, 'active', 'no deregistration after the third signal');
  });
});
