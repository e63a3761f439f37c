/**
 * Files of an execution under `artifacts_dir` (volume transport, `shared_file` backend modes:
 * directories 2775, files 664 so the API container's group can read them).
 *
 * The logs normally go to the files of the execution's log artifact versions
 * (db/log-artifacts.ts: `{ref as path}/v{N}.txt`); this layout is the fallback when those cannot
 * be allocated, and the home of result.json:
 *   {artifacts_dir}/execution_{id}/stdout.log
 *   {artifacts_dir}/execution_{id}/stderr.log
 *   {artifacts_dir}/execution_{id}/result.json   (pretty JSON, only when output was parsed)
 */
import { chmod, mkdir, open, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';

export const DIR_MODE = 0o2775;
export const FILE_MODE = 0o664;

export interface ExecutionLogPaths {
  dir: string;
  stdout: string;
  stderr: string;
  result: string;
}

export function executionLogPaths(artifactsDir: string, executionId: number): ExecutionLogPaths {
  const dir = join(artifactsDir, `execution_${executionId}`);
  return { dir, stdout: join(dir, 'stdout.log'), stderr: join(dir, 'stderr.log'), result: join(dir, 'result.json') };
}

/** mkdir -p with the shared-file mode on every directory this call creates (umask-proof). */
export async function ensureSharedDir(dir: string): Promise<void> {
  const first = await mkdir(dir, { recursive: true, mode: DIR_MODE });
  if (first === undefined) return; // already existed: leave its mode alone
  // `first` is the top-most directory created; fix the mode of it and everything below.
  let p = dir;
  const created: string[] = [];
  while (p.length >= first.length) {
    created.push(p);
    const parent = p.slice(0, p.lastIndexOf('/'));
    if (parent === p || parent === '') break;
    p = parent;
  }
  for (const d of created) await chmod(d, DIR_MODE);
}

/** Create (truncate) a log file with mode 664 and return it open for appending. */
export async function openLogFile(path: string): Promise<FileHandle> {
  const fh = await open(path, 'w', FILE_MODE);
  await fh.chmod(FILE_MODE);
  return fh;
}

export async function writeResultJson(path: string, data: unknown): Promise<void> {
  await writeFile(path, JSON.stringify(data, null, 2) + '\n', { mode: FILE_MODE });
  await chmod(path, FILE_MODE);
}
