/**
 * PID 1: the BUILT one file, alone in its directory, as the init of a fresh PID namespace
 * (`unshare --pid --fork --mount-proc`). Its launcher (build/launcher/init.c) forks before starting
 * Node and stays PID 1: it reaps the orphans of 60 actions that each leave background grandchildren
 * behind (one escapes into its own session and exits later, one stays in the action's group and is
 * killed with it). Afterwards the namespace holds 0 zombies, and SIGTERM to PID 1 (what
 * `docker stop` / the kubelet send) is forwarded: the agent drains and exits 0, row inactive, and
 * PID 1 exits with the agent's status.
 *
 * Control: the same file with ATTUNE_AGENT_TINI=off (Node itself as PID 1) leaves zombies — so the
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
import { AGENT_EXECUTABLE, createExecution, insertAction, seedCoreRuntimes, startAgent, type AgentProcess, separateIds } from '../harness/platform.ts';
import { waitFor } from '../helpers/wait.ts';

const PACK = 'pid1pack';
const ACTIONS = 60;
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
  assert.ok(existsSync(AGENT_EXECUTABLE), 'dist/attune-agent is built (npm run build)');
  db = await createTestDatabase('e2e_pid1');
  await separateIds(db.pool);
  const runtimeIds = await seedCoreRuntimes(db.pool);
  work = mkdtempSync(join(tmpdir(), 'attune-e2e-pid1-'));
  // The one file alone in its directory.
  bin = join(work, 'agent');
  mkdirSync(bin);
  place(AGENT_EXECUTABLE, join(bin, 'attune-agent'));
  const actions = join(work, 'packs', PACK, 'actions');
  mkdirSync(actions, { recursive: true });
  // A grandchild in its own session that exits later on its own, and one left in the action's group.
  writeFileSync(join(actions, 'orphan.sh'), `#!/bin/bash\nsetsid sleep 0.$((RANDOM % 5 + 3)) </dev/null >/dev/null 2>&1 &\nsleep 30 </dev/null >/dev/null 2>&1 &\necho ok\n`);
  chmodSync(join(actions, 'orphan.sh'), 0o755);
  await insertAction(db.pool, PACK, { ref: `${PACK}.orphan`, entrypoint: 'orphan.sh', runtime: 'shell' }, runtimeIds);
  // Still running when SIGTERM comes: the drain must let it finish.
  writeFileSync(join(actions, 'slow.sh'), '#!/bin/bash\nsleep 1.5\necho drained\n');
  chmodSync(join(actions, 'slow.sh'), 0o755);
  await insertAction(db.pool, PACK, { ref: `${PACK}.slow`, entrypoint: 'slow.sh', runtime: 'shell' }, runtimeIds);
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

function vmRssKb(pid: number): number {
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN);
}

test(`the one file as PID 1 of a fresh PID namespace: its launcher stays init, ${ACTIONS} orphan-leaving actions → 0 zombies, SIGTERM → drained, exit 0 (control without init: zombies)`, async (t) => {
  assert.deepEqual(readdirSync(bin), ['attune-agent'], 'nothing beside the one file');
  const [withInit, control] = await Promise.all([
    launch(`e2e-pid1-${tag}`, {}),
    launch(`e2e-pid1-control-${tag}`, { ATTUNE_AGENT_TINI: 'off' }),
  ]);
  // PID 1 is the launcher (the same file, small: no Node inside); its only child runs the agent.
  const exe = (pid: number) => readlinkSync(`/proc/${pid}/exe`);
  const maps = (pid: number) => readFileSync(`/proc/${pid}/maps`, 'utf8');
  assert.equal(exe(withInit.init), join(bin, 'attune-agent'));
  const agentPid = children(withInit.init);
  assert.equal(agentPid.length, 1);
  assert.equal(exe(agentPid[0]), join(bin, 'attune-agent'));
  assert.ok(vmRssKb(withInit.init) < 4096, `init holds only the launcher: VmRSS ${vmRssKb(withInit.init)} kB`);
  assert.doesNotMatch(maps(withInit.init), /memfd:attune-agent/, 'the init forked before anything was unpacked');
  assert.match(maps(agentPid[0]), /memfd:attune-agent:libc\.so\.6/, 'the agent runs on the unpacked libraries');
  assert.match(maps(control.init), /memfd:attune-agent:libc\.so\.6/, 'control: Node itself is PID 1');
  assert.ok(control.proc.logs.some((l) => l.level === 'warn' && /PID 1.*zombies/.test(String(l.msg))), 'without an init the agent warns');

  const [main] = await Promise.all([runOrphans(withInit, ACTIONS), runOrphans(control, 20)]);
  assert.ok(main.orphansSeen > 0, 'orphans were reparented to the namespace init while the actions ran');
  t.diagnostic(`live orphans seen under the launcher at one time: up to ${main.orphansSeen}`);

  // The session-escaped grandchildren exit 0.3-0.7 s after their action: wait until none is alive.
  await waitFor('the grandchildren exited', () => namespaceProcesses(withInit.init).every((p) => p.comm !== 'sleep' || p.state === 'Z'), { timeoutMs: 10_000 });
  await waitFor('control grandchildren exited', () => namespaceProcesses(control.init).every((p) => p.comm !== 'sleep' || p.state === 'Z'), { timeoutMs: 10_000 });
  // The init reaps an orphan as soon as it exits; Node as PID 1 never does.
  await waitFor('the init to reap the last orphans', () => namespaceProcesses(withInit.init).every((p) => p.state !== 'Z'), { timeoutMs: 5_000 }).catch(() => undefined);
  const zombies = namespaceProcesses(withInit.init).filter((p) => p.state === 'Z');
  const controlZombies = namespaceProcesses(control.init).filter((p) => p.state === 'Z');
  t.diagnostic(`zombies: ${zombies.length} under the launcher after ${ACTIONS} actions; ${controlZombies.length} with Node as PID 1 after 20`);
  assert.deepEqual(zombies, [], 'no zombie in the namespace');
  assert.ok(controlZombies.length >= 20, `control: Node as PID 1 leaves the orphans as zombies (${controlZombies.length})`);

  // SIGTERM to PID 1 while an action runs: the launcher forwards it to the agent's group, the agent
  // drains (the action completes), and unshare reports PID 1's exit status.
  const slow = await createExecution(db.pool, { actionRef: `${PACK}.slow`, workerId: withInit.workerId });
  await publishExecutionRequested(mq, withInit.workerId, { execution_id: slow, action_ref: `${PACK}.slow` });
  await waitFor('the slow action runs', async () => (await db.pool.query(`SELECT status::text AS s FROM execution WHERE id = $1`, [slow])).rows[0].s === 'running', { timeoutMs: 15_000 });
  process.kill(withInit.init, 'SIGTERM');
  process.kill(control.init, 'SIGTERM');
  const [exit, controlExit] = await Promise.all([withInit.proc.exited, control.proc.exited]);
  assert.equal(exit.code, 0, `exit (stderr: ${withInit.proc.stderr.join('')})`);
  assert.equal(controlExit.code, 0);
  assert.ok(withInit.proc.logs.some((l) => l.msg === 'worker deregistered (status inactive)'), 'the agent drained and deregistered');
  const { rows } = await db.pool.query(`SELECT status::text AS status FROM worker WHERE id = $1`, [withInit.workerId]);
  assert.equal(rows[0].status, 'inactive');
  const drained = (await db.pool.query(`SELECT status::text AS status, result FROM execution WHERE id = $1`, [slow])).rows[0] as { status: string; result: { stdout?: string } };
  assert.equal(drained.status, 'completed', `the running action finished during the drain: ${JSON.stringify(drained.result)}`);
});
