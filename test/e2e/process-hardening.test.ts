/**
 * Process hardening, with the BUILT one file (real PostgreSQL, RabbitMQ, python): a hostile action
 * (test/fixtures/hostile/probe.py) searches every ancestor it can reach - the agent, and PID 1 when
 * the one file is the init of a fresh PID namespace - for the agent's four credentials (database
 * and broker passwords, JWT secret, encryption key: distinctive random values that really work:
 * a RabbitMQ user made for this file, PostgreSQL with trust auth): in /proc/<pid>/environ,
 * /proc/<pid>/cmdline, the regular files open in /proc/<pid>/fd, and the readable memory
 * (/proc/<pid>/mem via /proc/<pid>/maps). As root and as uid 65532, as a plain process and as
 * PID 1. Root may ptrace anything, so its memory read is not asserted (docs/security.md).
 * The agent is also handed a leaked descriptor (fd 3, a file holding the encryption key): the
 * launcher closes it, and the action's own descriptors are 0-2 only.
 *
 * Control: the same probe under a careless parent (credentials in its environment, on its command
 * line, in an open file, in its memory) finds each of them on each channel, as root and as 65532,
 * so every "found none" below is a real measurement.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { randomInt, randomUUID } from 'node:crypto';
import { chmodSync, chownSync, closeSync, copyFileSync, linkSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { ChannelModel } from 'amqplib';
import { createTestDatabase, type TestDatabase } from '../helpers/pg.ts';
import { connectTest, deleteWorkerQueues, publishExecutionRequested } from '../helpers/amqp.ts';
import { AGENT_EXECUTABLE, createExecution, executionRow, insertAction, seedCoreRuntimes, startAgent, type AgentProcess, separateIds, consumingWorkerId } from '../harness/platform.ts';
import { waitFor } from '../helpers/wait.ts';

const PROBE = resolve(import.meta.dirname, '../fixtures/hostile/probe.py');
const PACK = 'hostile';
const NONROOT = 65532;
const tag = `${process.pid}-${randomInt(1e6)}`;
const MQ_USER = `attune-e2e-hardening-${tag}`;
const SECRETS = {
  database: `dbpw-${randomUUID()}`,
  broker: `mqpw-${randomUUID()}`,
  jwt: `jwt-${randomUUID()}`,
  encryption: `enckey-${randomUUID()}`,
} as const;

interface Channel { read: boolean; error?: string; hits?: string[]; nonzero?: number; files?: number; bytes?: number }
interface Ancestor { pid: number; comm: string; environ: Channel; cmdline: Channel; fds: Channel; mem: Channel }
interface Report { uid: number; own_fds: number[]; ancestors: Ancestor[] }

let db: TestDatabase;
let mq: ChannelModel;
let work: string;
let agentFile: string;
let leakFile: string;
let runtimeIds: Record<string, number>;
const procs: AgentProcess[] = [];
const workerIds: number[] = [];

function rabbitmqctl(...args: string[]): void {
  execFileSync('rabbitmqctl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

before(async () => {
  db = await createTestDatabase('e2e_hardening');
  await separateIds(db.pool);
  runtimeIds = await seedCoreRuntimes(db.pool);
  // A broker user whose password is one of the secrets: the agent must really log in with it.
  rabbitmqctl('add_user', MQ_USER, SECRETS.broker);
  rabbitmqctl('set_permissions', '-p', '/', MQ_USER, '.*', '.*', '.*');
  work = mkdtempSync(join(tmpdir(), 'attune-e2e-hardening-'));
  chmodSync(work, 0o755);
  mkdirSync(join(work, 'agent'));
  agentFile = join(work, 'agent', 'attune-agent');
  try {
    linkSync(AGENT_EXECUTABLE, agentFile); // same filesystem: no 110 MB copy
  } catch {
    copyFileSync(AGENT_EXECUTABLE, agentFile);
    chmodSync(agentFile, 0o755);
  }
  const actions = join(work, 'packs', PACK, 'actions');
  mkdirSync(actions, { recursive: true });
  copyFileSync(PROBE, join(actions, 'probe.py'));
  // Reversed: what the action knows is not itself a needle (probe.py).
  writeFileSync(join(actions, 'needles'), Object.entries(SECRETS).map(([k, v]) => `${k}=${[...v].reverse().join('')}\n`).join(''));
  // The walk stops at this test process (the plain agents' parent): only the agent's side is searched.
  writeFileSync(join(actions, 'probe.sh'), `#!/bin/sh\nexec /usr/bin/python3 "$(dirname "$0")/probe.py" "$(dirname "$0")/needles" ${process.pid}\n`);
  chmodSync(join(actions, 'probe.sh'), 0o755);
  await insertAction(db.pool, PACK, { ref: `${PACK}.probe`, entrypoint: 'probe.sh', runtime: 'shell', timeout_seconds: 120 }, runtimeIds);
  // What a careless caller leaves open: a file holding a credential.
  leakFile = join(work, 'leaked-secret');
  writeFileSync(leakFile, `ATTUNE__SECURITY__ENCRYPTION_KEY=${SECRETS.encryption}\n`, { mode: 0o600 });
  mq = await connectTest('e2e-hardening');
});

after(async () => {
  for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
  await Promise.all(procs.map((p) => p.exited));
  for (const id of workerIds) await deleteWorkerQueues(mq, id);
  await mq?.close();
  await db?.drop();
  try {
    rabbitmqctl('delete_user', MQ_USER);
  } catch {
    /* never created */
  }
  if (work) rmSync(work, { recursive: true, force: true });
});

/** Runs the probe once under the agent; its report. */
async function probeUnder(name: string, uid: 0 | typeof NONROOT, pid1: boolean): Promise<{ report: Report; agent: AgentProcess }> {
  const dirs = ['artifacts', 'envs'].map((d) => join(work, `${d}-${name}`));
  for (const d of dirs) {
    mkdirSync(d);
    chownSync(d, uid, uid);
  }
  const dbUrl = new URL(db.url);
  dbUrl.password = SECRETS.database; // trust auth: ignored by the server, but the agent holds it
  const env = {
    ATTUNE__DATABASE__URL: dbUrl.href,
    ATTUNE__DATABASE__SCHEMA: db.schema,
    ATTUNE__MESSAGE_QUEUE__URL: `amqp://${MQ_USER}:${SECRETS.broker}@127.0.0.1:5672/%2f`,
    ATTUNE__SECURITY__JWT_SECRET: SECRETS.jwt,
    ATTUNE__SECURITY__ENCRYPTION_KEY: SECRETS.encryption,
    ATTUNE__PACKS_BASE_DIR: join(work, 'packs'),
    ATTUNE__ARTIFACTS_DIR: dirs[0],
    ATTUNE__RUNTIME_ENVS_DIR: dirs[1],
    ATTUNE__WORKER__SHUTDOWN_TIMEOUT: '5',
    ATTUNE_WORKER_RUNTIMES: 'shell',
    ATTUNE_WORKER_NAME: name,
  };
  const asUid = uid === 0 ? [] : ['/usr/bin/setpriv', '--reuid', String(uid), '--regid', String(uid), '--clear-groups'];
  const command = [...(pid1 ? ['/usr/bin/unshare', '--pid', '--fork', '--mount-proc', '--kill-child=SIGKILL'] : []), ...asUid, agentFile];
  const leak = openSync(leakFile, 'r');
  let agent: AgentProcess;
  try {
    agent = startAgent(env, command.slice(1), { executable: command[0], inherit: [leak] });
  } finally {
    closeSync(leak);
  }
  procs.push(agent);
  const workerId = await consumingWorkerId(agent, db.pool, name, { timeoutMs: 30_000 });
  workerIds.push(workerId);
  const id = await createExecution(db.pool, { actionRef: `${PACK}.probe`, workerId });
  await publishExecutionRequested(mq, workerId, { execution_id: id, action_ref: `${PACK}.probe` });
  const row = await waitFor(`the probe under ${name} to end`, async () => {
    const r = await executionRow(db.pool, id);
    return ['completed', 'failed', 'timeout'].includes(r.status) ? r : undefined;
  }, { timeoutMs: 120_000 });
  assert.equal(row.status, 'completed', `the probe ran: ${JSON.stringify(row.result)}`);
  const stdout = String(row.result?.stdout ?? '').trim();
  return { report: JSON.parse(stdout.slice(stdout.lastIndexOf('\n') + 1)) as Report, agent };
}

function found(r: Report): string[] {
  const out: string[] = [];
  for (const a of r.ancestors) {
    for (const ch of ['environ', 'cmdline', 'fds', 'mem'] as const) for (const h of a[ch].hits ?? []) out.push(`${h} in /proc/${a.pid}/${ch} (${a.comm})`);
  }
  return out;
}

const RUNS = [
  { uid: 0, pid1: false },
  { uid: NONROOT, pid1: false },
  { uid: 0, pid1: true },
  { uid: NONROOT, pid1: true },
] as const;

describe('a hostile action looks for the agent\'s credentials in every ancestor', () => {
  for (const run of RUNS) {
    const label = `${run.pid1 ? 'the one file as PID 1 of a PID namespace' : 'the one file as a plain process'}, uid ${run.uid}`;
    test(`${label}: none in environ, cmdline, open files${run.uid === 0 ? '' : ', memory'}; the action holds fds 0-2 only`, async (t) => {
      const name = `e2e-hardening-${run.pid1 ? 'pid1' : 'plain'}-${run.uid}-${tag}`;
      const { report, agent } = await probeUnder(name, run.uid, run.pid1);
      t.diagnostic(JSON.stringify(report.ancestors.map((a) => ({ pid: a.pid, comm: a.comm, environ: a.environ, fds: a.fds, mem: a.mem.read ? { bytes: a.mem.bytes, hits: a.mem.hits } : a.mem.error }))));
      assert.equal(report.uid, run.uid);
      assert.deepEqual(report.own_fds, [0, 1, 2], 'the action inherited nothing but stdin, stdout, stderr');
      // Who was searched: the agent, and under a namespace its init, PID 1.
      if (run.pid1) {
        assert.deepEqual(report.ancestors.map((a) => a.pid), [2, 1], 'the agent (pid 2) under its init (pid 1)');
      } else {
        assert.deepEqual(report.ancestors.map((a) => a.pid), [agent.child.pid], 'the agent, started directly by this test');
      }
      assert.deepEqual(found(report), [], 'no credential found anywhere');
      for (const a of report.ancestors) {
        assert.ok(a.cmdline.read, `/proc/${a.pid}/cmdline is world-readable, and was searched`);
        if (run.uid === 0) {
          // Root reads everything: the environment is there, and empty; the open files were searched.
          assert.ok(a.environ.read && a.fds.read, `root read /proc/${a.pid}/environ and fd: ${JSON.stringify(a)}`);
          assert.equal(a.environ.nonzero, 0, `/proc/${a.pid}/environ (${a.comm}) holds no byte of environment`);
        } else {
          // Not dumpable: /proc/<pid>/{environ,fd,mem} belong to root, ptrace is refused.
          for (const ch of ['environ', 'fds', 'mem'] as const) assert.equal(a[ch].read, false, `uid ${run.uid} cannot read /proc/${a.pid}/${ch} (${a.comm}): ${JSON.stringify(a[ch])}`);
        }
      }
      // unshare ignores SIGTERM while it waits: the namespace's init gets it (and forwards it to the agent).
      if (run.pid1) process.kill(Number(readFileSync(`/proc/${agent.child.pid}/task/${agent.child.pid}/children`, 'utf8').trim()), 'SIGTERM');
      else agent.child.kill('SIGTERM');
      const exit = await agent.exited;
      assert.equal(exit.code, 0, `the agent stops cleanly (stderr: ${agent.stderr.join('')})`);
    });
  }
});

test('control: the same probe under a careless parent finds every credential on every channel, as root and as uid 65532', () => {
  const actions = join(work, 'packs', PACK, 'actions');
  for (const uid of [0, NONROOT]) {
    const asUid = uid === 0 ? [] : ['--reuid', String(uid), '--regid', String(uid), '--clear-groups'];
    // The parent: the database password and JWT secret in its environment, the broker password on
    // its command line, the encryption key in an open file (fd 7), all of them in its memory.
    const script = `exec 7<"$1"; /usr/bin/python3 "${actions}/probe.py" "${actions}/needles" ${process.pid} always; :`;
    const argv = [...asUid, '/usr/bin/env', `DBPW=${SECRETS.database}`, `JWT=${SECRETS.jwt}`, '/bin/sh', '-c', script, 'sh', join(work, 'control-secret'), SECRETS.broker];
    writeFileSync(join(work, 'control-secret'), `${SECRETS.encryption}\n`, { mode: 0o644 });
    const r = uid === 0 ? spawnSync(argv[0], argv.slice(1), { encoding: 'utf8' }) : spawnSync('/usr/bin/setpriv', argv, { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const report = JSON.parse(r.stdout.trim()) as Report;
    assert.equal(report.uid, uid);
    // The first ancestor is the careless sh (setpriv and env exec'd into it).
    const parent = report.ancestors[0];
    assert.equal(parent.comm, 'sh');
    assert.deepEqual(parent.environ.hits, ['database', 'jwt'], `environ (uid ${uid})`);
    assert.deepEqual(parent.cmdline.hits, ['broker'], `cmdline (uid ${uid})`);
    assert.deepEqual(parent.fds.hits, ['encryption'], `open files (uid ${uid})`);
    // The file's content never enters sh's memory: the other three do.
    assert.deepEqual(parent.mem.hits, ['broker', 'database', 'jwt'], `memory (uid ${uid})`);
  }
});
