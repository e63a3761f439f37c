/** Shared fixtures for the execution integration tests: rows, config, detection, one run, /proc scans. */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import which from 'which';
import pino from 'pino';
import type { ActionRow, EnforcementRefs, ExecutionRow, RuntimeRow, RuntimeVersionRow, StoredSecretValue } from '../../src/model.ts';
import type { DetectedInterpreter } from '../../src/execution/plan.ts';
import { baselineEnvironment } from '../../src/execution/environment.ts';
import type pg from 'pg';
import { runExecution, type RunConfig, type RunDeps } from '../../src/worker/run-execution.ts';
import { pgLogArtifacts, pgSecretValues } from '../../src/db/execution-store.ts';
import type { SchemaCapabilities } from '../../src/db/schema.ts';
import type { RunResult } from '../../src/worker/ports.ts';
import type { Logger } from '../../src/observe/logger.ts';

export const PACKS_DIR = resolve(import.meta.dirname, '../fixtures/packs');
export const PACK = 'testpack';

let nextId = 1000;

export function execution(over: Partial<ExecutionRow> = {}): ExecutionRow {
  return {
    id: nextId++, action: 1, action_ref: `${PACK}.x`, pack_release: null, pack_release_digest: null,
    executable_snapshot: null, config: {}, env_vars: null, parent: null, enforcement: null, executor: null,
    permission_set_refs: null, worker: null, status: 'scheduled', trace_tag: null, result: null,
    started_at: null, timeout_seconds: null, workflow_task: null, ...over,
  };
}

export function action(entrypoint: string, over: Partial<ActionRow> = {}): ActionRow {
  const name = entrypoint.replace(/\..*$/, '');
  return {
    id: 1, ref: `${PACK}.${name}`, pack: 1, pack_ref: PACK, entrypoint, runtime: 1, runtime_version_constraint: null,
    param_schema: null, out_schema: null, is_adhoc: false, parameter_delivery: 'stdin', parameter_format: 'json',
    output_format: 'text', timeout_seconds: null, log_retention_policy: null, log_retention_limit: null, ...over,
  };
}

const BINARIES: Record<string, string> = { shell: '/bin/bash', python: 'python3', perl: 'perl', node: process.execPath, java: 'java', ruby: 'ruby', go: 'go', r: 'Rscript' };
const EXT: Record<string, string> = { shell: '.sh', python: '.py', perl: '.pl', node: '.js', java: '.java', ruby: '.rb', go: '.go', r: '.R' };
/** Interpreter arguments of the core runtimes that need some (`go run file.go`). */
const ARGS: Record<string, string[]> = { go: ['run'] };

/** A runtime row like Attune's core ones. */
export function runtime(kind: string, over: Partial<RuntimeRow> = {}): RuntimeRow {
  return {
    id: 1, ref: `core.${kind}`, pack: null, pack_ref: 'core', description: null,
    name: kind === 'node' ? 'Node.js' : kind[0].toUpperCase() + kind.slice(1), aliases: [kind],
    distributions: null, installation: null,
    execution_config: kind === 'native' ? {} : {
      interpreter: { binary: BINARIES[kind], args: ARGS[kind] ?? [], file_extension: EXT[kind] },
      inline_execution: { strategy: kind === 'shell' ? 'temp_file' : 'direct', extension: EXT[kind] },
    },
    auto_detected: false, detection_config: null, ...over,
  };
}

export function detected(): DetectedInterpreter[] {
  const out: DetectedInterpreter[] = [];
  for (const [name, bin] of [['shell', 'bash'], ['python', 'python3'], ['node', process.execPath], ['java', 'java'], ['perl', 'perl'], ['ruby', 'ruby'], ['go', 'go'], ['r', 'Rscript']] as const) {
    const path = bin.startsWith('/') ? bin : which.sync(bin, { nothrow: true });
    if (path) out.push({ name, path });
  }
  return out;
}

export function hasInterpreter(name: string): boolean {
  return detected().some((d) => d.name === name);
}

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `attune-test-${prefix}-`));
}

export function config(over: { artifactsDir?: string; maxStdoutBytes?: number; maxStderrBytes?: number; killGracePeriodMs?: number; defaultExecutionTimeoutMs?: number; jwtSecret?: string; encryptionKey?: string } = {}): RunConfig {
  return {
    packsBaseDir: PACKS_DIR,
    runtimeEnvsDir: join(tmpdir(), 'attune-test-runtime-envs'),
    artifactsDir: over.artifactsDir ?? tempDir('artifacts'),
    apiUrl: 'http://127.0.0.1:8080',
    defaultExecutionTimeoutMs: over.defaultExecutionTimeoutMs ?? 60_000,
    security: { jwtSecret: over.jwtSecret ?? '', encryptionKey: over.encryptionKey ?? '' },
    log: { mirrorStdout: false, mirrorStderr: false },
    worker: {
      maxStdoutBytes: over.maxStdoutBytes ?? 10 * 1024 * 1024,
      maxStderrBytes: over.maxStderrBytes ?? 10 * 1024 * 1024,
      killGracePeriodMs: over.killGracePeriodMs ?? 300,
      envSetupTimeoutMs: 120_000,
      logRetentionPolicy: 'days',
      logRetentionLimit: 7,
    },
  };
}

export interface RunInput extends Partial<Omit<RunDeps, 'config' | 'detected' | 'baselineEnv'>> {
  execution: ExecutionRow;
  action: ActionRow;
  runtime: RuntimeRow | null;
  runtimeVersions?: RuntimeVersionRow[];
  enforcement?: EnforcementRefs | null;
  /** The secret parameters the claim read (null: the schema has no such table). */
  secrets?: StoredSecretValue[] | null;
  config: RunConfig;
  detected: readonly DetectedInterpreter[];
  baselineEnv: Record<string, string>;
  signal?: AbortSignal;
  logger?: Logger;
}

/**
 * One claimed execution through the worker's run (worker/run-execution.ts), as the service runs
 * it; without log artifacts or secret values unless their ports are given.
 */
export function run(i: RunInput): Promise<RunResult> {
  const rows = { action: i.action, runtime: i.runtime, runtimeVersions: i.runtimeVersions ?? [], enforcement: i.enforcement ?? null, secrets: i.secrets ?? null };
  return runExecution({ execution: { ...i.execution, status: 'running' }, claimed: true, previous: 'scheduled', rows }, i.signal ?? new AbortController().signal,
    i.logger ?? pino({ level: 'silent' }), {
      config: i.config, detected: i.detected, baselineEnv: i.baselineEnv, verifiedReleases: i.verifiedReleases ?? new Set(),
      logArtifacts: i.logArtifacts ?? null, secretValues: i.secretValues ?? null, environments: i.environments,
    });
}

/** A run's PostgreSQL ports as main.ts wires them: none for what the schema lacks. */
export function pgRunPorts(pool: pg.Pool, has: Pick<SchemaCapabilities, 'logArtifacts' | 'secretValues'>): Pick<RunDeps, 'logArtifacts' | 'secretValues'> {
  return { logArtifacts: has.logArtifacts ? pgLogArtifacts(pool) : null, secretValues: has.secretValues ? pgSecretValues(pool) : null };
}

export function baseline(): Record<string, string> {
  return baselineEnvironment(process.env, []);
}

/** A unique marker put into the action's environment; every descendant inherits it. */
export function marker(): { name: string; value: string; env: Record<string, string> } {
  const value = `exec-test-${randomUUID()}`;
  return { name: 'EXEC_TEST_MARKER', value, env: { EXEC_TEST_MARKER: value } };
}

/** Live (non-zombie) processes whose environment contains the marker. */
export function processesWithMarker(value: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
      if (state === 'Z' || state === 'X') continue;
      if (readFileSync(`/proc/${entry}/environ`).includes(value)) found.push(Number(entry));
    } catch {
      // gone meanwhile, or not ours
    }
  }
  return found;
}
