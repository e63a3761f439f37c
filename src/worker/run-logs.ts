/**
 * An execution's two log files: the files of its log artifact versions (two versions allocated
 * while the run is prepared and its process starts; sealed after the run while the terminal row
 * is written), else the plain `{artifacts_dir}/execution_{id}/stdout.log|stderr.log`.
 * Log artifacts are for Attune's UI and never decide an outcome: if they cannot be allocated the
 * run goes ahead with the plain files and a warning; if the files cannot be made, the output is
 * kept in the result only.
 */
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import type { ActionRow } from '../model.ts';
import type { LogDigest } from '../execution/process.ts';
import { digestAndFreezeLogFile, ensureSharedDir, executionLogPaths, freezeLogFile } from '../execution/log-files.ts';
import type { LogAllocation, StreamEnd } from '../db/log-artifacts.ts';
import type { LogArtifacts } from './ports.ts';

/** The two files, and the root (artifacts_dir) below which they are reached without following links (execution/safe-fs.ts). */
export type LogFilePaths = Record<'stdout' | 'stderr', string> & { root: string };

/** What a log file received: whether the capture cut it, and its digest when it was written whole while the process ran. */
export type StreamFacts = { truncated: boolean; digest: LogDigest | null };

export const NOTHING_WRITTEN: Record<'stdout' | 'stderr', StreamFacts> = { stdout: { truncated: false, digest: null }, stderr: { truncated: false, digest: null } };

export class RunLogs {
  readonly #ports: LogArtifacts | null;
  readonly #dir: string;
  readonly #executionId: number;
  readonly #log: Logger;
  /** Never rejects; null: plain files. */
  readonly #allocation: Promise<LogAllocation | null>;
  #files: Promise<LogFilePaths | null> | null = null;

  /** Starts the allocation (the costliest statement of a run), unless the schema has no log artifacts (`ports` null). */
  constructor(ports: LogArtifacts | null, o: { artifactsDir: string; executionId: number; action: ActionRow; retentionPolicy: string; retentionLimit: number }, log: Logger) {
    this.#ports = ports;
    this.#dir = o.artifactsDir;
    this.#executionId = o.executionId;
    this.#log = log;
    this.#allocation = ports ? allocate(ports, o, log) : Promise.resolve(null);
  }

  /**
   * The two files' absolute paths, their directories made, once the allocation is known; null when
   * they cannot be made (the action's output is then kept in the result only).
   */
  files(): Promise<LogFilePaths | null> {
    this.#files ??= this.#allocation.then(async (a) => {
      const plain = executionLogPaths(this.#dir, this.#executionId);
      const root = this.#dir;
      const files = a ? { stdout: join(root, a.stdout.filePath), stderr: join(root, a.stderr.filePath), root } : { stdout: plain.stdout, stderr: plain.stderr, root };
      const dirs = [...new Set([dirname(files.stdout), dirname(files.stderr)])];
      try {
        await Promise.all(dirs.map((d) => ensureSharedDir(root, d)));
        return files;
      } catch (e) {
        this.#log.warn({ execution_id: this.#executionId, err: (e as Error).message }, `cannot create ${dirs.join(' and ')}; action output is kept in the result only`);
        return null;
      }
    });
    return this.#files;
  }

  /** Seal the log artifact versions with what their files received (no-op for plain files). Never rejects. */
  async seal(facts: Record<'stdout' | 'stderr', StreamFacts>): Promise<void> {
    const alloc = await this.#allocation;
    if (!alloc || !this.#ports) return;
    try {
      const freezes: Promise<void>[] = [];
      const end = async (stream: 'stdout' | 'stderr'): Promise<StreamEnd> => {
        const path = join(this.#dir, alloc[stream].filePath);
        const { truncated, digest } = facts[stream];
        if (digest) {
          // Hashed while it was written: its end is known, and freezing the file needs nothing from
          // the rows, so it goes alongside their update (the writer is done with it).
          const freeze = freezeLogFile(this.#dir, path);
          freeze.catch(() => undefined); // handled below, when awaited with the rows (never unhandled meanwhile)
          freezes.push(freeze);
          return { bytes: digest.bytes, sha256: digest.sha256, truncated };
        }
        // The run failed before its process started (no file yet), or a log write failed: read (and
        // freeze) what is there first.
        return { ...(await digestAndFreezeLogFile(this.#dir, path)), truncated };
      };
      const [stdout, stderr] = await Promise.all([end('stdout'), end('stderr')]);
      await Promise.all([this.#ports.seal(alloc, { stdout, stderr }), ...freezes]);
    } catch (e) {
      this.#log.warn({ err: (e as Error).message, artifact_versions: [alloc.stdout.versionId, alloc.stderr.versionId] },
        'cannot seal the log artifacts of this execution: they stay pending (Attune reclaims pending logs of finished executions)');
    }
  }
}

async function allocate(ports: LogArtifacts, o: { executionId: number; action: ActionRow; retentionPolicy: string; retentionLimit: number }, log: Logger): Promise<LogAllocation | null> {
  try {
    return await ports.allocate({
      executionId: o.executionId,
      actionRef: o.action.ref,
      retentionPolicy: o.action.log_retention_policy ?? o.retentionPolicy,
      retentionLimit: o.action.log_retention_limit ?? o.retentionLimit,
    });
  } catch (e) {
    log.warn({ err: (e as Error).message }, 'cannot allocate the log artifacts of this execution: its logs go to execution_{id}/ under artifacts_dir, invisible to the UI');
    return null;
  }
}
