/**
 * One claimed execution (its row already `running`), from the claim's rows to its result, in a
 * straight line:
 *   1. prepare: secret parameters restored (§5.5), the action's code located, the runtime version
 *      chosen, the plan made (execution/plan.ts, pure), parameter/inline files written;
 *   2. the process (execution/process.ts): spawned, its output captured into the log files →
 *      ProcessResult;
 *   3. the outcome (execution/outcome.ts, pure), secret outputs taken out of it (§5.9), result.json;
 *   4. secret outputs stored encrypted, the log artifacts' sealing started (the service awaits it
 *      with the terminal write).
 * Never throws for anything the action or its rows can cause: every problem becomes a `failed`
 * result whose `error` names it. Secrets decide: a parameter that cannot be restored fails the run
 * before it starts, an output that cannot be stored encrypted is never written in clear.
 */
import { chmod, mkdir, rm, writeFile } from 'node:fs/promises';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import which from 'which';
import type { Config } from '../config/index.ts';
import type { ExecutionRow, RuntimeVersionRow, StoredSecretValue } from '../model.ts';
import { cancelReasonOf, cancelledResult } from '../execution/cancel.ts';
import { resolveActionSource } from '../execution/pack-files.ts';
import { chooseRuntimeVersion } from '../execution/runtime-version.ts';
import { planExecution, type DetectedInterpreter, type ExecutionPlan, type PlanFacts, type PlannedFile } from '../execution/plan.ts';
import { runProcess } from '../execution/process.ts';
import { RuntimeEnvironments, isExecutable } from '../execution/environments.ts';
import { decideOutcome, executionFailure, parseOutput, preparationFailure, type Outcome } from '../execution/outcome.ts';
import { prepareSecretValues, redactPaths, restoreSecretValues, secretPathsFromSchema, valuesAtPaths } from '../execution/secrets.ts';
import { executionLogPaths, writeResultJson, writeWholeLogFile } from '../execution/log-files.ts';
import { SecretScrubber, secretPatterns } from '../execution/secret-scrub.ts';
import { parameterDirName } from '../execution/param-dirs.ts';
import type { LogDigest } from '../execution/process.ts';
import { collectAfterLargeRelease } from '../native/memory.ts';
import { outputMirror } from '../observe/logger.ts';
import { NOTHING_WRITTEN, RunLogs, type LogFilePaths } from './run-logs.ts';
import type { Claim, LogArtifacts, RunResult, RunRows, SecretValues } from './ports.ts';

export type RunConfig = Pick<Config, 'packsBaseDir' | 'runtimeEnvsDir' | 'artifactsDir' | 'apiUrl' | 'defaultExecutionTimeoutMs'> & {
  security: Pick<Config['security'], 'jwtSecret' | 'encryptionKey'>;
  log: Pick<Config['log'], 'mirrorStdout' | 'mirrorStderr'>;
  worker: Pick<Config['worker'], 'maxStdoutBytes' | 'maxStderrBytes' | 'killGracePeriodMs' | 'logRetentionPolicy' | 'logRetentionLimit' | 'envSetupTimeoutMs'>;
};

/** Per agent: settings, what this image has, and the run's ports. */
export interface RunDeps {
  config: RunConfig;
  detected: readonly DetectedInterpreter[];
  /** The child-process baseline captured at agent start (execution/environment.ts). */
  baselineEnv: Readonly<Record<string, string>>;
  /** Shared across executions so a pack release archive is hashed once. */
  verifiedReleases: Set<string>;
  /** Null: the schema has no log artifact tables; logs go to plain files. */
  logArtifacts: LogArtifacts | null;
  /** Null: the schema has no execution_secret_value table; secret outputs cannot be stored. */
  secretValues: SecretValues | null;
  /** The packs' runtime environments, shared by the agent's executions (one per runtime_envs_dir when absent). */
  environments?: RuntimeEnvironments;
}

const defaultEnvironments = new Map<string, RuntimeEnvironments>();

/** The agent's environments; tests that build RunDeps by hand share one per runtime_envs_dir. */
function environmentsOf(deps: RunDeps): RuntimeEnvironments {
  if (deps.environments) return deps.environments;
  let e = defaultEnvironments.get(deps.config.runtimeEnvsDir);
  if (!e) {
    e = new RuntimeEnvironments({ setupTimeoutMs: deps.config.worker.envSetupTimeoutMs, baselineEnv: deps.baselineEnv });
    defaultEnvironments.set(deps.config.runtimeEnvsDir, e);
  }
  return e;
}

export async function runExecution(claim: Claim, signal: AbortSignal, log: Logger, deps: RunDeps): Promise<RunResult> {
  // A cancel (or shutdown) that came while the claim was made ends the run here, before log versions are allocated.
  if (signal.aborted) return { status: 'cancelled', result: cancelledResult(cancelReasonOf(signal)) };
  const { execution, rows } = claim;
  if (!rows) {
    return ended(executionFailure(`action ${execution.action_ref} (id ${execution.action ?? 'none'}) not found in the database; was the pack uninstalled? Reinstall the pack and re-run.`));
  }
  const { config } = deps;
  const logs = new RunLogs(deps.logArtifacts, {
    artifactsDir: config.artifactsDir, executionId: execution.id, action: rows.action,
    retentionPolicy: config.worker.logRetentionPolicy, retentionLimit: config.worker.logRetentionLimit,
  }, log);
  let tempDir: string | null = null;
  try {
    // 1. prepare
    const prepared = await prepare(execution, rows, deps, log, signal);
    if ('failure' in prepared) return ended(prepared.failure, logs.seal(NOTHING_WRITTEN));
    tempDir = prepared.tempDir;
    const { plan } = prepared;

    // Secret parameters are scrubbed from the streams as they are read (execution/secret-scrub.ts).
    // Secret outputs are known only once the output is parsed: for such an action the log files and
    // the mirror get the output after the run, scrubbed (nothing is streamed in clear meanwhile).
    const secretOutputPaths = secretPathsFromSchema(rows.action.out_schema);
    const paramPatterns = secretPatterns(prepared.secretValues);
    const hold = secretOutputPaths.length > 0;

    // 2. the process; the log files are opened once the allocation says where (it may still run).
    const files = logs.files();
    // Debug: the service's one info line per execution (`execution N completed`) carries the outcome and runtime.
    log.debug({ execution_id: execution.id, argv0: plan.argv[0], runtime: plan.runtimeName, timeout_ms: plan.timeoutMs }, 'starting action');
    const proc = await runProcess({
      argv: plan.argv, env: plan.env, cwd: plan.cwd, stdin: plan.stdin, timeoutMs: plan.timeoutMs,
      killGracePeriodMs: config.worker.killGracePeriodMs,
      maxStdoutBytes: config.worker.maxStdoutBytes,
      maxStderrBytes: config.worker.maxStderrBytes,
      logFiles: hold ? Promise.resolve(null) : files,
      // Mirrored as JSON log lines of this run (observe/logger.ts), not raw bytes on the agent's stdio.
      mirrorStdout: config.log.mirrorStdout && !hold ? outputMirror(log, 'stdout') : null,
      mirrorStderr: config.log.mirrorStderr && !hold ? outputMirror(log, 'stderr') : null,
      secretPatterns: paramPatterns,
    }, { signal, logger: log });
    const logged = await files;
    if (proc.kind === 'spawn-error') return ended(executionFailure(proc.message), logs.seal(NOTHING_WRITTEN));
    // Secret outputs are looked for even when the run failed: its stdout may still carry them.
    const scrub = new SecretScrubber(hold
      ? [...paramPatterns, ...secretPatterns(valuesAtPaths(parseOutput(proc.stdout, rows.action.output_format ?? 'text'), secretOutputPaths))]
      : paramPatterns);
    if (hold) {
      const held = await writeHeldOutput(proc, logged, scrub, config.log, log);
      proc.logErrors.push(...held.errors);
      proc.stdoutLog = held.stdout;
      proc.stderrLog = held.stderr;
    }
    for (const e of proc.logErrors) log.warn({ execution_id: execution.id }, e);

    // 3. the outcome, without the secret outputs; result.json
    const stderrLogged = logged !== null && !proc.logErrors.some((e) => e.includes(logged.stderr) || e.includes('stderr log'));
    const outcome = decideOutcome(proc, {
      outputFormat: rows.action.output_format ?? 'text',
      stderrLogPath: stderrLogged ? logged.stderr : null,
      timeoutMs: plan.timeoutMs,
    });
    const secretOutputs = takeSecretOutputs(outcome, secretOutputPaths);
    if (scrub.active) {
      outcome.result = scrub.deep(outcome.result);
      outcome.data = scrub.deep(outcome.data);
    }
    if (outcome.data !== undefined && logged !== null) {
      const paths = executionLogPaths(config.artifactsDir, execution.id);
      await writeResultJson(config.artifactsDir, paths.result, outcome.data).catch((e: Error) =>
        log.warn({ execution_id: execution.id, err: e.message }, `cannot write ${paths.result}`));
    }
    log.debug({ execution_id: execution.id, status: outcome.status, exit_code: proc.exitCode, duration_ms: proc.durationMs }, 'action finished');
    // The capture buffers (and a parsed stdout's text) are garbage now.
    collectAfterLargeRelease(proc.stdout.length + proc.stderr.length);

    // 4. sealed while the secret outputs are stored and the caller writes the terminal row.
    const logsSealed = logs.seal({
      stdout: { truncated: proc.stdoutTruncated, digest: logged ? proc.stdoutLog : null },
      stderr: { truncated: proc.stderrTruncated, digest: logged ? proc.stderrLog : null },
    });
    const stored = secretOutputs.length > 0 ? await storeSecretOutputs(execution.id, rows.action.ref, outcome, secretOutputs, deps) : outcome;
    return { status: stored.status, result: stored.result, runtime: plan.runtimeName, stdoutTruncated: proc.stdoutTruncated, stderrTruncated: proc.stderrTruncated, logsSealed };
  } catch (e) {
    // Agent-side I/O trouble (temp dir, parameter file): still a terminal, explained failure.
    return ended(executionFailure(`attune-agent internal error: ${(e as Error).message}`), logs.seal(NOTHING_WRITTEN));
  } finally {
    if (tempDir) await rm(tempDir, { recursive: true, force: true }).catch(() => {});
  }
}

/** The promise's value, or null as soon as the signal is aborted. */
function untilAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T | null> {
  if (signal.aborted) return Promise.resolve(null);
  return new Promise((resolve, reject) => {
    const onAbort = () => resolve(null);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then((v) => { signal.removeEventListener('abort', onAbort); resolve(v); },
      (e: unknown) => { signal.removeEventListener('abort', onAbort); reject(e); });
  });
}

/** A run that ended before (or without) its process: its result, and its empty log versions sealed so nothing stays pending. */
function ended(o: Outcome, logsSealed?: Promise<void>): RunResult {
  return { status: o.status, result: o.result, logsSealed };
}

/** Step 1: the parameters, the code, the plan and its files; or why the action cannot run. */
async function prepare(execution: ExecutionRow, rows: RunRows, deps: RunDeps, log: Logger, signal: AbortSignal): Promise<{ plan: ExecutionPlan; tempDir: string | null; secretValues: unknown[] } | { failure: Outcome }> {
  const { config } = deps;
  const { action } = rows;
  const restored = restoreParameters(execution, rows.secrets, config.security.encryptionKey);
  if ('failure' in restored) return restored;
  const located = await resolveActionSource({ packsBaseDir: config.packsBaseDir, action, execution: restored.execution, verifiedReleases: deps.verifiedReleases });
  if (!located.ok) return { failure: executionFailure(located.error) };
  let runtimeVersion: RuntimeVersionRow | null = null;
  if (rows.runtime && rows.runtimeVersions.length > 0) {
    const choice = chooseRuntimeVersion(rows.runtimeVersions, action.runtime_version_constraint, {
      actionRef: action.ref, runtime: rows.runtime, detected: deps.detected,
    });
    if (!choice.ok) return { failure: executionFailure(choice.error) };
    runtimeVersion = choice.version;
  }
  // Created only when a parameter or inline file needs it (a read-only /tmp must not break stdin actions).
  const privateDir = join(tmpdir(), parameterDirName(execution.id, randomBytes(6).toString('hex')));
  const makePlan = () => planExecution({
    execution: restored.execution, action, runtime: rows.runtime, runtimeVersion, config, detected: deps.detected,
    baselineEnv: deps.baselineEnv, source: located.source, enforcement: rows.enforcement, tempDir: privateDir,
    facts: REAL_FACTS, nowSeconds: Math.floor(Date.now() / 1000),
  });
  let planned = makePlan();
  if (!planned.ok) {
    const e = planned.error;
    return { failure: e.stage === 'prepare' ? preparationFailure(e.message) : executionFailure(e.message) };
  }
  // The pack's runtime environment (venv + its dependencies, …), made ready first (execution/environments.ts);
  // unless it was ready at once, the plan is made again so the action runs the environment's interpreter.
  if (planned.plan.environment) {
    // A cancel (or shutdown) does not wait for the set-up: it goes on for the pack's next executions.
    const ready = await untilAborted(environmentsOf(deps).ensure(planned.plan.environment, log.child({ execution_id: execution.id })), signal);
    if (ready === null) return { failure: { status: 'cancelled', result: cancelledResult(cancelReasonOf(signal)), data: undefined } };
    if (!ready.ok) return { failure: executionFailure(ready.error) };
    if (!ready.warm) {
      planned = makePlan();
      if (!planned.ok) return { failure: executionFailure(planned.error.message) };
    }
  }
  const { plan } = planned;
  for (const w of plan.warnings) log.warn({ execution_id: execution.id }, w);
  const secretValues = restored.secretValues;
  if (!plan.paramFile && !plan.inlineFile) return { plan, tempDir: null, secretValues };
  try {
    await mkdir(privateDir, { mode: 0o700 });
  } catch (e) {
    return { failure: preparationFailure(`cannot write the parameter/inline file in ${tmpdir()} (${(e as Error).message}); give the agent a writable TMPDIR`) };
  }
  try {
    for (const f of [plan.paramFile, plan.inlineFile]) if (f) await writePrivateFile(f);
  } catch (e) {
    await rm(privateDir, { recursive: true, force: true }).catch(() => {});
    return { failure: preparationFailure(`cannot write the parameter/inline file in ${tmpdir()} (${(e as Error).message}); give the agent a writable TMPDIR`) };
  }
  return { plan, tempDir: privateDir, secretValues };
}

/**
 * `execution.config` with its secret-backed values decrypted (none stored, or no such table: as it
 * is) and those values (for scrubbing the action's output), or the preparation failure.
 */
function restoreParameters(execution: ExecutionRow, stored: StoredSecretValue[] | null, key: string): { execution: ExecutionRow; secretValues: unknown[] } | { failure: Outcome } {
  if (stored === null || stored.length === 0) return { execution, secretValues: [] };
  const fail = (why: string) => ({ failure: preparationFailure(`Failed to restore secret parameters for execution ${execution.id}: ${why}`) });
  if (key === '') return fail('No encryption key configured (set security.encryption_key / ATTUNE__SECURITY__ENCRYPTION_KEY to the key of the Attune API)');
  try {
    const config = restoreSecretValues(execution.config ?? {}, stored, key) as Record<string, unknown>;
    return { execution: { ...execution, config }, secretValues: valuesAtPaths(config, stored.map((s) => s.json_path)) };
  } catch (e) {
    return fail((e as Error).message);
  }
}

type SecretOutput = { json_path: string; value: unknown };

/**
 * Step 3: the values the action's out_schema marks secret, taken out of the parsed output (`result.data`
 * and what result.json gets, alike) and replaced by redaction markers; paths relative to the result (`/data/…`).
 */
function takeSecretOutputs(outcome: Outcome, paths: readonly string[]): SecretOutput[] {
  if (outcome.data === undefined || paths.length === 0) return [];
  const { redacted, taken } = redactPaths(outcome.result.data, paths);
  if (taken.length === 0) return [];
  outcome.result.data = redacted;
  outcome.data = redactPaths(outcome.data, paths).redacted;
  return taken.map((t) => ({ json_path: `/data${t.json_path}`, value: t.value }));
}

/** Step 4: the secret outputs stored encrypted; if that is impossible the result keeps only the markers and the run fails. */
async function storeSecretOutputs(executionId: number, actionRef: string, outcome: Outcome, taken: SecretOutput[], deps: RunDeps): Promise<Outcome> {
  const key = deps.config.security.encryptionKey;
  let problem: string | null = null;
  if (key === '') problem = 'No encryption key configured (set security.encryption_key)';
  else if (!deps.secretValues) problem = 'this Attune schema has no execution_secret_value table';
  else {
    try {
      await deps.secretValues.storeResultSecrets(executionId, prepareSecretValues(taken, key, 'parameter_schema'));
    } catch (e) {
      problem = (e as Error).message;
    }
  }
  if (problem === null) return outcome;
  const result = { ...outcome.result, succeeded: false, error: `Failed to store the secret outputs (${taken.map((t) => t.json_path).join(', ')}) of action ${actionRef}: ${problem}` };
  return { ...outcome, status: 'failed', result };
}

/**
 * The output of an action with secret outputs, held back during the run: written to its log files
 * and the mirror now, scrubbed. Returns what each file received (null: not written).
 */
async function writeHeldOutput(proc: { stdout: string; stderr: string }, files: LogFilePaths | null, scrub: SecretScrubber,
  mirror: RunConfig['log'], log: Logger): Promise<{ stdout: LogDigest | null; stderr: LogDigest | null; errors: string[] }> {
  const errors: string[] = [];
  const out: { stdout: LogDigest | null; stderr: LogDigest | null } = { stdout: null, stderr: null };
  for (const stream of ['stdout', 'stderr'] as const) {
    const text = scrub.text(proc[stream]);
    if (stream === 'stdout' ? mirror.mirrorStdout : mirror.mirrorStderr) outputMirror(log, stream).end(text);
    if (!files) continue;
    out[stream] = await writeWholeLogFile(files.root, files[stream], text).catch((e: Error) => {
      errors.push(`cannot create log file ${files[stream]}: ${e.message}`);
      return null;
    });
  }
  return { ...out, errors };
}

async function writePrivateFile(f: PlannedFile): Promise<void> {
  await writeFile(f.path, f.content, { mode: f.mode, flag: 'wx' });
  await chmod(f.path, f.mode); // umask-proof
}

/** What the plan asks of this image's filesystem. */
export const REAL_FACTS: PlanFacts = {
  isExecutableFile: isExecutable,
  which(name, pathEnv) {
    return which.sync(name, { path: pathEnv, nothrow: true });
  },
  sha256OfFile(path) {
    try {
      return createHash('sha256').update(readFileSync(path)).digest('hex');
    } catch {
      return null;
    }
  },
};
