/**
 * A stand-in for the Attune platform around one agent: it does what Attune's API, pack loader and
 * executor do to a worker — core runtime rows, pack/action rows read from a pack folder, execution
 * rows, `ExecutionRequested` dispatches — so the demo and the end-to-end tests can watch the real
 * agent executable do its part. Uses the dev schema (docker/dev/attune-schema.sql).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import type pg from 'pg';
import { waitFor } from '../helpers/wait.ts';

/** Core runtimes as Attune's core pack defines them (interpreter by name; the agent resolves paths). */
export const CORE_RUNTIMES: Record<string, { name: string; aliases: string[]; binary: string; ext: string; args?: string[] }> = {
  shell: { name: 'Shell', aliases: ['shell', 'bash', 'sh'], binary: '/bin/bash', ext: '.sh' },
  python: { name: 'Python', aliases: ['python', 'python3'], binary: 'python3', ext: '.py' },
  node: { name: 'Node.js', aliases: ['node', 'nodejs', 'node.js'], binary: 'node', ext: '.js' },
  perl: { name: 'Perl', aliases: ['perl', 'perl5'], binary: 'perl', ext: '.pl' },
  ruby: { name: 'Ruby', aliases: ['ruby', 'rb'], binary: 'ruby', ext: '.rb' },
  java: { name: 'Java', aliases: ['java', 'jdk', 'openjdk'], binary: 'java', ext: '.java' },
  go: { name: 'Go', aliases: ['go', 'golang'], binary: 'go', ext: '.go', args: ['run'] },
  r: { name: 'R', aliases: ['r', 'rscript'], binary: 'Rscript', ext: '.R' },
  native: { name: 'Native', aliases: ['native', 'builtin', 'standalone'], binary: '', ext: '' },
};

export async function seedCoreRuntimes(db: pg.Pool): Promise<Record<string, number>> {
  await db.query(`INSERT INTO pack (ref, label, version) VALUES ('core', 'Core', '1.0.0') ON CONFLICT (ref) DO NOTHING`);
  const ids: Record<string, number> = {};
  for (const [key, r] of Object.entries(CORE_RUNTIMES)) {
    const execConfig = r.binary ? { interpreter: { binary: r.binary, args: r.args ?? [], file_extension: r.ext } } : {};
    const res = await db.query(
      `INSERT INTO runtime (ref, pack, pack_ref, name, aliases, execution_config)
       VALUES ($1, (SELECT id FROM pack WHERE ref = 'core'), 'core', $2, $3, $4)
       ON CONFLICT (ref) DO UPDATE SET execution_config = EXCLUDED.execution_config RETURNING id`,
      [`core.${key}`, r.name, r.aliases, JSON.stringify(execConfig)],
    );
    ids[key] = Number(res.rows[0].id);
  }
  return ids;
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
export function startAgent(env: Record<string, string>, args: string[] = [], opts: { executable?: string; cwd?: string } = {}): AgentProcess {
  const exe = opts.executable ?? AGENT_EXECUTABLE;
  if (!existsSync(exe)) throw new Error(`${exe} is missing: run npm run build`);
  const child = spawn(exe, args, {
    // ATTUNE_AGENT_PIPES=off passes through: the control run of the real-pipes test.
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root', ...pick(process.env, 'ATTUNE_AGENT_PIPES'), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
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

function pick(env: NodeJS.ProcessEnv, name: string): Record<string, string> {
  const v = env[name];
  return v === undefined ? {} : { [name]: v };
}
