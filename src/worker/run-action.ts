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
import type pg from 'pg';
import type { Logger } from 'pino';
import { executeAction, type ExecuteInput, type ExecuteOutput } from '../execution/execute.ts';
import { FILE_MODE, ensureSharedDir } from '../execution/log-files.ts';
import type { LogDigest } from '../execution/runner.ts';
import { preparationFailure } from '../execution/outcome.ts';
import { prepareSecretValues, restoreSecretValues, secretPathsFromSchema } from '../execution/secrets.ts';
import type { StoredSecretValue } from '../model.ts';
import { ENTITY_EXECUTION_CONFIG, ENTITY_EXECUTION_RESULT, findStoredSecretValues, upsertSecretValues } from '../db/secret-values.ts';
import { allocateLogArtifacts, finalizeLogArtifacts, type LogAllocation, type StreamEnd } from '../db/log-artifacts.ts';
import type { SchemaCapabilities } from '../db/schema.ts';

/** Attune 0.6.0's `artifacts.log_segment_max_bytes` and `flush_interval_ms` (contract §1.2). */
const MAX_UNFLUSHED_BYTES = 64 * 1024;
const MAX_UNFLUSHED_MS = 500;

/** Per agent: what the Attune schema has, and the worker's retention defaults. */
export interface RunActionState {
  /** Without log artifact tables logs go to plain files; without execution_secret_value nothing is restored and secret outputs cannot be stored. */
  schema: SchemaCapabilities;
  /** worker.execution_log_retention_policy / _limit: used when the action sets none. */
  retentionPolicy: string;
  retentionLimit: number;
  /** security.encryption_key ('' when unset). */
  encryptionKey: string;
}

/** Attune's volume transport freezes a sealed log file: no writer may append any more. */
const SEALED_FILE_MODE = 0o444;

/** `storedSecrets`: the execution_secret_value rows when the caller already read them (with the claim). */
/** The run's outcome, and the sealing of its log artifacts (never rejects) still under way. */
export type RunActionOutput = ExecuteOutput & { logsSealed: Promise<void> };

export async function runAction(pool: pg.Pool, input: ExecuteInput, state: RunActionState, log: Logger,
  storedSecrets?: StoredSecretValue[]): Promise<RunActionOutput> {
  // The log versions are allocated while the parameters are restored and the process starts (the
  // costliest statement of a run); the runner opens the files once their paths are known.
  // allocate() never rejects (null: plain files).
  const allocation = state.schema.logArtifacts ? allocate(pool, input, state, log) : Promise.resolve(null);
  const restored = await restoreParameters(pool, input, state, storedSecrets).catch(async (e: unknown) => {
    await sealWhenAllocated(pool, allocation, input.config.artifactsDir, NOTHING_WRITTEN, log);
    throw e;
  });
  const dir = input.config.artifactsDir;
  if ('failure' in restored) {
    // The run never starts: its (empty) log versions are sealed so nothing is left pending.
    return { ...restored.failure, logsSealed: sealWhenAllocated(pool, allocation, dir, NOTHING_WRITTEN, log) };
  }
  const secretOutputPaths = secretPathsFromSchema(input.action.out_schema);
  const out = await executeAction({
    ...input,
    execution: restored.execution,
    secretOutputPaths,
    logFiles: allocation.then((a) => (a ? { stdout: join(dir, a.stdout.filePath), stderr: join(dir, a.stderr.filePath) } : null)),
  });
  // Sealed while the caller writes the terminal row (it waits for this before publishing).
  const logsSealed = sealWhenAllocated(pool, allocation, dir, {
    stdout: { truncated: out.stdoutTruncated ?? false, digest: out.logDigests?.stdout ?? null },
    stderr: { truncated: out.stderrTruncated ?? false, digest: out.logDigests?.stderr ?? null },
  }, log);
  const stored = out.secretOutputs?.length ? await storeSecretOutputs(pool, input, state, out) : out;
  return { ...stored, logsSealed };
}

const NOTHING_WRITTEN: Record<'stdout' | 'stderr', StreamFacts> = { stdout: { truncated: false, digest: null }, stderr: { truncated: false, digest: null } };

async function sealWhenAllocated(pool: pg.Pool, allocation: Promise<LogAllocation | null>, dir: string,
  facts: Record<'stdout' | 'stderr', StreamFacts>, log: Logger): Promise<void> {
  const alloc = await allocation;
  if (alloc) await sealLogs(pool, alloc, dir, facts, log);
}

type StreamFacts = { truncated: boolean; digest: LogDigest | null };

async function sealLogs(pool: pg.Pool, alloc: LogAllocation, dir: string, facts: Record<'stdout' | 'stderr', StreamFacts>, log: Logger): Promise<void> {
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
    await Promise.all([finalizeLogArtifacts(pool, alloc, { stdout, stderr }), ...freezes]);
  } catch (e) {
    log.warn({ err: (e as Error).message, artifact_versions: [alloc.stdout.versionId, alloc.stderr.versionId] },
      'cannot seal the log artifacts of this execution: they stay pending (Attune reclaims pending logs of finished executions)');
  }
}

/** `execution.config` with its secret-backed values decrypted, or the preparation failure. */
async function restoreParameters(pool: pg.Pool, input: ExecuteInput, state: RunActionState,
  known?: StoredSecretValue[]): Promise<{ execution: ExecuteInput['execution'] } | { failure: ExecuteOutput }> {
  const { execution } = input;
  if (!state.schema.secretValues) return { execution };
  const stored = known ?? (await findStoredSecretValues(pool, ENTITY_EXECUTION_CONFIG, execution.id));
  if (stored.length === 0) return { execution };
  const fail = (why: string) => ({ failure: preparationFailure(`Failed to restore secret parameters for execution ${execution.id}: ${why}`) });
  if (state.encryptionKey === '') return fail('No encryption key configured (set security.encryption_key / ATTUNE__SECURITY__ENCRYPTION_KEY to the key of the Attune API)');
  try {
    return { execution: { ...execution, config: restoreSecretValues(execution.config ?? {}, stored, state.encryptionKey) as Record<string, unknown> } };
  } catch (e) {
    return fail((e as Error).message);
  }
}

/** Store the secret outputs encrypted; if that is impossible the result keeps only the markers and the run fails. */
async function storeSecretOutputs(pool: pg.Pool, input: ExecuteInput, state: RunActionState, out: ExecuteOutput): Promise<ExecuteOutput> {
  const taken = out.secretOutputs ?? [];
  let problem: string | null = null;
  if (state.encryptionKey === '') problem = 'No encryption key configured (set security.encryption_key)';
  else if (!state.schema.secretValues) problem = 'this Attune schema has no execution_secret_value table';
  else {
    try {
      await upsertSecretValues(pool, ENTITY_EXECUTION_RESULT, input.execution.id, prepareSecretValues(taken, state.encryptionKey, 'parameter_schema'));
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

async function allocate(pool: pg.Pool, input: ExecuteInput, state: RunActionState, log: Logger): Promise<LogAllocation | null> {
  const { action, execution } = input;
  try {
    return await allocateLogArtifacts(pool, {
      executionId: execution.id,
      actionRef: action.ref,
      retentionPolicy: action.log_retention_policy ?? state.retentionPolicy,
      retentionLimit: action.log_retention_limit ?? state.retentionLimit,
      maxUnflushedBytes: MAX_UNFLUSHED_BYTES,
      maxUnflushedMs: MAX_UNFLUSHED_MS,
    });
  } catch (e) {
    log.warn({ err: (e as Error).message }, 'cannot allocate the log artifacts of this execution: its logs go to execution_{id}/ under artifacts_dir, invisible to the UI');
    return null;
  }
}
