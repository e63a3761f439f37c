/**
 * executeAction plus the database side of a run:
 *   1. secret-backed parameters restored into `execution.config` (execution_secret_value, §5.5);
 *   2. the execution's log artifacts (db/log-artifacts.ts): two versions allocated while the
 *      process starts, the runner appends to their files, sealed after the run while the caller
 *      writes the terminal row;
 *   3. outputs the action's out_schema marks secret replaced by markers in the result and stored
 *      encrypted (§5.9).
 * Log artifacts are for Attune's UI and never decide an outcome: if they cannot be allocated the
 * run goes ahead with the plain `execution_{id}/` files and a warning. Secrets do decide: a
 * parameter that cannot be restored fails the run before it starts, an output that cannot be
 * stored encrypted is never written in clear.
 */
import { createHash } from 'node:crypto';
import { chmod, open } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import { executeAction, type ExecuteInput, type ExecuteOutput } from '../execution/execute.ts';
import { FILE_MODE, ensureSharedDir } from '../execution/log-files.ts';
import type { LogDigest } from '../execution/runner.ts';
import { executionFailure, preparationFailure } from '../execution/outcome.ts';
import { cancelReasonOf, cancelledResult } from '../execution/cancel.ts';
import { prepareSecretValues, restoreSecretValues, secretPathsFromSchema } from '../execution/secrets.ts';
import type { StoredSecretValue } from '../model.ts';
import type { LogAllocation, StreamEnd } from '../db/log-artifacts.ts';
import type { Claim, LogArtifacts, RunResult, SecretValues } from './ports.ts';

/** Per agent: the run's ports and the worker's settings. */
export interface RunActionState {
  /** Null: the schema has no log artifact tables, logs go to plain files. */
  logArtifacts: LogArtifacts | null;
  /** Null: the schema has no execution_secret_value table, secret outputs cannot be stored. */
  secretValues: SecretValues | null;
  /** worker.execution_log_retention_policy / _limit: used when the action sets none. */
  retentionPolicy: string;
  retentionLimit: number;
  /** security.encryption_key ('' when unset). */
  encryptionKey: string;
}

/** Attune's volume transport freezes a sealed log file: no writer may append any more. */
const SEALED_FILE_MODE = 0o444;

/** The run's outcome, and the sealing of its log artifacts (never rejects) still under way. */
export type RunActionOutput = ExecuteOutput & { logsSealed: Promise<void> };

/** The claim's rows, and the process's setting, for runAction. */
export type RunSettings = Omit<ExecuteInput, 'execution' | 'action' | 'runtime' | 'runtimeVersions' | 'enforcement' | 'signal' | 'logger'>;

/** A claimed execution (its row `running`) to its result. */
export async function runClaimed(claim: Claim, signal: AbortSignal, log: Logger, settings: RunSettings, state: RunActionState): Promise<RunResult> {
  // A cancel (or shutdown) that came while the claim was made ends the run here, before log versions are allocated.
  if (signal.aborted) return { status: 'cancelled', result: cancelledResult(cancelReasonOf(signal)) };
  const { execution, rows } = claim;
  if (!rows) {
    return executionFailure(`action ${execution.action_ref} (id ${execution.action ?? 'none'}) not found in the database; was the pack uninstalled? Reinstall the pack and re-run.`);
  }
  return runAction({
    ...settings, execution, action: rows.action, runtime: rows.runtime, runtimeVersions: rows.runtimeVersions, enforcement: rows.enforcement,
    signal, logger: log,
  }, state, log, rows.secrets);
}

/** `storedSecrets`: the execution_secret_value rows read with the claim (null: the schema has no such table). */
export async function runAction(input: ExecuteInput, state: RunActionState, log: Logger, storedSecrets: StoredSecretValue[] | null): Promise<RunActionOutput> {
  // The log versions are allocated while the parameters are restored and the process starts (the
  // costliest statement of a run); the runner opens the files once their paths are known.
  // allocate() never rejects (null: plain files).
  const logs = state.logArtifacts;
  const allocation = logs ? allocate(logs, input, state, log) : Promise.resolve(null);
  const restored = restoreParameters(input, state, storedSecrets);
  const dir = input.config.artifactsDir;
  if ('failure' in restored) {
    // The run never starts: its (empty) log versions are sealed so nothing is left pending.
    return { ...restored.failure, logsSealed: sealWhenAllocated(logs, allocation, dir, NOTHING_WRITTEN, log) };
  }
  const secretOutputPaths = secretPathsFromSchema(input.action.out_schema);
  const out = await executeAction({
    ...input,
    execution: restored.execution,
    secretOutputPaths,
    logFiles: allocation.then((a) => (a ? { stdout: join(dir, a.stdout.filePath), stderr: join(dir, a.stderr.filePath) } : null)),
  });
  // Sealed while the caller writes the terminal row (it waits for this before publishing).
  const logsSealed = sealWhenAllocated(logs, allocation, dir, {
    stdout: { truncated: out.stdoutTruncated ?? false, digest: out.logDigests?.stdout ?? null },
    stderr: { truncated: out.stderrTruncated ?? false, digest: out.logDigests?.stderr ?? null },
  }, log);
  const stored = out.secretOutputs?.length ? await storeSecretOutputs(input, state, out) : out;
  return { ...stored, logsSealed };
}

const NOTHING_WRITTEN: Record<'stdout' | 'stderr', StreamFacts> = { stdout: { truncated: false, digest: null }, stderr: { truncated: false, digest: null } };

async function sealWhenAllocated(logs: LogArtifacts | null, allocation: Promise<LogAllocation | null>, dir: string,
  facts: Record<'stdout' | 'stderr', StreamFacts>, log: Logger): Promise<void> {
  const alloc = await allocation;
  if (alloc && logs) await sealLogs(logs, alloc, dir, facts, log);
}

type StreamFacts = { truncated: boolean; digest: LogDigest | null };

async function sealLogs(logs: LogArtifacts, alloc: LogAllocation, dir: string, facts: Record<'stdout' | 'stderr', StreamFacts>, log: Logger): Promise<void> {
  try {
    const freezes: Promise<void>[] = [];
    const end = async (stream: 'stdout' | 'stderr'): Promise<StreamEnd> => {
      const path = join(dir, alloc[stream].filePath);
      const { truncated, digest } = facts[stream];
      if (digest) {
        // Hashed while it was written: its end is known, and freezing the file needs nothing from
        // the rows, so it goes alongside their update (the writer is done with it).
        const freeze = chmod(path, SEALED_FILE_MODE);
        freeze.catch(() => undefined); // handled below, when awaited with the rows (never unhandled meanwhile)
        freezes.push(freeze);
        return { bytes: digest.bytes, sha256: digest.sha256, truncated };
      }
      // The run failed before its process started (no file yet), or a log write failed: read (and
      // freeze) what is there first.
      await ensureSharedDir(dirname(path));
      return sealFile(path, truncated);
    };
    const [stdout, stderr] = await Promise.all([end('stdout'), end('stderr')]);
    await Promise.all([logs.seal(alloc, { stdout, stderr }), ...freezes]);
  } catch (e) {
    log.warn({ err: (e as Error).message, artifact_versions: [alloc.stdout.versionId, alloc.stderr.versionId] },
      'cannot seal the log artifacts of this execution: they stay pending (Attune reclaims pending logs of finished executions)');
  }
}

/** `execution.config` with its secret-backed values decrypted, or the preparation failure. */
function restoreParameters(input: ExecuteInput, state: RunActionState,
  stored: StoredSecretValue[] | null): { execution: ExecuteInput['execution'] } | { failure: ExecuteOutput } {
  const { execution } = input;
  if (stored === null || stored.length === 0) return { execution };
  const fail = (why: string) => ({ failure: preparationFailure(`Failed to restore secret parameters for execution ${execution.id}: ${why}`) });
  if (state.encryptionKey === '') return fail('No encryption key configured (set security.encryption_key / ATTUNE__SECURITY__ENCRYPTION_KEY to the key of the Attune API)');
  try {
    return { execution: { ...execution, config: restoreSecretValues(execution.config ?? {}, stored, state.encryptionKey) as Record<string, unknown> } };
  } catch (e) {
    return fail((e as Error).message);
  }
}

/** Store the secret outputs encrypted; if that is impossible the result keeps only the markers and the run fails. */
async function storeSecretOutputs(input: ExecuteInput, state: RunActionState, out: ExecuteOutput): Promise<ExecuteOutput> {
  const taken = out.secretOutputs ?? [];
  let problem: string | null = null;
  if (state.encryptionKey === '') problem = 'No encryption key configured (set security.encryption_key)';
  else if (!state.secretValues) problem = 'this Attune schema has no execution_secret_value table';
  else {
    try {
      await state.secretValues.storeResultSecrets(input.execution.id, prepareSecretValues(taken, state.encryptionKey, 'parameter_schema'));
    } catch (e) {
      problem = (e as Error).message;
    }
  }
  if (problem === null) return out;
  const result = { ...out.result, succeeded: false, error: `Failed to store the secret outputs (${taken.map((t) => t.json_path).join(', ')}) of action ${input.action.ref}: ${problem}` };
  return { ...out, status: 'failed', result };
}

/**
 * Digest and freeze one log file, as Attune's volume transport does before sealing: 0444 tells
 * every other writer the stream is closed. A file the run could not create is created empty.
 */
async function sealFile(path: string, truncated: boolean): Promise<StreamEnd> {
  const fh = await open(path, 'a+', FILE_MODE);
  try {
    const hash = createHash('sha256');
    let bytes = 0;
    const buf = Buffer.allocUnsafe(64 * 1024);
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, bytes);
      if (bytesRead === 0) break;
      hash.update(buf.subarray(0, bytesRead));
      bytes += bytesRead;
    }
    await fh.chmod(SEALED_FILE_MODE);
    return { bytes, sha256: hash.digest('hex'), truncated };
  } finally {
    await fh.close();
  }
}

async function allocate(logs: LogArtifacts, input: ExecuteInput, state: RunActionState, log: Logger): Promise<LogAllocation | null> {
  const { action, execution } = input;
  try {
    return await logs.allocate({
      executionId: execution.id,
      actionRef: action.ref,
      retentionPolicy: action.log_retention_policy ?? state.retentionPolicy,
      retentionLimit: action.log_retention_limit ?? state.retentionLimit,
    });
  } catch (e) {
    log.warn({ err: (e as Error).message }, 'cannot allocate the log artifacts of this execution: its logs go to execution_{id}/ under artifacts_dir, invisible to the UI');
    return null;
  }
}
