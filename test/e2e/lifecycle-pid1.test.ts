/**
 * PID 1: the BUILT agent as the init of a fresh PID namespace (`unshare --pid --fork --mount-proc`),
 * laid out like the portable folder (attune-agent with tini-static beside it). At start it re-executes
 * itself under tini (src/native/pid1.ts): tini stays PID 1 and reaps the orphans of 200 actions that each
 * leave background grandchildren behind (one escapes into its own session and exits later, one stays
 * in the action's group and is killed with it). Afterwards the namespace holds 0 zombies, and SIGTERM
 * to PID 1 (what `docker stop` / the kubelet send) stops the agent cleanly: exit 0, row inactive.
 *
 * Control: the same agent with ATTUNE_AGENT_TINI=off (Node itself as PID 1) leaves zombies — so the
 * zombie count above is a real measurement, not a check that cannot fail.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, linkSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChannelModel } from 'amqplib';
import { createTestDatabase, type TestDatabase } from '../helpers/pg.ts';
import { AMQP_URL, connectTest, deleteWorkerQueues, publishExecutionRequested } from '../helpers/amqp.ts';
import { AGENT_EXECUTABLE, createExecution, insertAction, seedCoreRuntimes, startAgent, type AgentProcess } from '../harness/platform.ts';
import { waitFor } from '../helpers/wait.ts';

const PACK = 'pid1pack';
const TINI = new URL('../../dist/portable/opt/attune/agent/tini-static', import.meta.url).pathname;
let db: TestDatabase;
let mq: ChannelModel;
let work: string;
let bin: string;
const tag = `${process.pid}-${randomInt(1e6)}`;
const workerIds: number[] = [];
const procs: AgentProcess[] = [];

function place(src: string, dst: string): void {
  try {
    linkSync(src, dst); // same filesystem: no 110 MB copy
  } catch {
    copyFileSync(src, dst);
    chmodSync(dst, 0o755);
  }
}

function children(pid: number): number[] {
  const out: number[] = [];
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    for (const c of readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').split(/\s+/)) if (c) out.push(Number(c));
  }
  return out;
}

function stat(pid: number): { comm: string; state: string; ppid: number } | null {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return { comm: s.slice(s.indexOf('(') + 1, s.lastIndexOf(')')), state: rest[0], ppid: Number(rest[1]) };
  } catch {
    return null;
  }
}

/** Every process (host pids) in the PID namespace whose init has host pid `init`. */
function namespaceProcesses(init: number): { pid: number; comm: string; state: string; ppid: number }[] {
  const ns = readlinkSync(`/proc/${init}/ns/pid`);
  const out = [];
  for (const e of readdirSync('/proc').filter((x) => /^\d+$/.test(x))) {
    try {
      if (readlinkSync(`/proc/${e}/ns/pid`) !== ns) continue;
    } catch {
      continue;
    }
    const s = stat(Number(e));
    if (s) out.push({ pid: Number(e), ...s });
  }
  return out;
}

interface NsAgent { proc: AgentProcess; init: number; workerId: number }

async function launch(name: string, env: Record<string, string>): Promise<NsAgent> {
  const proc = startAgent({
    ATTUNE__DATABASE__URL: db.url,
    ATTUNE__DATABASE__SCHEMA: db.schema,
    ATTUNE__MESSAGE_QUEUE__URL: AMQP_URL,
    ATTUNE__PACKS_BASE_DIR: join(work, 'packs'),
    ATTUNE__ARTIFACTS_DIR: join(work, `artifacts-${name}`),
    ATTUNE__RUNTIME_ENVS_DIR: join(work, `envs-${name}`),
    ATTUNE__WORKER__MAX_CONCURRENT_TASKS: '10',
    ATTUNE__WORKER__SHUTDOWN_TIMEOUT: '5',
    ATTUNE__WORKER__KILL_GRACE_PERIOD: '1',
    ATTUNE_WORKER_RUNTIMES: 'shell',
    ATTUNE_WORKER_NAME: name,
    ...env,
  }, ['--pid', '--fork', '--mount-proc', '--kill-child=SIGKILL', join(bin, 'attune-agent')], { executable: '/usr/bin/unshare' });
  procs.push(proc);
  await proc.waitForLog(`agent ${name} to consume`, (l) => l.msg === 'consuming execution dispatches', { timeoutMs: 30_000 });
  const [init] = children(proc.child.pid!);
  assert.ok(init, 'unshare has forked the namespace init');
  const workerId = Number((await db.pool.query('SELECT id FROM worker WHERE name = $1', [name])).rows[0].id);
  workerIds.push(workerId);
  return { proc, init, workerId };
}

async function runOrphans(a: NsAgent, n: number): Promise<{ orphansSeen: number }> {
  const ids: number[] = [];
  for (let i = 0; i < n; i++) ids.push(await createExecution(db.pool, { actionRef: `${PACK}.orphan`, workerId: a.workerId }));
  for (const id of ids) await publishExecutionRequested(mq, a.workerId, { execution_id: id, action_ref: `${PACK}.orphan` });
  let orphansSeen = 0;
  await waitFor(`${n} orphan-leaving executions completed`, async () => {
    // Orphans are reparented to the namespace init: count the live ones seen there.
    const agentPid = children(a.init)[0];
    orphansSeen = Math.max(orphansSeen, namespaceProcesses(a.init).filter((p) => p.ppid === a.init && p.pid !== agentPid && p.state !== 'Z').length);
    const { rows } = await db.pool.query(`SELECT count(*)::int AS n FROM execution WHERE id = ANY($1) AND status = 'completed'`, [ids]);
    return rows[0].n === n;
  }, { timeoutMs: 60_000 });
  return { orphansSeen };
}

before(async () => {
  assert.ok(existsSync(AGENT_EXECUTABLE) && existsSync(TINI), 'dist/attune-agent and the portable tini-static are built (npm run build)');
  db = await createTestDatabase('e2e_pid1');
  const base = randomInt(100_000, 1_000_000) * 1000;
  await db.pool.query(`SELECT setval(pg_get_serial_sequence('worker', 'id'), $1), setval(pg_get_serial_sequence('execution', 'id'), $1)`, [base]);
  const runtimeIds = await seedCoreRuntimes(db.pool);
  work = mkdtempSync(join(tmpdir(), 'attune-e2e-pid1-'));
  // The portable layout: tini-static beside the executable.
  bin = join(work, 'agent');
  mkdirSync(bin);
  place(AGENT_EXECUTABLE, join(bin, 'attune-agent'));
  place(TINI, join(bin, 'tini-static'));
  const actions = join(work, 'packs', PACK, 'actions');
  mkdirSync(actions, { recursive: true });
  // A grandchild in its own session that exits later on its own, and one left in the action's group.
  writeFileSync(join(actions, 'orphan.sh'), `#!/bin/bash\nsetsid sleep 0.$((RANDOM % 5 + 3)) </dev/null >/dev/null 2>&1 &\nsleep 30 </dev/null >/dev/null 2>&1 &\necho ok\n`);
  chmodSync(join(actions, 'orphan.sh'), 0o755);
  await insertAction(db.pool, PACK, { ref: `${PACK}.orphan`, entrypoint: 'orphan.sh', runtime: 'shell' }, runtimeIds);
  mq = await connectTest('e2e-pid1');
});

after(async () => {
  // unshare --kill-child=SIGKILL: the namespace init dies with unshare, and the namespace with it.
  for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
  await Promise.all(procs.map((p) => p.exited));
  for (const id of workerIds) await deleteWorkerQueues(mq, id);
  await mq?.close();
  await db?.drop();
  if (work) rmSync(work, { recursive: true, force: true });
});

test('agent as PID 1 of a fresh PID namespace: re-exec under tini, 200 orphan-leaving actions → 0 zombies, SIGTERM → exit 0 (control without tini: zombies)', async (t) => {
  const [withTini, control] = await Promise.all([
    launch(`e2e-pid1-${tag}`, {}),
    launch(`e2e-pid1-control-${tag}`, { ATTUNE_AGENT_TINI: 'off' }),
  ]);
  // The drop-in entrypoint became `tini-static -s -g -- attune-agent`: tini is PID 1, the agent its child.
  const exe = (pid: number) => readlinkSync(`/proc/${pid}/exe`);
  assert.equal(exe(withTini.init), join(bin, 'tini-static'));
  const agentPid = children(withTini.init);
  assert.equal(agentPid.length, 1);
  assert.equal(exe(agentPid[0]), join(bin, 'attune-agent'));
  assert.equal(exe(control.init), join(bin, 'attune-agent'), 'control: Node itself is PID 1');
  assert.ok(control.proc.logs.some((l) => l.level === 'warn' && /PID 1.*zombies/.test(String(l.msg))), 'without tini the agent warns');

  const [main] = await Promise.all([runOrphans(withTini, 200), runOrphans(control, 20)]);
  assert.ok(main.orphansSeen > 0, 'orphans were reparented to the namespace init while the actions ran');
  t.diagnostic(`live orphans seen under tini at one time: up to ${main.orphansSeen}`);

  // The session-escaped grandchildren exit 0.3-0.7 s after their action: wait until none is alive.
  await waitFor('the grandchildren exited', () => namespaceProcesses(withTini.init).every((p) => p.comm !== 'sleep' || p.state === 'Z'), { timeoutMs: 10_000 });
  await waitFor('control grandchildren exited', () => namespaceProcesses(control.init).every((p) => p.comm !== 'sleep' || p.state === 'Z'), { timeoutMs: 10_000 });
  // tini reaps an orphan as soon as it exits; Node as PID 1 never does.
  await waitFor('tini to reap the last orphans', () => namespaceProcesses(withTini.init).every((p) => p.state !== 'Z'), { timeoutMs: 5_000 }).catch(() => undefined);
  const zombies = namespaceProcesses(withTini.init).filter((p) => p.state === 'Z');
  const controlZombies = namespaceProcesses(control.init).filter((p) => p.state === 'Z');
  t.diagnostic(`zombies: ${zombies.length} under tini after 200 actions; ${controlZombies.length} with Node as PID 1 after 20`);
  assert.deepEqual(zombies, [], 'no zombie in the namespace');
  assert.ok(controlZombies.length >= 20, `control: Node as PID 1 leaves the orphans as zombies (${controlZombies.length})`);

  // SIGTERM to PID 1 (tini forwards it to the agent); unshare reports the namespace init's exit status.
  process.kill(withTini.init, 'SIGTERM');
  process.kill(control.init, 'SIGTERM');
  const [exit, controlExit] = await Promise.all([withTini.proc.exited, control.proc.exited]);
  assert.equal(exit.code, 0, `exit (stderr: ${withTini.proc.stderr.join('')})`);
  assert.equal(controlExit.code, 0);
  assert.ok(withTini.proc.logs.some((l) => l.msg === 'worker deregistered (status inactive)'));
  const { rows } = await db.pool.query(`SELECT status::text AS status FROM worker WHERE id = $1`, [withTini.workerId]);
  assert.equal(rows[0].status, 'inactive');
});
