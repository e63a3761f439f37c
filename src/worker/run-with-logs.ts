/**
 * executeAction wrapped in the execution's log artifacts (db/log-artifacts.ts): allocate the two
 * versions, let the runner append to their files, seal them after the run. Log artifacts are for
 * Attune's UI; they never decide an execution's outcome: if they cannot be allocated the run goes
 * ahead with the plain `execution_{id}/` files and a warning.
 */
import { createHash } from 'node:crypto';
import { chmod, open } from 'node:fs/promises';
import { join } from 'node:path';
import type pg from 'pg';
import type { Logger } from 'pino';
import { executeAction, type ExecuteInput, type ExecuteOutput } from '../execution/execute.ts';
import { allocateLogArtifacts, finalizeLogArtifacts, type LogAllocation, type StreamEnd } from '../db/log-artifacts.ts';

/** Attune 0.6.0's `artifacts.log_segment_max_bytes` and `flush_interval_ms` (contract §1.2). */
const MAX_UNFLUSHED_BYTES = 64 * 1024;
const MAX_UNFLUSHED_MS = 500;
/** An Attune schema from before log streams (no tables) or before shared-file streams (no `backend`). */
const OLDER_SCHEMA = new Set(['42P01', '42703', '42704']);

/** Per agent: the worker's retention defaults, and whether the schema has no artifact tables (an older Attune). */
export interface LogArtifactsState {
  unavailable: boolean;
  /** worker.execution_log_retention_policy / _limit: used when the action sets none. */
  retentionPolicy: string;
  retentionLimit: number;
}

export async function executeWithLogArtifacts(pool: pg.Pool, input: ExecuteInput, state: LogArtifactsState, log: Logger): Promise<ExecuteOutput> {
  const alloc = state.unavailable ? null : await allocate(pool, input, state, log);
  const dir = input.config.artifactsDir;
  const out = await executeAction({
    ...input,
    logFiles: alloc ? { stdout: join(dir, alloc.stdout.filePath), stderr: join(dir, alloc.stderr.filePath) } : null,
  });
  if (alloc) {
    const files = { stdout: join(dir, alloc.stdout.filePath), stderr: join(dir, alloc.stderr.filePath) };
    try {
      const [stdout, stderr] = await Promise.all([
        sealFile(files.stdout, out.stdoutTruncated ?? false),
        sealFile(files.stderr, out.stderrTruncated ?? false),
      ]);
      await finalizeLogArtifacts(pool, alloc, { stdout, stderr });
    } catch (e) {
      log.warn({ err: (e as Error).message, artifact_versions: [alloc.stdout.versionId, alloc.stderr.versionId] },
        'cannot seal the log artifacts of this execution: they stay pending (Attune reclaims pending logs of finished executions)');
    }
  }
  return out;
}

/**
 * Digest and freeze one log file, as Attune's volume transport does before sealing: 0444 tells
 * every other writer the stream is closed. A file the run could not create is created empty.
 */
async function sealFile(path: string, truncated: boolean): Promise<StreamEnd> {
  const fh = await open(path, 'a+', 0o664);
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
    await fh.chmod(0o444);
    return { bytes, sha256: hash.digest('hex'), truncated };
  } finally {
    await fh.close();
  }
}

async function allocate(pool: pg.Pool, input: ExecuteInput, state: LogArtifactsState, log: Logger): Promise<LogAllocation | null> {
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
    const err = e as Error & { code?: string };
    if (err.code !== undefined && OLDER_SCHEMA.has(err.code)) {
      state.unavailable = true;
      log.warn({ err: err.message }, 'this Attune schema has no artifact/artifact_version/log_stream tables (or no shared-file log streams): execution logs are written as plain files (execution_{id}/) from now on, invisible to the UI');
    } else {
      log.warn({ err: err.message }, 'cannot allocate the log artifacts of this execution: its logs go to execution_{id}/ under artifacts_dir, invisible to the UI');
    }
    return null;
  }
}
