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
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import type { FileHandle } from 'node:fs/promises';
import { createFileIn, openDirBelow, openExistingIn, openOrCreateIn, openParentBelow, pathBelow, replaceFileIn } from './safe-fs.ts';

export const DIR_MODE = 0o2775;
export const FILE_MODE = 0o664;
/** Attune's volume transport freezes a sealed log file: no writer may append any more. */
export const SEALED_FILE_MODE = 0o444;

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

/*
 * Everything below goes through safe-fs.ts: under `root` (artifacts_dir) no symbolic link is
 * followed, files are created O_EXCL, and modes are set on open handles. A planted link makes
 * that one write fail (the caller logs it; the run's output stays in its result).
 */

/**
 * Directories this agent made or found (ensureSharedDir): every run of an action writes into the
 * same `{ref}/stdout/log/` and `{ref}/stderr/log/`, so they are made once per directory, not once
 * per execution. Only the making is skipped: every file is still reached by a fresh walk from the
 * root. A directory removed behind the agent's back is noticed by openLogFile (ENOENT) and made again.
 */
const knownDirs = new Set<string>();
const KNOWN_DIRS_MAX = 1_000;

/** mkdir -p below `root` with the shared-file mode on every directory this call creates (umask-proof). */
export async function ensureSharedDir(root: string, dir: string): Promise<void> {
  if (knownDirs.has(dir)) return;
  const parts = dir === root ? [] : pathBelow(root, dir);
  await (await openDirBelow(root, parts, { create: DIR_MODE })).close();
  if (knownDirs.size >= KNOWN_DIRS_MAX) knownDirs.clear();
  knownDirs.add(dir);
}

/**
 * Create a log file with mode 664 (umask-proof) and return it open for writing (an own leftover
 * at the name is truncated). A directory that vanished since ensureSharedDir remembered it is made again.
 */
export async function openLogFile(root: string, path: string): Promise<FileHandle> {
  const { dir, name } = await openParentBelow(root, path, { create: DIR_MODE });
  try {
    return await createFileIn(dir, name, FILE_MODE);
  } finally {
    await dir.close();
  }
}

/** result.json: written whole (temp file + rename, so a planted link at the name is replaced, never followed). */
export async function writeResultJson(root: string, path: string, data: unknown): Promise<void> {
  const { dir, name } = await openParentBelow(root, path, { create: DIR_MODE });
  try {
    await replaceFileIn(dir, name, JSON.stringify(data, null, 2) + '\n', FILE_MODE);
  } finally {
    await dir.close();
  }
}

/** A log file written in one go after the run (outputs held back until secrets were scrubbed); its size and digest. */
export async function writeWholeLogFile(root: string, path: string, text: string): Promise<{ bytes: number; sha256: string }> {
  const bytes = Buffer.from(text, 'utf8');
  const fh = await openLogFile(root, path);
  try {
    for (let off = 0; off < bytes.length;) off += (await fh.write(bytes, off, bytes.length - off)).bytesWritten;
  } finally {
    await fh.close();
  }
  return { bytes: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') };
}

/** Freeze a log file the runner wrote (its digest is known): 0444 on a handle opened without following links. */
export async function freezeLogFile(root: string, path: string): Promise<void> {
  const { dir, name } = await openParentBelow(root, path);
  try {
    const fh = await openExistingIn(dir, name);
    try {
      await fh.chmod(SEALED_FILE_MODE);
    } finally {
      await fh.close();
    }
  } finally {
    await dir.close();
  }
}

/**
 * Digest and freeze a log file, as Attune's volume transport does before sealing: 0444 tells
 * every other writer the stream is closed. A file the run could not create is created empty.
 */
export async function digestAndFreezeLogFile(root: string, path: string): Promise<{ bytes: number; sha256: string }> {
  const { dir, name } = await openParentBelow(root, path, { create: DIR_MODE });
  try {
    const fh = await openOrCreateIn(dir, name, FILE_MODE);
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
      return { bytes, sha256: hash.digest('hex') };
    } finally {
      await fh.close();
    }
  } finally {
    await dir.close();
  }
}
