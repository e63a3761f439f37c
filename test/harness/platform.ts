/**
 * A stand-in for the Attune platform around one agent: it does what Attune's API, pack loader and
 * executor do to a worker — core runtime rows, pack/action rows read from a pack folder, execution
 * rows, `ExecutionRequested` dispatches — so the demo and the end-to-end tests can watch the real
 * agent executable do its part. Uses the dev schema (docker/dev/attune-schema.sql).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { readdirSync, readFileSync, existsSync, mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import type pg from 'pg';
import { seedCoreCatalog } from '../fixtures/catalog/core-runtimes.ts';
import { waitFor } from '../helpers/wait.ts';

/**
 * The runtime keys tests and the demo use (an action's `runtime`, a pack YAML's `runner_type`) →
 * the rows of Attune's core catalog (test/fixtures/catalog/core-runtimes.ts).
 */
export const CORE_RUNTIME_REFS: Record<string, string> = {
  shell: 'core.shell', python: 'core.python', node: 'core.nodejs', perl: 'core.perl', ruby: 'core.ruby',
  java: 'core.java', go: 'core.go', r: 'core.r', native: 'core.native',
};

/**
 * An "image" as an agent's PATH: `dir` holding only sh, bash and `links` (name → host binary), so
 * detection, the advertised versions and the interpreter an action runs with all come from it.
 */
export function imagePath(dir: string, links: Record<string, string>): string {
  mkdirSync(dir, { recursive: true });
  for (const [n, target] of Object.entries({ sh: '/bin/sh', bash: '/bin/bash', ...links })) symlinkSync(target, join(dir, n));
  return dir;
}

/**
 * Start this database's worker and execution ids at a random base and return it (the first worker
 * registered gets base + 1). Other runs on the same broker use databases whose ids start at 1 too:
 * queue names (worker.{id}.*) and the ids in messages must not collide, or agents take each other's
 * dispatches.
 */
export async function separateIds(db: pg.Pool): Promise<number> {
  const base = randomInt(100_000, 1_000_000) * 1000;
  await db.query(`SELECT setval(pg_get_serial_sequence('worker', 'id'), $1), setval(pg_get_serial_sequence('execution', 'id'), $1)`, [base]);
  return base;
}

/**
 * Attune's real core catalog (platform-owned runtimes with their version rows, e.g. core.python
 * 3.11, 3.12 (default), 3.13) and the `core` pack, as a deployment has them. Returns key → runtime id.
 */
export async function seedCoreRuntimes(db: pg.Pool): Promise<Record<string, number>> {
  const catalog = await seedCoreCatalog(db);
  return Object.fromEntries(Object.entries(CORE_RUNTIME_REFS).map(([key, ref]) => [key, catalog.runtimes[ref].id]));
}

export interface ActionDef {
  ref: string;
  entrypoint: string;
  runtime: string;
  parameter_delivery?: 'stdin' | 'file';
  parameter_format?: 'json' | 'dotenv' | 'yaml';
  output_format?: 'text' | 'json' | 'yaml' | 'jsonl';
  timeout_seconds?: number | null;
  is_adhoc?: boolean;
}

/** Pack + action rows from a pack folder (pack.yaml + actions/*.yaml), like Attune's pack loader. */
export async function seedPackFromDir(db: pg.Pool, packDir: string, runtimeIds: Record<string, number>): Promise<ActionDef[]> {
  const pack = parseYaml(readFileSync(join(packDir, 'pack.yaml'), 'utf8')) as { ref: string; label?: string; version?: string };
  await db.query(`INSERT INTO pack (ref, label, version) VALUES ($1, $2, $3) ON CONFLICT (ref) DO NOTHING`, [pack.ref, pack.label ?? pack.ref, pack.version ?? '1.0.0']);
  const defs: ActionDef[] = [];
  const actionsDir = join(packDir, 'actions');
  for (const f of readdirSync(actionsDir).filter((x) => x.endsWith('.yaml')).sort()) {
    const a = parseYaml(readFileSync(join(actionsDir, f), 'utf8')) as Record<string, unknown>;
    const def: ActionDef = {
      ref: String(a.ref ?? `${pack.ref}.${f.replace(/\.yaml$/, '')}`),
      entrypoint: String(a.entry_point),
      runtime: String(a.runner_type ?? 'shell'),
      parameter_delivery: (a.parameter_delivery as ActionDef['parameter_delivery']) ?? 'stdin',
      parameter_format: (a.parameter_format as ActionDef['parameter_format']) ?? 'json',
      output_format: (a.output_format as ActionDef['output_format']) ?? 'text',
      timeout_seconds: (a.timeout as number | undefined) ?? null,
    };
    await insertAction(db, pack.ref, def, runtimeIds);
    defs.push(def);
  }
  return defs;
}

export async function insertAction(db: pg.Pool, packRef: string, def: ActionDef, runtimeIds: Record<string, number>): Promise<number> {
  await db.query(`INSERT INTO pack (ref, label, version) VALUES ($1, $1, '1.0.0') ON CONFLICT (ref) DO NOTHING`, [packRef]);
  const runtimeId = runtimeIds[def.runtime];
  if (runtimeId === undefined) throw new Error(`no runtime row for ${def.runtime}`);
  const res = await db.query(
    `INSERT INTO action (ref, pack, pack_ref, label, entrypoint, runtime, parameter_delivery, parameter_format, output_format, timeout_seconds, is_adhoc)
     VALUES ($1, (SELECT id FROM pack WHERE ref = $2), $2, $1, $3, $4, $5, $6, $7, $8, $9)
     ON CONFLICT (ref) DO UPDATE SET entrypoint = EXCLUDED.entrypoint, runtime = EXCLUDED.runtime,
       parameter_delivery = EXCLUDED.parameter_delivery, parameter_format = EXCLUDED.parameter_format,
       output_format = EXCLUDED.output_format, timeout_seconds = EXCLUDED.timeout_seconds, is_adhoc = EXCLUDED.is_adhoc
     RETURNING id`,
    [def.ref, packRef, def.entrypoint, runtimeId, def.parameter_delivery ?? 'stdin', def.parameter_format ?? 'json', def.output_format ?? 'text', def.timeout_seconds ?? null, def.is_adhoc ?? false],
  );
  return Number(res.rows[0].id);
}

/** An execution row as Attune's scheduler leaves it for a worker: `scheduled`, assigned. */
export async function createExecution(
  db: pg.Pool,
  f: { actionRef: string; workerId: number; config?: Record<string, unknown>; timeoutSeconds?: number | null; envVars?: unknown; status?: string },
): Promise<number> {
  const res = await db.query(
    `INSERT INTO execution (action, action_ref, config, env_vars, worker, status, timeout_seconds)
     VALUES ((SELECT id FROM action WHERE ref = $1), $1, $2, $3, $4, $5, $6) RETURNING id`,
    [f.actionRef, JSON.stringify(f.config ?? {}), f.envVars === undefined ? null : JSON.stringify(f.envVars), f.workerId, f.status ?? 'scheduled', f.timeoutSeconds ?? null],
  );
  return Number(res.rows[0].id);
}

export async function executionRow(db: pg.Pool, id: number): Promise<{ status: string; result: Record<string, unknown> | null; started_at: Date | null }> {
  const res = await db.query('SELECT status::text AS status, result, started_at FROM execution WHERE id = $1', [id]);
  return res.rows[0];
}

export interface AgentProcess {
  child: ChildProcess;
  /** Parsed JSON log lines (and raw non-JSON lines as {msg}). */
  logs: Record<string, unknown>[];
  stderr: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** waitFor (helpers/wait.ts) on the agent's log lines, failing at once when it exits; default 15 s. */
  waitForLog(what: string, pred: (l: Record<string, unknown>) => boolean, opts?: { timeoutMs?: number }): Promise<Record<string, unknown>>;
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export const AGENT_EXECUTABLE = new URL('../../dist/attune-agent', import.meta.url).pathname;

/** Start the built agent (dist/attune-agent) with a clean environment plus `env`. */
/** `inherit`: descriptors of this process handed to the agent as fds 3, 4, … (a caller's leaks). */
export function startAgent(env: Record<string, string>, args: string[] = [], opts: { executable?: string; cwd?: string; inherit?: number[] } = {}): AgentProcess {
  const exe = opts.executable ?? AGENT_EXECUTABLE;
  if (!existsSync(exe)) throw new Error(`${exe} is missing: run npm run build`);
  const child = spawn(exe, args, {
    // ATTUNE_AGENT_PIPES=off passes through: the control run of the real-pipes test.
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root', ...pick(process.env, 'ATTUNE_AGENT_PIPES'), ...env },
    stdio: ['ignore', 'pipe', 'pipe', ...(opts.inherit ?? [])],
    cwd: opts.cwd,
  });
  const logs: Record<string, unknown>[] = [];
  const stderr: string[] = [];
  let buf = '';
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString('utf8');
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (!line.trim()) continue;
      try {
        logs.push(JSON.parse(line));
      } catch {
        logs.push({ msg: line });
      }
    }
  });
  child.stderr!.on('data', (d: Buffer) => stderr.push(d.toString('utf8')));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  let exitedNow = false;
  void exited.then(() => (exitedNow = true));
  return {
    child, logs, stderr, exited,
    async waitForLog(what, pred, opts) {
      const hit = await waitFor(what, () => logs.find(pred) ?? (exitedNow ? 'exited' : undefined), { timeoutMs: 15_000, ...opts }).catch((e: Error) => {
        throw new Error(`${e.message}; last logs: ${JSON.stringify(logs.slice(-5))}`);
      });
      if (hit === 'exited') throw new Error(`agent exited while waiting for ${what}; stderr: ${stderr.join('')}; last logs: ${JSON.stringify(logs.slice(-5))}`);
      return hit;
    },
    async stop(signal = 'SIGTERM') {
      if (!exitedNow) child.kill(signal);
      return exited;
    },
  };
}

/** Wait until the agent named `name` consumes dispatches, then return its worker row's id. */
export async function consumingWorkerId(agent: AgentProcess, db: pg.Pool, name: string, opts?: { timeoutMs?: number }): Promise<number> {
  await agent.waitForLog(`worker ${name} to consume`, (l) => l.msg === 'consuming execution dispatches', opts);
  return Number((await db.query('SELECT id FROM worker WHERE name = $1', [name])).rows[0].id);
}

function pick(env: NodeJS.ProcessEnv, name: string): Record<string, string> {
  const v = env[name];
  return v === undefined ? {} : { [name]: v };
}
