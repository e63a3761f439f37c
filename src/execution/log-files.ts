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
import { basename, dirname, join, resolve } from 'node:path';
import type { FileHandle } from 'node:fs/promises';
import { createFileIn, openDirBelow, openDirFrom, openExistingIn, openOrCreateIn, pathBelow, replaceFileIn, safeFsMode, type SafeDir } from './safe-fs.ts';

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
 * Directories kept open for the next runs: every run of an action writes into the same
 * `{ref}/stdout/log/` and `{ref}/stderr/log/`, so the walk from the root (a thread-pool round trip
 * per component) is done once per directory, not once per execution. A kept descriptor names a
 * directory that was reached without a link. If it is moved later its files follow it — only to
 * where whoever moved it could write anyway; if it is removed (Attune's retention) creating a file
 * in it fails with ENOENT and the directory is walked to (and made) again.
 * `execution_{id}/` directories are used once: only the root is kept for them.
 */
interface Held {
  dir: Promise<SafeDir>;
  users: number;
  stale: boolean;
}
const held = new Map<string, Held>();
const HELD_MAX = 64;

function closeHeld(h: Held): void {
  h.dir.then((d) => d.close()).catch(() => undefined);
}

async function inSharedDir<T>(root: string, dir: string, fn: (d: SafeDir) => Promise<T>): Promise<T> {
  const parts = resolve(dir) === resolve(root) ? [] : pathBelow(root, dir);
  if (safeFsMode() === 'path') {
    // Without /proc a kept directory would be reached by its path again: walked every time instead.
    const d = await openDirBelow(root, parts, { create: DIR_MODE });
    try {
      return await fn(d);
    } finally {
      d.close().catch(() => undefined);
    }
  }
  if (parts.length > 0 && parts[0].startsWith('execution_')) {
    return inSharedDir(root, root, async (top) => {
      const sub = await openDirFrom(top, parts, { create: DIR_MODE });
      try {
        return await fn(sub);
      } finally {
        sub.close().catch(() => undefined);
      }
    });
  }
  const key = `${resolve(root)}\0${parts.join('/')}`;
  for (let attempt = 0; ; attempt++) {
    let h = held.get(key);
    if (h === undefined || h.stale) {
      const fresh: Held = { dir: openDirBelow(root, parts, { create: DIR_MODE }), users: 0, stale: false };
      fresh.dir.catch(() => {
        fresh.stale = true;
        if (held.get(key) === fresh) held.delete(key);
      });
      held.set(key, fresh);
      h = fresh;
    } else {
      held.delete(key); // most recently used last
      held.set(key, h);
    }
    h.users++;
    try {
      return await fn(await h.dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT' || attempt > 0) throw e;
      h.stale = true; // removed behind the agent's back: walk again, once
    } finally {
      h.users--;
      if (h.users === 0 && (h.stale || held.get(key) !== h)) {
        if (held.get(key) === h) held.delete(key);
        closeHeld(h);
      }
      evictIdle();
    }
  }
}

function evictIdle(): void {
  for (const [key, h] of held) {
    if (held.size <= HELD_MAX) return;
    if (h.users > 0) continue;
    held.delete(key);
    closeHeld(h);
  }
}

/** mkdir -p below `root` with the shared-file mode on every directory this call creates (umask-proof). */
export async function ensureSharedDir(root: string, dir: string): Promise<void> {
  await inSharedDir(root, dir, async () => undefined);
}

/**
 * Create a log file with mode 664 (umask-proof) and return it open for writing (an own leftover
 * at the name is truncated). A directory removed behind the agent's back is made again.
 */
export async function openLogFile(root: string, path: string): Promise<FileHandle> {
  return inSharedDir(root, dirname(path), (dir) => createFileIn(dir, basename(path), FILE_MODE));
}

/** result.json: written whole (temp file + rename, so a planted link at the name is replaced, never followed). */
export async function writeResultJson(root: string, path: string, data: unknown): Promise<void> {
  await inSharedDir(root, dirname(path), (dir) => replaceFileIn(dir, basename(path), JSON.stringify(data, null, 2) + '\n', FILE_MODE));
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
  await inSharedDir(root, dirname(path), async (dir) => {
    const fh = await openExistingIn(dir, basename(path));
    try {
      await fh.chmod(SEALED_FILE_MODE);
    } finally {
      fh.close().catch(() => undefined);
    }
  });
}

/**
 * Digest and freeze a log file, as Attune's volume transport does before sealing: 0444 tells
 * every other writer the stream is closed. A file the run could not create is created empty.
 */
export async function digestAndFreezeLogFile(root: string, path: string): Promise<{ bytes: number; sha256: string }> {
  return inSharedDir(root, dirname(path), async (dir) => {
    const fh = await openOrCreateIn(dir, basename(path), FILE_MODE);
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
  });
}
