/**
 * `npm run demo`: the agent's main job on the local PostgreSQL and RabbitMQ, end to end.
 * Checks both servers, builds the executable if needed, creates its own RabbitMQ vhost and its own
 * database (so a shared or stale broker cannot take its dispatches), seeds the catalog, starts the
 * built agent, dispatches one execution per action of examples/packs/demo the way Attune's executor
 * does, prints the results, stops the agent with SIGTERM, and removes the vhost and the database.
 *
 * It never hangs: a lost broker connection, an agent that exits early, Ctrl-C or the overall
 * deadline stop it at once; then every connection is closed, the agent stopped, the vhost and the
 * database removed, and it exits 1 saying what failed and what to do.
 *
 * Env: ATTUNE_DEMO_PG_URL (admin URL, default postgresql://postgres@127.0.0.1:5432/postgres),
 *      ATTUNE_DEMO_AMQP_URL (default amqp://guest:guest@127.0.0.1:5672/%2f; the broker on this
 *      machine: the vhost is made with rabbitmqctl, so run as root),
 *      ATTUNE_DEMO_DEADLINE_S (default 120: seconds allowed after the build).
 */
import { spawn, execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { connect, type ChannelModel } from 'amqplib';
import { devSchemaSql } from '../test/helpers/pg.ts';
import { collectExecutionMessages, publishExecutionRequested } from '../test/helpers/amqp.ts';
import {
  createExecution, executionRow, seedCoreRuntimes, seedPackFromDir, startAgent,
  type ActionDef, type AgentProcess,
} from '../test/harness/platform.ts';

const ADMIN_URL = process.env.ATTUNE_DEMO_PG_URL || 'postgresql://postgres@127.0.0.1:5432/postgres';
const AMQP_URL = process.env.ATTUNE_DEMO_AMQP_URL || 'amqp://guest:guest@127.0.0.1:5672/%2f';
const DEADLINE_S = Number(process.env.ATTUNE_DEMO_DEADLINE_S || 120);
/** A first build on a slow machine takes a few minutes; a build that takes this long is stuck. */
const BUILD_DEADLINE_S = 15 * 60;
const RUN_ID = randomBytes(4).toString('hex');
const DB_NAME = `attune_agent_demo_${RUN_ID}`;
const VHOST = `attune-agent-demo-${RUN_ID}`;
const WORKER_NAME = 'attune-agent-demo';
const root = new URL('..', import.meta.url).pathname;
const packsDir = join(root, 'examples/packs');
const SETUP_FIX = 'run `npm run setup` as root (installs and starts PostgreSQL and RabbitMQ), then the demo again';

const SAMPLES: Record<string, Record<string, unknown>> = {
  'demo.hello': { name: "Ada O'Brien", times: 2 },
  'demo.stats': { numbers: [3, 1, 4, 1, 5, 9, 2, 6] },
  'demo.transform': { text: 'attune agent', mode: 'upper' },
};

/** A failure the user can act on: what failed, and the fix. */
class DemoError extends Error {
  readonly fix: string;
  constructor(what: string, fix: string) {
    super(what);
    this.fix = fix;
  }
}

/**
 * Rejects the demo the moment something fatal happens outside the awaited step (lost broker
 * connection, agent gone, Ctrl-C, deadline). `guard` races a step against it.
 */
class Tripwire {
  failed: Error | null = null;
  readonly #tripped: Promise<never>;
  #reject!: (e: Error) => void;
  constructor() {
    this.#tripped = new Promise<never>((_, reject) => (this.#reject = reject));
    this.#tripped.catch(() => undefined);
  }
  fail(e: Error): void {
    if (this.failed) return;
    this.failed = e;
    this.#reject(e);
  }
  readonly #inflight = new Set<Promise<unknown>>();
  /** `p`, or the trip if it comes first; `p` is remembered until it settles (see `settled`). */
  guard<T>(p: Promise<T>): Promise<T> {
    const tracked = p.then(() => undefined, () => undefined);
    this.#inflight.add(tracked);
    void tracked.then(() => this.#inflight.delete(tracked));
    return Promise.race([p, this.#tripped]);
  }
  /** Steps still running after a trip: waited for, so what they create is registered before the clean-up. */
  async settled(): Promise<void> {
    await Promise.all([...this.#inflight]);
  }
  /** Throws when tripped: a step that finished after the trip must not start the next one. */
  check(): void {
    if (this.failed) throw this.failed;
  }
  readonly #timers = new Set<NodeJS.Timeout>();
  /** Trip with `e` after `seconds` unless the returned function is called first. */
  armDeadline(seconds: number, e: Error): () => void {
    const timer = setTimeout(() => this.fail(e), seconds * 1000);
    this.#timers.add(timer);
    return () => {
      clearTimeout(timer);
      this.#timers.delete(timer);
    };
  }
  /** The demo is over (either way): no deadline may fire during the clean-up. */
  disarm(): void {
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
  }
}

/**
 * What to undo, run newest first, each step bounded; a failing step is reported, not thrown. Once it
 * has run, anything added later (a step that finished after a trip) is undone at once.
 */
class Teardown {
  readonly #steps: { what: string; undo: () => Promise<unknown> }[] = [];
  #done = false;
  /** Returns a function that drops the step (when what it undoes has ended by itself). */
  add(what: string, undo: () => Promise<unknown>): () => void {
    const s = { what, undo };
    if (this.#done) void bounded(what, undo());
    else this.#steps.push(s);
    return () => {
      const i = this.#steps.indexOf(s);
      if (i >= 0) this.#steps.splice(i, 1);
    };
  }
  async run(): Promise<void> {
    this.#done = true;
    for (const s of this.#steps.reverse()) {
      console.log(`  ${s.what}`);
      await bounded(s.what, s.undo());
    }
  }
}

async function bounded(what: string, p: Promise<unknown>, ms = 15_000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${ms / 1000} s`)), ms)));
  try {
    await Promise.race([p, timeout]);
  } catch (e) {
    console.error(`cleanup: ${what} failed: ${(e as Error).message}`);
  } finally {
    clearTimeout(timer);
  }
}

let trip: Tripwire;

/**
 * Create something and register its undo in one chain, guarded: even when the trip wins the race,
 * the chain goes on and registers the undo (Teardown undoes it at once if it already ran).
 */
function acquire<T>(td: Teardown, what: string, create: () => Promise<T>, undo: (v: T) => Promise<unknown>): Promise<T> {
  return trip.guard(create().then((v) => {
    td.add(what, () => undo(v));
    return v;
  }));
}

/**
 * Poll `check` until truthy, at most `timeoutMs`. Stops at once when the demo is tripped, so no loop
 * is left polling closed connections while the clean-up runs.
 */
async function poll<T>(what: string, check: () => T | Promise<T>, timeoutMs: number): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    trip.check();
    try {
      const v = await check();
      if (v) return v as NonNullable<T>;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new DemoError(`timed out after ${timeoutMs / 1000} s waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`, 'see the agent\'s log lines above');
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

function step(msg: string): void {
  trip.check();
  process.stdout.write(`\n== ${msg}\n`);
}

function hostOf(url: string): string {
  return new URL(url).host;
}

async function connectPg(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  client.on('error', () => undefined); // a dropped connection fails the query that uses it
  try {
    await client.connect();
  } catch (e) {
    await client.end().catch(() => undefined);
    throw new DemoError(`PostgreSQL at ${hostOf(url)} is unreachable or refuses user ${new URL(url).username || 'postgres'}: ${(e as Error).message}`, `${SETUP_FIX}, or set ATTUNE_DEMO_PG_URL`);
  }
  return client;
}

async function connectMq(url: string): Promise<ChannelModel> {
  try {
    const model = await connect(url, { timeout: 5000 } as Parameters<typeof connect>[1]);
    model.on('error', () => undefined); // reported through 'close'
    return model;
  } catch (e) {
    throw new DemoError(`RabbitMQ at ${hostOf(url)} is unreachable or refuses the login: ${(e as Error).message}`, `${SETUP_FIX}, or set ATTUNE_DEMO_AMQP_URL`);
  }
}

function rabbitmqctl(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('rabbitmqctl', ['-q', ...args], { timeout: 30_000 }, (err, stdout, stderr) => {
      if (!err) return resolve();
      const out = `${stdout}${stderr}`.trim();
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return reject(new DemoError('rabbitmqctl is not installed (the demo makes its own vhost with it)', SETUP_FIX));
      if (/only root or rabbitmq/i.test(out)) return reject(new DemoError(`rabbitmqctl ${args[0]} refused: it runs only as root or rabbitmq (the demo makes its own vhost with it)`, 'run the demo as root'));
      reject(new DemoError(`rabbitmqctl ${args.join(' ')} failed: ${out || err.message}`, 'check the broker with `rabbitmqctl status`'));
    });
  });
}

/**
 * The demo's own vhost on the local broker, with the URL's user allowed in; returns its URL. A
 * failure after add_vhost deletes it again (the caller registers the delete only on success).
 */
async function createVhost(): Promise<string> {
  const url = new URL(AMQP_URL);
  if (!['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname)) {
    throw new DemoError(`ATTUNE_DEMO_AMQP_URL points at ${url.host}, but the demo makes its own vhost with rabbitmqctl, which reaches only the broker on this machine`, 'point ATTUNE_DEMO_AMQP_URL at 127.0.0.1');
  }
  await rabbitmqctl(['add_vhost', VHOST]);
  try {
    await rabbitmqctl(['set_permissions', '-p', VHOST, decodeURIComponent(url.username) || 'guest', '.*', '.*', '.*']);
  } catch (e) {
    await rabbitmqctl(['delete_vhost', VHOST]).catch(() => undefined);
    throw e;
  }
  url.pathname = `/${VHOST}`;
  return url.toString();
}

/** `npm run build` (incremental); the build prints its own progress and errors. */
function build(td: Teardown): Promise<void> {
  const child = spawn(process.execPath, [join(root, 'build/build.ts')], { stdio: 'inherit', cwd: root });
  const running = td.add('stop the build', async () => void child.kill('SIGTERM'));
  return new Promise((resolve, reject) => {
    child.on('error', (e) => reject(new DemoError(`cannot run the build: ${e.message}`, 'run `npm ci` first')));
    child.on('exit', (code, signal) => {
      running();
      if (code === 0) resolve();
      else reject(new DemoError(`the build failed (${signal ?? `exit ${code}`}; its output is above)`, SETUP_FIX.replace('PostgreSQL and RabbitMQ', 'the build tools, PostgreSQL and RabbitMQ')));
    });
  });
}

/** SIGTERM, then SIGKILL if it is still there after 10 s. */
async function stopAgent(agent: AgentProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  const killer = setTimeout(() => agent.child.kill('SIGKILL'), 10_000);
  try {
    return await agent.stop('SIGTERM');
  } finally {
    clearTimeout(killer);
  }
}

// ─── Catalog seeding ──────────────────────────────────────────────────────────────────────────
// What Attune's API and pack loader would have put in the database before any worker runs: the
// core runtimes and the demo pack's actions. Swap this one function when the catalog changes.
async function seedCatalog(db: pg.Pool): Promise<ActionDef[]> {
  const runtimeIds = await seedCoreRuntimes(db);
  const actions = await seedPackFromDir(db, join(packsDir, 'demo'), runtimeIds);
  console.log(`seeded runtimes ${Object.keys(runtimeIds).join(', ')} and actions ${actions.map((a) => a.ref).join(', ')}`);
  return actions;
}
// ──────────────────────────────────────────────────────────────────────────────────────────────

async function demo(td: Teardown): Promise<number> {
  if (!(DEADLINE_S > 0)) throw new DemoError(`ATTUNE_DEMO_DEADLINE_S must be a number of seconds above 0, got '${process.env.ATTUNE_DEMO_DEADLINE_S}'`, 'unset it (default 120) or give seconds');
  step('PostgreSQL and RabbitMQ');
  const admin = await acquire(td, 'close the PostgreSQL admin connection', () => connectPg(ADMIN_URL), (c) => c.end());
  const probe = await trip.guard(connectMq(AMQP_URL));
  await probe.close().catch(() => undefined);
  console.log(`PostgreSQL at ${hostOf(ADMIN_URL)} and RabbitMQ at ${hostOf(AMQP_URL)} answer`);

  step('build (incremental)');
  const buildDone = trip.armDeadline(BUILD_DEADLINE_S, new DemoError(`the build did not finish within ${BUILD_DEADLINE_S / 60} min`, 'see its output above; `npm run build` alone shows where it stops'));
  await trip.guard(build(td));
  buildDone();
  trip.armDeadline(DEADLINE_S, new DemoError(`the demo did not finish within ${DEADLINE_S} s after the build (it stopped at the step above)`, 'see the step above; ATTUNE_DEMO_DEADLINE_S allows longer'));

  step(`RabbitMQ vhost ${VHOST} (the demo's own, removed at the end)`);
  const vhostUrl = await acquire(td, `delete RabbitMQ vhost ${VHOST}`, createVhost, () => rabbitmqctl(['delete_vhost', VHOST]));
  let mqClosed = false;
  const mq = await acquire(td, 'close the RabbitMQ connection', async () => {
    const model = await connectMq(vhostUrl);
    model.on('close', () => {
      mqClosed = true;
      trip.fail(new DemoError('the demo lost its RabbitMQ connection', `check that RabbitMQ is up (\`rabbitmqctl status\`); ${SETUP_FIX}`));
    });
    return model;
  }, async (model) => {
    if (mqClosed) return;
    model.removeAllListeners('close');
    await model.close();
  });
  const collector = await trip.guard(collectExecutionMessages(mq));

  step(`database ${DB_NAME} with the development schema (the demo's own, dropped at the end)`);
  await acquire(td, `drop database ${DB_NAME}`, () => admin.query(`CREATE DATABASE ${DB_NAME}`), () => admin.query(`DROP DATABASE IF EXISTS ${DB_NAME} WITH (FORCE)`));
  const dbUrl = new URL(ADMIN_URL);
  dbUrl.pathname = `/${DB_NAME}`;
  const db = new pg.Pool({ connectionString: dbUrl.toString(), options: '-c search_path=attune,public', connectionTimeoutMillis: 5000 });
  db.on('error', () => undefined);
  td.add('close the database pool', () => db.end());
  await trip.guard(db.query(devSchemaSql('attune')));
  const actions = await trip.guard(seedCatalog(db));

  step('start the agent (dist/attune-agent)');
  const work = mkdtempSync(join(tmpdir(), 'attune-agent-demo-'));
  td.add('remove the work folder', async () => rmSync(work, { recursive: true, force: true }));
  const agent = startAgent({
    ATTUNE__DATABASE__URL: dbUrl.toString(),
    ATTUNE__MESSAGE_QUEUE__URL: vhostUrl,
    ATTUNE__PACKS_BASE_DIR: packsDir,
    ATTUNE__ARTIFACTS_DIR: join(work, 'artifacts'),
    ATTUNE__RUNTIME_ENVS_DIR: join(work, 'runtime_envs'),
    ATTUNE_WORKER_NAME: WORKER_NAME,
    ATTUNE__WORKER__HEARTBEAT_INTERVAL: '10',
  });
  let stopping = false;
  td.add('stop the agent', async () => {
    if (agent.child.exitCode !== null || agent.child.signalCode !== null) return;
    stopping = true;
    await stopAgent(agent);
  });
  agent.child.on('error', (e) => trip.fail(new DemoError(`cannot start dist/attune-agent: ${e.message}`, 'run `npm run build`')));
  void agent.exited.then(({ code, signal }) => {
    if (stopping) return;
    console.error(agent.stderr.join(''));
    for (const l of agent.logs.slice(-20)) console.error(JSON.stringify(l));
    trip.fail(new DemoError(`the agent exited early with ${signal ?? `code ${code}`} (its last log lines are above)`, 'see the agent\'s error above (exit codes: README "Exit codes")'));
  });
  const worker = await trip.guard(poll('the worker row', async () => (await db.query(`SELECT id, status, capabilities FROM worker WHERE name = $1 AND status = 'active'`, [WORKER_NAME])).rows[0], 20_000));
  await trip.guard(poll('the agent to consume dispatches', () => agent.logs.some((l) => l.msg === 'consuming execution dispatches'), 20_000));
  const workerId = Number(worker.id);
  console.log(`worker ${WORKER_NAME} registered as id ${workerId}; runtimes ${JSON.stringify(worker.capabilities.runtimes)}`);
  for (const d of worker.capabilities.detected_interpreters as { name: string; path: string; version: string | null }[]) {
    console.log(`  ${d.name.padEnd(8)} ${d.path} (${d.version ?? 'unknown version'})`);
  }

  step('dispatch one execution per action (ExecutionRequested, as Attune\'s executor sends it)');
  const ids: [string, number][] = [];
  for (const a of actions) {
    const config = SAMPLES[a.ref] ?? {};
    const id = await trip.guard(createExecution(db, { actionRef: a.ref, workerId, config }));
    await trip.guard(publishExecutionRequested(mq, workerId, { execution_id: id, action_ref: a.ref, config }));
    ids.push([a.ref, id]);
    console.log(`execution ${id}: ${a.ref} ${JSON.stringify(config)}`);
  }
  const completed = (id: number): boolean => collector.forExecution(id).some((m) => m.routingKey === 'execution.completed');
  await trip.guard(poll('ExecutionCompleted for every execution', () => ids.every(([, id]) => completed(id)), 60_000));

  step('results (execution rows written by the agent)');
  let failures = 0;
  for (const [ref, id] of ids) {
    const r = await trip.guard(executionRow(db, id));
    const completion = collector.forExecution(id).find((m) => m.routingKey === 'execution.completed')!;
    if (r.status !== 'completed') failures++;
    console.log(`${ref} (execution ${id}): ${r.status} / ExecutionCompleted.status=${completion.json?.payload?.status}`);
    console.log(`  result: ${JSON.stringify(r.result)}`);
  }

  step('stop the agent (SIGTERM)');
  stopping = true;
  const exit = await trip.guard(stopAgent(agent));
  const after = (await trip.guard(db.query('SELECT status FROM worker WHERE id = $1', [workerId]))).rows[0];
  console.log(`agent exited with code ${exit.code}; worker row status: ${after.status}`);
  if (failures > 0) console.error(`demo: ${failures} execution(s) did not complete (results above)`);
  return failures > 0 || exit.code !== 0 ? 1 : 0;
}

async function main(): Promise<void> {
  trip = new Tripwire();
  const td = new Teardown();
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => trip.fail(new DemoError(`interrupted (${sig})`, 'nothing to fix: run the demo again')));
  }
  let code = 1;
  try {
    code = await trip.guard(demo(td));
  } catch (e) {
    console.error(`\ndemo failed: ${(e as Error).message}`);
    console.error(`fix: ${e instanceof DemoError ? e.fix : 'none known: this failure is unexpected (the step it happened in is above); please report it with this output'}`);
    await bounded('wait for the step in progress', trip.settled(), 20_000);
  }
  trip.disarm();
  process.stdout.write('\n== clean up\n');
  await td.run();
  process.exitCode = code;
  // Everything is closed now; if a stray handle still holds the process, say so and leave anyway.
  setTimeout(() => {
    console.error(`demo: still open after clean-up (${process.getActiveResourcesInfo().join(', ')}); exiting`);
    process.exit(code);
  }, 3000).unref();
}

void main();
