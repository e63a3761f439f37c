/**
 * One action execution for the worker service: locate the code, plan, write parameter/inline files,
 * run, decide the outcome, write result.json, clean up. Never throws for anything the action or its
 * rows can cause: every problem becomes a `failed` outcome whose `result.error` names it.
 */
import { accessSync, constants, statSync } from 'node:fs';
import { chmod, mkdir, rm, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import which from 'which';
import type { ActionRow, EnforcementRefs, ExecutionRow, RuntimeRow, RuntimeVersionRow } from '../model.ts';
import type { Config } from '../config/index.ts';
import { resolveActionSource } from './pack-files.ts';
import { planExecution, type DetectedInterpreter, type PlanFacts, type PlannedFile } from './plan.ts';
import { chooseRuntimeVersion } from './runtime-version.ts';
import { runProcess, type LogDigest, type RunLogger } from './runner.ts';
import { decideOutcome, executionFailure, preparationFailure } from './outcome.ts';
import type { TerminalStatus } from '../model.ts';
import { ensureSharedDir, executionLogPaths, writeResultJson } from './log-files.ts';
import { collectAfterLargeRelease } from '../native/memory.ts';
import { redactPaths } from './secrets.ts';
import { outputMirror } from '../observe/logger.ts';

export type ExecuteConfig = Pick<Config,
  'packsBaseDir' | 'runtimeEnvsDir' | 'artifactsDir' | 'apiUrl' | 'defaultExecutionTimeoutMs'> & {
  security: Pick<Config['security'], 'jwtSecret'>;
  log: Pick<Config['log'], 'mirrorStdout' | 'mirrorStderr'>;
  worker: Pick<Config['worker'], 'maxStdoutBytes' | 'maxStderrBytes' | 'killGracePeriodMs'>;
};

export interface ExecuteInput {
  execution: ExecutionRow;
  action: ActionRow;
  runtime: RuntimeRow | null;
  /** runtime_version rows of the runtime (from the snapshot or the table); may be empty. */
  runtimeVersions?: readonly RuntimeVersionRow[];
  /** `{rule_ref, trigger_ref}` of the execution's enforcement row, when it has one. */
  enforcement?: Pick<EnforcementRefs, 'rule_ref' | 'trigger_ref'> | null;
  config: ExecuteConfig;
  detected: readonly DetectedInterpreter[];
  /** The child-process baseline captured at agent start (execution/environment.ts). */
  baselineEnv: Readonly<Record<string, string>>;
  /** Abort to cancel; `signal.reason` 'shutdown' records a shutdown, anything else a user cancel. */
  signal?: AbortSignal;
  logger?: RunLogger;
  /** Shared across executions so a pack release archive is hashed once. */
  verifiedReleases?: Set<string>;
  /**
   * Where stdout/stderr are appended (absolute): the files of this execution's log artifact
   * versions (db/log-artifacts.ts). Default: `{artifacts_dir}/execution_{id}/stdout.log|stderr.log`.
   */
  logFiles?: LogFilePaths | null | Promise<LogFilePaths | null>;
  /**
   * JSON pointers into the parsed output (`result.data`) that the action's out_schema marks
   * secret: replaced by redaction markers before anything is written; the values come back in
   * `secretOutputs` for the caller to store encrypted.
   */
  secretOutputPaths?: readonly string[];
  /** Default 1000 ms (Attune's log_finalization_timeout_ms). */
  logFinalizationTimeoutMs?: number;
  /** Injected for tests; defaults to the real filesystem / PATH lookups and clock. */
  facts?: PlanFacts;
  nowSeconds?: () => number;
}

export interface LogFilePaths { stdout: string; stderr: string }

export interface ExecuteOutput {
  status: TerminalStatus;
  /** The `execution.result` JSON to write. */
  result: Record<string, unknown>;
  /** Set when the process ran. */
  durationMs?: number;
  /** Set when the process ran (metrics: runtime label, output truncations). */
  runtime?: string;
  stdoutTruncated?: boolean;
  stderrTruncated?: boolean;
  /** What the log files received, when the process ran and each file was written whole. */
  logDigests?: { stdout: LogDigest | null; stderr: LogDigest | null };
  /** Values taken out of `result.data` at `secretOutputPaths` (paths relative to the result: `/data/…`). */
  secretOutputs?: { json_path: string; value: unknown }[];
}

const NOOP: RunLogger = { debug() {}, info() {}, warn() {} };

export async function executeAction(input: ExecuteInput): Promise<ExecuteOutput> {
  const log = input.logger ?? NOOP;
  let tempDir: string | null = null;
  try {
    const { execution, action, config } = input;
    const located = await resolveActionSource({
      packsBaseDir: config.packsBaseDir, action, execution, verifiedReleases: input.verifiedReleases,
    });
    if (!located.ok) return done(executionFailure(located.error));

    const runtimeVersion = input.runtime && input.runtimeVersions && input.runtimeVersions.length > 0
      ? chooseRuntimeVersion(input.runtimeVersions, action.runtime_version_constraint)
      : null;

    // Created only when a parameter or inline file needs it (a read-only /tmp must not break stdin actions).
    const privateDir = join(tmpdir(), `attune-exec-${execution.id}-${randomBytes(6).toString('hex')}`);
    const planned = planExecution({
      execution, action, runtime: input.runtime, runtimeVersion, config, detected: input.detected,
      baselineEnv: input.baselineEnv, source: located.source, enforcement: input.enforcement, tempDir: privateDir,
      facts: input.facts ?? REAL_FACTS, nowSeconds: (input.nowSeconds ?? nowSeconds)(),
    });
    if (!planned.ok) {
      const e = planned.error;
      return done(e.stage === 'prepare' ? preparationFailure(e.message) : executionFailure(e.message));
    }
    const plan = planned.plan;
    for (const w of plan.warnings) log.warn({ execution_id: execution.id }, w);
    if (plan.paramFile || plan.inlineFile) {
      try {
        await mkdir(privateDir, { mode: 0o700 });
        tempDir = privateDir;
        for (const f of [plan.paramFile, plan.inlineFile]) if (f) await writePrivateFile(f);
      } catch (e) {
        return done(preparationFailure(`cannot write the parameter/inline file in ${tmpdir()} (${(e as Error).message}); give the agent a writable TMPDIR`));
      }
    }

    const paths = executionLogPaths(config.artifactsDir, execution.id);
    // The paths may still be on their way (log artifacts allocated while the process starts); their
    // directories are made meanwhile too. runProcess waits for them only to create the log files.
    const logFiles = Promise.resolve(input.logFiles).then((f) => f ?? { stdout: paths.stdout, stderr: paths.stderr });
    const logsReady: Promise<LogFilePaths | null> = logFiles.then(async (files) => {
      const dirs = [...new Set([dirname(files.stdout), dirname(files.stderr)])];
      try {
        await Promise.all(dirs.map((d) => ensureSharedDir(d)));
        return files;
      } catch (e) {
        log.warn({ execution_id: execution.id, err: (e as Error).message }, `cannot create ${dirs.join(' and ')}; action output is kept in the result only`);
        return null;
      }
    });

    // Debug: the service's one info line per execution (`execution N completed`) carries the outcome and runtime.
    log.debug({ execution_id: execution.id, argv0: plan.argv[0], runtime: plan.runtimeName, timeout_ms: plan.timeoutMs }, 'starting action');
    const run = await runProcess({
      argv: plan.argv,
      env: plan.env,
      cwd: plan.cwd,
      stdin: plan.stdin,
      timeoutMs: plan.timeoutMs,
      killGracePeriodMs: config.worker.killGracePeriodMs,
      logFinalizationTimeoutMs: input.logFinalizationTimeoutMs,
      maxStdoutBytes: config.worker.maxStdoutBytes,
      maxStderrBytes: config.worker.maxStderrBytes,
      logFiles: logsReady,
      // Mirrored as JSON log lines of this run (observe/logger.ts), not raw bytes on the agent's stdio.
      mirrorStdout: config.log.mirrorStdout ? outputMirror(log, 'stdout') : null,
      mirrorStderr: config.log.mirrorStderr ? outputMirror(log, 'stderr') : null,
    }, { signal: input.signal, logger: log });

    const logged = await logsReady;
    const logsDir = logged !== null;
    if (run.kind === 'spawn-error') return done(executionFailure(run.message));
    for (const e of run.logErrors) log.warn({ execution_id: execution.id }, e);

    const stderrLogged = logged !== null && !run.logErrors.some((e) => e.includes(logged.stderr) || e.includes('stderr log'));
    const outcome = decideOutcome(run, {
      outputFormat: action.output_format ?? 'text',
      stderrLogPath: stderrLogged ? logged.stderr : null,
      timeoutMs: plan.timeoutMs,
    });
    let secretOutputs: ExecuteOutput['secretOutputs'];
    if (outcome.data !== undefined && input.secretOutputPaths?.length) {
      // The result's copy (already made JSONB-safe) and the parsed value for result.json, alike.
      const { redacted, taken } = redactPaths(outcome.result.data, input.secretOutputPaths);
      if (taken.length > 0) {
        outcome.result.data = redacted;
        outcome.data = redactPaths(outcome.data, input.secretOutputPaths).redacted;
        secretOutputs = taken.map((t) => ({ json_path: `/data${t.json_path}`, value: t.value }));
      }
    }
    if (outcome.data !== undefined && logsDir) {
      await ensureSharedDir(paths.dir).then(() => writeResultJson(paths.result, outcome.data)).catch((e: Error) =>
        log.warn({ execution_id: execution.id, err: e.message }, `cannot write ${paths.result}`));
    }
    log.debug({ execution_id: execution.id, status: outcome.status, exit_code: run.exitCode, duration_ms: run.durationMs }, 'action finished');
    // The capture buffers (and a parsed stdout's text) are garbage now.
    collectAfterLargeRelease(run.stdout.length + run.stderr.length);
    return { status: outcome.status, result: outcome.result, durationMs: run.durationMs, runtime: plan.runtimeName, stdoutTruncated: run.stdoutTruncated, stderrTruncated: run.stderrTruncated, secretOutputs,
      logDigests: logsDir ? { stdout: run.stdoutLog, stderr: run.stderrLog } : undefined };
  } catch (e) {
    // Agent-side I/O trouble (temp dir, parameter file): still a terminal, explained failure.
    return done(executionFailure(`attune-agent internal error: ${(e as Error).message}`));
  } finally {
    if (tempDir) await rm(tempDir, { recursive: true, force: true }).catch(() => {});
  }
}

function done(o: { status: TerminalStatus; result: Record<string, unknown> }): ExecuteOutput {
  return { status: o.status, result: o.result };
}

async function writePrivateFile(f: PlannedFile): Promise<void> {
  await writeFile(f.path, f.content, { mode: f.mode, flag: 'wx' });
  await chmod(f.path, f.mode); // umask-proof
}

function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

export const REAL_FACTS: PlanFacts = {
  isExecutableFile(path) {
    try {
      if (!statSync(path).isFile()) return false;
      accessSync(path, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  },
  which(name, pathEnv) {
    return which.sync(name, { path: pathEnv, nothrow: true });
  },
};
