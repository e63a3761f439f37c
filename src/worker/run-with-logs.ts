/**
 * executeAction wrapped in the execution's log artifacts (db/log-artifacts.ts): allocate the two
 * versions, let the runner append to their files, seal them after the run. Log artifacts are for
 * Attune's UI; they never decide an execution's outcome: if they cannot be allocated the run goes
 * ahead with the plain `execution_{id}/` files and a warning.
 */
import { join } from 'node:path';
import type pg from 'pg';
import type { Logger } from 'pino';
import { executeAction, type ExecuteInput, type ExecuteOutput } from '../execution/execute.ts';
import { allocateLogArtifacts, finalizeLogArtifacts, type LogAllocation } from '../db/log-artifacts.ts';

/** Attune 0.6.0's `artifacts.log_segment_max_bytes` and `flush_interval_ms` (contract §1.2). */
const MAX_UNFLUSHED_BYTES = 64 * 1024;
const MAX_UNFLUSHED_MS = 500;
const UNDEFINED_TABLE = '42P01';

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
    const ends = out.logEnds ?? { stdout: { bytes: 0, truncated: false }, stderr: { bytes: 0, truncated: false } };
    await finalizeLogArtifacts(pool, alloc, ends).catch((e: Error) =>
      log.warn({ err: e.message, artifact_versions: [alloc.stdout.versionId, alloc.stderr.versionId] }, 'cannot seal the log artifacts of this execution; they stay pending'));
  }
  return out;
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
    if (err.code === UNDEFINED_TABLE) {
      state.unavailable = true;
      log.warn({ err: err.message }, 'this Attune schema has no artifact/artifact_version/log_stream tables: execution logs are written as plain files (execution_{id}/) from now on, invisible to the UI');
    } else {
      log.warn({ err: err.message }, 'cannot allocate the log artifacts of this execution: its logs go to execution_{id}/ under artifacts_dir, invisible to the UI');
    }
    return null;
  }
}
