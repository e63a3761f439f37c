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
import { dirname, join } from 'node:path';

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

/**
 * Directories this agent made or found (ensureSharedDir): every run of an action writes into the
 * same `{ref}/stdout/log/` and `{ref}/stderr/log/`, so the mkdir (a thread-pool round trip, two
 * syscalls when the directory exists) is done once per directory, not once per execution. A
 * directory removed behind the agent's back is noticed by openLogFile (ENOENT) and made again.
 */
const knownDirs = new Set<string>();
const KNOWN_DIRS_MAX = 1_000;

/** mkdir -p with the shared-file mode on every directory this call creates (umask-proof). */
export async function ensureSharedDir(dir: string): Promise<void> {
  if (knownDirs.has(dir)) return;
  await makeSharedDir(dir);
  if (knownDirs.size >= KNOWN_DIRS_MAX) knownDirs.clear();
  knownDirs.add(dir);
}

async function makeSharedDir(dir: string): Promise<void> {
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

/**
 * Create (truncate) a log file with mode 664 (umask-proof) and return it open for appending. A
 * directory that vanished since ensureSharedDir remembered it is made again.
 */
export async function openLogFile(path: string): Promise<FileHandle> {
  try {
    return await openWithMode(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    const dir = dirname(path);
    knownDirs.delete(dir);
    await ensureSharedDir(dir);
    return openWithMode(path);
  }
}

async function openWithMode(path: string): Promise<FileHandle> {
  const fh = await open(path, 'w', FILE_MODE);
  try {
    await fh.chmod(FILE_MODE);
  } catch (e) {
    await fh.close().catch(() => undefined);
    throw e;
  }
  return fh;
}

export async function writeResultJson(path: string, data: unknown): Promise<void> {
  await writeFile(path, JSON.stringify(data, null, 2) + '\n', { mode: FILE_MODE });
  await chmod(path, FILE_MODE);
}
