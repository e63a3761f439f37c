/**
 * The worker's execution ports on PostgreSQL (worker/ports.ts): the store (claim, load, terminal
 * write), the log artifacts of a run and its secret outputs. main.ts wires them in.
 */
import type pg from 'pg';
import type { Logger } from '../observe/logger.ts';
import type { ActionRow, DispatchRelease, ExecutionRow, RuntimeRow, RuntimeVersionRow, TerminalStatus } from '../model.ts';
import { claimWithContext, listRuntimeVersions, loadExecution, loadRuntime, writeTerminal, type ActionContext } from './executions.ts';
import { allocateLogArtifacts, finalizeLogArtifacts, type AllocateInput, type LogAllocation, type StreamEnd } from './log-artifacts.ts';
import { ENTITY_EXECUTION_RESULT, upsertSecretValues } from './secret-values.ts';
import type { SchemaCapabilities } from './schema.ts';
import { dbError } from './pool.ts';

/** Attune 0.6.0's `artifacts.log_segment_max_bytes` and `flush_interval_ms` (docs/attune-compat.md §1.2). */
const MAX_UNFLUSHED_BYTES = 64 * 1024;
const MAX_UNFLUSHED_MS = 500;

export function pgExecutionStore(pool: pg.Pool, schema: SchemaCapabilities, log: Logger) {
  // Ids whose claim failed in flight: the UPDATE may have committed with its answer lost.
  const unsure = new Set<number>();
  const settled = (id: number) => {
    unsure.delete(id);
    if (unsure.size > 10_000) unsure.clear(); // only claims given up on stay behind
  };
  return {
    loadExecution: (id: number) => loadExecution(pool, id),
    async claim(id: number, release: DispatchRelease) {
      try {
        const r = await claimWithContext(pool, id, release, schema.secretValues);
        if (!r) {
          settled(id);
          return null;
        }
        // A retry that finds the row `running` after an attempt whose answer was lost: that attempt
        // was ours (this process is the only one handling the id), so the claim stands.
        const ours = !r.claimed && r.execution.status === 'running' && unsure.has(id);
        if (ours) log.warn({ execution_id: id }, `execution ${id}: the running claim committed before the database connection was lost; continuing with it`);
        const claimed = r.claimed || ours;
        const rows = claimed ? await rowsForRun(pool, r.execution, r.context) : null;
        settled(id);
        return {
          execution: r.execution,
          claimed,
          previous: ours ? null : r.execution.status,
          rows: rows && { ...rows, enforcement: r.enforcement, secrets: r.secrets },
        };
      } catch (e) {
        // A lock or statement timeout cancelled the statement: nothing committed, nothing to be unsure of.
        if (!dbError(pool, e).contention) unsure.add(id);
        throw e;
      }
    },
    async writeTerminal(id: number, status: TerminalStatus, result: Record<string, unknown>) {
      const w = await writeTerminal(pool, id, status, result);
      if (!w) throw new Error(`execution ${id} disappeared before its ${status} result could be written`);
      return { action: w.action, action_ref: w.action_ref, result: w.result };
    },
  };
}

type RunContext = { action: ActionRow; runtime: RuntimeRow | null; runtimeVersions: readonly RuntimeVersionRow[] };

/**
 * The action, runtime and versions a run uses: the executable snapshot's where it has them (an
 * execution pinned to what was current when it was requested), else the rows the claim read. A
 * snapshot naming a runtime other than the one the claim read has its rows read now.
 */
async function rowsForRun(pool: pg.Pool, execution: ExecutionRow, context: ActionContext | null): Promise<RunContext | null> {
  const snapshot = execution.executable_snapshot?.executable;
  const snapshotVersions = snapshot?.runtime_versions?.length ? snapshot.runtime_versions : null;
  if (!snapshot || (!snapshot.action && !snapshot.runtime && !snapshotVersions)) return context;
  const action = snapshot.action ?? context?.action ?? null;
  if (!action) return null;
  const read = context?.runtime ?? null;
  const runtimeId = snapshot.runtime?.id ?? action.runtime;
  const [runtime, versions] = await Promise.all([
    snapshot.runtime ?? (action.runtime == null ? null : action.runtime === read?.id ? read : loadRuntime(pool, action.runtime)),
    snapshotVersions ?? (runtimeId == null ? [] : runtimeId === read?.id ? context!.runtimeVersions : listRuntimeVersions(pool, runtimeId)),
  ]);
  return { action, runtime, runtimeVersions: snapshotVersions || runtime ? versions : [] };
}

export function pgLogArtifacts(pool: pg.Pool) {
  return {
    allocate: (input: Omit<AllocateInput, 'maxUnflushedBytes' | 'maxUnflushedMs'>) =>
      allocateLogArtifacts(pool, { ...input, maxUnflushedBytes: MAX_UNFLUSHED_BYTES, maxUnflushedMs: MAX_UNFLUSHED_MS }),
    seal: (allocation: LogAllocation, ends: Record<'stdout' | 'stderr', StreamEnd>) => finalizeLogArtifacts(pool, allocation, ends),
  };
}

export function pgSecretValues(pool: pg.Pool) {
  return {
    storeResultSecrets: (executionId: number, values: Parameters<typeof upsertSecretValues>[3]) =>
      upsertSecretValues(pool, ENTITY_EXECUTION_RESULT, executionId, values),
  };
}
