/** The agent as a process (`node src/main.ts`, env config): register, recover, heartbeat, SIGTERM → inactive, exit 0. */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createTestDatabase, type TestDatabase } from '../../helpers/pg.ts';
import { registerWorker } from '../../../src/db/registration.ts';
import { EXIT } from '../../../src/exit-codes.ts';
import { loadConfig } from '../../../src/config/index.ts';
import { runWorker, type AgentContext, type AgentService } from '../../../src/worker/lifecycle.ts';
import { createPool } from '../../../src/db/pool.ts';
import type { Config } from '../../../src/config/index.ts';
import type { Logger } from '../../../src/observe/logger.ts';
import { waitFor } from '../../helpers/wait.ts';

const MAIN = fileURLToPath(new URL('../../../src/main.ts', import.meta.url));
const PASSWORD = 'Proc-test-Secret-42';
let db: TestDatabase;
let cwd: string;
before(async () => {
  db = await createTestDatabase('agent_process');
  cwd = mkdtempSync(join(tmpdir(), 'attune-agent-proc-')); // no config.yaml here
});
after(async () => {
  await db?.drop();
  if (cwd) rmSync(cwd, { recursive: true, force: true });
});

function dbUrlWithPassword(database?: string): string {
  const u = new URL(db.url);
  u.password = PASSWORD;
  if (database) u.pathname = '/' + database;
  return u.toString();
}

function startAgent(env: Record<string, string>) {
  const child = spawn(process.execPath, [MAIN], {
    cwd,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, exited, out: () => stdout, err: () => stderr };
}

function killIfAlive(child: ChildProcess): void {
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
}

test('registers, recovers its stale running execution, heartbeats; SIGTERM → inactive and exit 0', async () => {
  // A previous incarnation of this worker left an execution running.
  const prev = await registerWorker(db.pool, { name: 'proc-worker', workerType: 'local', runtimeId: null, host: 'old-host', port: null, capabilities: {} });
  await db.pool.query(`UPDATE worker SET status = 'inactive', last_heartbeat = now() - interval '1 hour' WHERE id = $1`, [prev.id]);
  const stale = (await db.pool.query(`INSERT INTO execution (action_ref, worker, status) VALUES ('core.echo', $1, 'running') RETURNING id`, [prev.id])).rows[0].id;

  const agent = startAgent({
    ATTUNE__DATABASE__URL: dbUrlWithPassword(),
    ATTUNE__DATABASE__SCHEMA: 'attune',
    ATTUNE__WORKER__HEARTBEAT_INTERVAL: '1',
    ATTUNE_WORKER_NAME: 'proc-worker',
    ATTUNE_WORKER_TYPE: 'container',
    ATTUNE__LOG__LEVEL: 'debug',
  });
  try {
    const row = await waitFor('the worker row to be active with a fresh heartbeat', async () => {
      const r = (await db.pool.query(`SELECT * FROM worker WHERE name = 'proc-worker'`)).rows[0];
      return r && r.status === 'active' && Date.now() - r.last_heartbeat.getTime() < 5000 ? r : null;
    }, { timeoutMs: 15_000 });
    assert.equal(row.id, prev.id, 'same row reused');
    assert.equal(row.worker_type, 'local', 'worker_type of an existing row untouched');
    assert.notEqual(row.host, 'old-host');
    const caps = row.capabilities;
    assert.equal(caps.agent_mode, true);
    assert.equal(caps.agent_binary_name, 'attune-agent');
    assert.equal(caps.max_concurrent_executions, 10);
    assert.ok(Array.isArray(caps.detected_interpreters) && caps.detected_interpreters.length > 0, 'something detected (a shell at least)');
    // ATTUNE_WORKER_RUNTIMES was unset: runtimes = detected names + native.
    assert.deepEqual(caps.runtimes, [...caps.detected_interpreters.map((d: { name: string }) => d.name), 'native']);

    const ex = await waitFor('the stale execution to be failed', async () => {
      const r = (await db.pool.query('SELECT status, result FROM execution WHERE id = $1', [stale])).rows[0];
      return r.status === 'failed' ? r : null;
    });
    assert.match(ex.result.error, /attune-agent restarted while this execution was running/);

    const firstBeat = row.last_heartbeat.getTime();
    await waitFor('a later heartbeat', async () => {
      const r = (await db.pool.query('SELECT last_heartbeat FROM worker WHERE id = $1', [prev.id])).rows[0];
      return r.last_heartbeat.getTime() > firstBeat;
    }, { timeoutMs: 5000 });
    const autoRows = (await db.pool.query(`SELECT ref FROM runtime WHERE auto_detected ORDER BY ref`)).rows.map((r) => r.ref);
    assert.deepEqual(autoRows, caps.detected_interpreters.map((d: { name: string }) => `auto.${d.name}`).sort());

    agent.child.kill('SIGTERM');
    assert.equal(await agent.exited, 0, agent.err());
    assert.equal((await db.pool.query('SELECT status FROM worker WHERE id = $1', [prev.id])).rows[0].status, 'inactive');
    const lines = agent.out().trim().split('\n').map((l) => JSON.parse(l));
    assert.ok(lines.some((l) => l.msg === 'worker deregistered (status inactive)'));
    assert.doesNotMatch(agent.out() + agent.err(), new RegExp(PASSWORD), 'the password never reaches a log');
  } finally {
    killIfAlive(agent.child);
  }
});

test('two agents racing on one name: one row, both keep running, both stop cleanly', async () => {
  const env = {
    ATTUNE__DATABASE__URL: db.url,
    ATTUNE__WORKER__HEARTBEAT_INTERVAL: '1',
    ATTUNE_WORKER_NAME: 'racing-replica',
    ATTUNE_WORKER_RUNTIMES: 'shell',
  };
  const agents = [startAgent(env), startAgent(env)];
  try {
    const registered = (a: (typeof agents)[number]) => a.out().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l))
      .find((l) => typeof l.worker_id === 'number');
    const ids = await waitFor('both agents to register', async () => {
      const r = agents.map(registered);
      return r.every(Boolean) ? r.map((l) => l.worker_id) : null;
    }, { timeoutMs: 20_000 });
    const rows = (await db.pool.query(`SELECT id, status FROM worker WHERE name = 'racing-replica'`)).rows;
    assert.equal(rows.length, 1, 'one row for the name');
    assert.deepEqual(ids, [rows[0].id, rows[0].id], 'both agents hold the same row');
    // Two more beats on the shared row (1 s interval): both agents keep beating side by side.
    const beats = new Set<number>();
    await waitFor('two more heartbeats on the shared row', async () => {
      beats.add((await db.pool.query('SELECT last_heartbeat FROM worker WHERE id = $1', [rows[0].id])).rows[0].last_heartbeat.getTime());
      return beats.size >= 3;
    }, { timeoutMs: 5_000 });
    for (const a of agents) assert.equal(a.child.exitCode, null, `both still running: ${a.err()}`);
    for (const a of agents) a.child.kill('SIGTERM');
    assert.deepEqual(await Promise.all(agents.map((a) => a.exited)), [0, 0]);
  } finally {
    for (const a of agents) killIfAlive(a.child);
  }
});

test('an unusable database exits with the start-up code and a message that names it', async () => {
  const agent = startAgent({
    ATTUNE__DATABASE__URL: dbUrlWithPassword('attune_no_such_database'),
    ATTUNE__DATABASE__CONNECT_TIMEOUT: '3',
    ATTUNE_WORKER_NAME: 'proc-broken',
  });
  try {
    assert.equal(await agent.exited, EXIT.STARTUP);
    const all = agent.out() + agent.err();
    assert.match(all, /database \\?"attune_no_such_database\\?" does not exist on PostgreSQL at 127\.0\.0\.1:5432/);
    assert.doesNotMatch(all, new RegExp(PASSWORD));
  } finally {
    killIfAlive(agent.child);
  }
});

const silent = { info() {}, warn() {}, error() {}, debug() {}, child() { return silent; } } as unknown as Logger;

/** The lifecycle in this process, with a pool of its own (main.ts's part) and these services. */
async function runInProcess(config: Readonly<Config>, o: { services: AgentService[]; env: Record<string, string | undefined>; hostname?: string; shutdown?: AbortSignal }): Promise<number> {
  const pool = createPool(config.database);
  try {
    return await runWorker(config, {
      log: silent, env: o.env, hostname: o.hostname ?? 'test-host', pool, health: null, metrics: null, shutdown: o.shutdown,
      services: () => o.services,
      exitNow: () => assert.fail('no third signal in these tests'),
    });
  } finally {
    await pool.end();
  }
}

test('in process: services start after registration and drain while the heartbeat still beats; deregistration comes last', async () => {
  const env: Record<string, string | undefined> = { PATH: process.env.PATH, ATTUNE_WORKER_RUNTIMES: 'shell' };
  const config = loadConfig({
    env: { ATTUNE__DATABASE__URL: db.url, ATTUNE__WORKER__HEARTBEAT_INTERVAL: '1', ATTUNE_WORKER_NAME: 'lifecycle', ATTUNE_WORKER_RUNTIMES: 'shell' },
    cwd, flags: {}, implicitFiles: false,
  });
  const events: string[] = [];
  const shutdown = new AbortController();
  let seen: AgentContext | undefined;
  const service: AgentService = {
    name: 'fake-broker',
    async start(ctx) {
      seen = ctx;
      const r = (await ctx.pool.query('SELECT status FROM worker WHERE id = $1', [ctx.worker.id])).rows[0];
      events.push(`start:${r.status}`);
      queueMicrotask(() => shutdown.abort());
    },
    async stop(ctx, reason) {
      // A periodic beat (not just the immediate first one) lands while the service drains.
      const beats = Math.max(ctx.heartbeat.state().beats, 1);
      await waitFor('a heartbeat during the drain', () => ctx.heartbeat.state().beats > beats, { timeoutMs: 5000 });
      const r = (await ctx.pool.query('SELECT status FROM worker WHERE id = $1', [ctx.worker.id])).rows[0];
      events.push(`stop:${reason}:${r.status}`);
    },
  };
  const code = await runInProcess(config, { services: [service], env, hostname: 'test-host', shutdown: shutdown.signal });
  assert.equal(code, EXIT.OK);
  assert.deepEqual(events, ['start:active', 'stop:shutdown requested:active']);
  assert.ok(seen);
  assert.equal(seen.worker.name, 'lifecycle');
  assert.deepEqual(seen.detection.selected.map((d) => d.name), ['shell']);
  assert.equal(env.ATTUNE_WORKER_RUNTIMES, 'shell', 'an explicit filter is kept');
  assert.deepEqual((seen.worker.capabilities as { runtimes: string[] }).runtimes, ['shell', 'native']);
  assert.equal(seen.heartbeat.state().running, false);
  const row = (await db.pool.query(`SELECT status, host FROM worker WHERE name = 'lifecycle'`)).rows[0];
  assert.deepEqual(row, { status: 'inactive', host: 'test-host' });
});

test('in process: a service that fails to start stops the ones already started and exits with the start-up code', async () => {
  const config = loadConfig({ env: { ATTUNE__DATABASE__URL: db.url, ATTUNE_WORKER_NAME: 'failing-start' }, cwd, flags: {}, implicitFiles: false });
  const events: string[] = [];
  const ok: AgentService = { name: 'ok', start: async () => void events.push('ok:start'), stop: async () => void events.push('ok:stop') };
  const bad: AgentService = { name: 'bad', start: async () => { throw new Error('broker unreachable'); }, stop: async () => void events.push('bad:stop') };
  const code = await runInProcess(config, { services: [ok, bad], env: { PATH: process.env.PATH } });
  assert.equal(code, EXIT.STARTUP);
  assert.deepEqual(events, ['ok:start', 'ok:stop']);
  assert.equal((await db.pool.query(`SELECT status FROM worker WHERE name = 'failing-start'`)).rows[0].status, 'inactive');
});
