/**
 * Files below a shared root (artifacts_dir) reached without following symbolic links.
 *
 * Actions can write under artifacts_dir (ATTUNE_ARTIFACTS_DIR): a link planted where the agent
 * will write next (`execution_{id}/stdout.log → /etc/…`, `{ref}/stdout/log/v{N}.txt → …`, or a
 * directory link) must not make the agent — maybe root, maybe another worker pool sharing the
 * volume — truncate, write or chmod a file elsewhere. So:
 * - the path below the root is walked one component at a time, each directory opened with
 *   O_NOFOLLOW|O_DIRECTORY, and every next step is taken relative to the directory already open
 *   (`/proc/self/fd/{fd}/{name}`: the kernel resolves it to that open directory, like openat(2));
 * - files are created with O_CREAT|O_EXCL|O_NOFOLLOW; an existing file is opened with O_NOFOLLOW
 *   and used only if fstat says it is a regular file of this uid with one link (hard links to a
 *   victim are refused too), and chmod is fchmod on the open handle;
 * - whole files (result.json) are written to an O_EXCL temp file and renamed over the name (rename
 *   replaces a planted link itself, it never follows it).
 * The root itself is the operator's setting and may be a link. Without /proc the walk opens each
 * prefix by path (each component still O_NOFOLLOW, but an action racing the walk could swap a
 * checked directory for a link between two steps): the agent warns at start (safeFsMode).
 */
import { constants, fstatSync, openSync, closeSync, statSync } from 'node:fs';
import { mkdir, open, readdir, rename, unlink, type FileHandle } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { isAbsolute, relative, resolve, sep } from 'node:path';

const { O_RDONLY, O_WRONLY, O_RDWR, O_CREAT, O_EXCL, O_NOFOLLOW, O_DIRECTORY, O_NONBLOCK } = constants;
/** O_NONBLOCK: a FIFO planted at a name must not block the open (fstat then refuses it). */
const DIR_FLAGS = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK;

/** A write refused because the path under the root is not what the agent makes there. */
export class UnsafePathError extends Error {
  readonly code = 'EUNSAFEPATH';
}

export type SafeFsMode = 'proc-fd' | 'path';
let mode: SafeFsMode | undefined;

/** 'proc-fd' (race-free walks) when /proc/self/fd resolves open directories, else 'path'. */
export function safeFsMode(): SafeFsMode {
  if (mode === undefined) {
    mode = 'path';
    try {
      const fd = openSync('/', O_RDONLY | O_DIRECTORY);
      try {
        if (statSync(`/proc/self/fd/${fd}`).ino === fstatSync(fd).ino) mode = 'proc-fd';
      } finally {
        closeSync(fd);
      }
    } catch {
      // no /proc: path mode
    }
  }
  return mode;
}

/** Tests: run the path mode where /proc is mounted (undefined: detect again). */
export function setSafeFsMode(m: SafeFsMode | undefined): void {
  mode = m;
}

/** A directory below the root, open; names inside it are reached through the open descriptor. */
export class SafeDir {
  /** The directory's path (messages; the path mode's lookups). */
  readonly path: string;
  readonly #fh: FileHandle;
  constructor(path: string, fh: FileHandle) {
    this.path = path;
    this.#fh = fh;
  }

  /** What to hand a path-taking call for `name` inside this directory. */
  at(name: string): string {
    checkName(name, this.path);
    return safeFsMode() === 'proc-fd' ? `/proc/self/fd/${this.#fh.fd}/${name}` : `${this.path}/${name}`;
  }

  get handle(): FileHandle {
    return this.#fh;
  }

  close(): Promise<void> {
    return this.#fh.close();
  }

  /** The names in this directory (with their types, not followed), read through the open descriptor. */
  entries() {
    return readdir(safeFsMode() === 'proc-fd' ? `/proc/self/fd/${this.#fh.fd}` : this.path, { withFileTypes: true });
  }
}

/** The components of `target` below `root`; refuses a target that is the root or outside it. */
export function pathBelow(root: string, target: string): string[] {
  const rel = relative(resolve(root), resolve(target));
  if (rel === '' || rel === '..' || rel.startsWith(`..${sep}`) || isAbsolute(rel)) {
    throw new UnsafePathError(`${target} is not below ${root}; refusing to write there`);
  }
  return rel.split(sep);
}

function checkName(name: string, where: string): void {
  if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\0')) {
    throw new UnsafePathError(`${JSON.stringify(name)} is not a file name (in ${where})`);
  }
}

export interface OpenDirOptions {
  /** Create missing directories (mode applied with fchmod, umask-proof). */
  create?: number | false;
}

/**
 * Open `root/…parts` without following a link below the root. With `create`, missing directories
 * are made with that mode; existing ones keep theirs.
 */
export async function openDirBelow(root: string, parts: readonly string[], opts: OpenDirOptions = {}): Promise<SafeDir> {
  const rootPath = resolve(root);
  let top: SafeDir;
  try {
    top = new SafeDir(rootPath, await open(rootPath, O_RDONLY | O_DIRECTORY | O_NONBLOCK));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT' || opts.create === undefined || opts.create === false) throw e;
    // The root is the operator's setting (it may be a link to a volume): made like `mkdir -p`.
    await mkdir(rootPath, { recursive: true, mode: opts.create });
    top = new SafeDir(rootPath, await open(rootPath, O_RDONLY | O_DIRECTORY | O_NONBLOCK));
  }
  if (parts.length === 0) return top;
  try {
    return await openDirFrom(top, parts, opts);
  } finally {
    closeQuietly(top);
  }
}

/** Open `start/…parts` (start stays open, the caller's) without following a link. */
export async function openDirFrom(start: SafeDir, parts: readonly string[], opts: OpenDirOptions = {}): Promise<SafeDir> {
  let cur = start;
  try {
    for (const part of parts) {
      const next = await stepInto(cur, part, opts.create ?? false);
      if (cur !== start) closeQuietly(cur);
      cur = next;
    }
    return cur;
  } catch (e) {
    if (cur !== start) closeQuietly(cur);
    throw e;
  }
}

/** Nothing waits for a directory's close (one thread-pool round trip less per step). */
function closeQuietly(dir: SafeDir): void {
  dir.close().catch(() => undefined);
}

async function stepInto(dir: SafeDir, name: string, create: number | false): Promise<SafeDir> {
  const path = `${dir.path}/${name}`;
  const openIt = async () => new SafeDir(path, await open(dir.at(name), DIR_FLAGS));
  try {
    return await openIt();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ELOOP' || code === 'ENOTDIR') throw planted(path, 'a symbolic link or not a directory');
    if (code !== 'ENOENT' || create === false) throw e;
  }
  let made = true;
  try {
    await mkdir(dir.at(name), { mode: create });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    made = false; // made meanwhile by a concurrent run
  }
  let sub: SafeDir;
  try {
    sub = await openIt();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ELOOP' || code === 'ENOTDIR') throw planted(path, 'a symbolic link or not a directory');
    throw e;
  }
  if (made) {
    // umask-proof mode. A directory someone swapped in right after the mkdir is theirs: chmod of
    // it is harmless, or refused (EPERM) and ignored.
    await sub.handle.chmod(create).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'EPERM') {
        closeQuietly(sub);
        throw e;
      }
    });
  }
  return sub;
}

function planted(path: string, what: string): UnsafePathError {
  return new UnsafePathError(`${path} is ${what}: the agent does not follow links under its shared directories (an action may have planted it); remove it`);
}

function euid(): number {
  return process.geteuid?.() ?? -1;
}

/**
 * Check that an open handle is a file this agent may write or freeze: a regular file, of this
 * uid (what the agent created), with a single link.
 */
async function checkOwnFile(fh: FileHandle, path: string): Promise<void> {
  const st = await fh.stat();
  if (!st.isFile()) throw planted(path, 'not a regular file');
  if (st.nlink !== 1) throw planted(path, `a file with ${st.nlink} hard links`);
  const me = euid();
  if (me !== -1 && st.uid !== me) throw planted(path, `a file of uid ${st.uid}, not of this agent (uid ${me})`);
}

/**
 * Create `name` in `dir` (mode set with fchmod). An existing regular file of this uid with one
 * link (a leftover of an earlier attempt) is truncated and reused; anything else there — a link, a
 * directory, another uid's file — is refused.
 */
export async function createFileIn(dir: SafeDir, name: string, fileMode: number, flags = O_WRONLY): Promise<FileHandle> {
  let fh: FileHandle;
  try {
    fh = await open(dir.at(name), flags | O_CREAT | O_EXCL | O_NOFOLLOW | O_NONBLOCK, fileMode);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    fh = await openExistingIn(dir, name, flags);
    try {
      await fh.truncate(0);
    } catch (err) {
      await fh.close().catch(() => undefined);
      throw err;
    }
  }
  return withMode(fh, fileMode);
}

/** `fh` with `fileMode` set through the handle (umask-proof); closed if that fails. */
async function withMode(fh: FileHandle, fileMode: number): Promise<FileHandle> {
  try {
    await fh.chmod(fileMode);
    return fh;
  } catch (e) {
    await fh.close().catch(() => undefined);
    throw e;
  }
}

/** Open an existing file in `dir` without following a link; refused unless it is this agent's (checkOwnFile). */
export async function openExistingIn(dir: SafeDir, name: string, flags = O_RDONLY): Promise<FileHandle> {
  const path = `${dir.path}/${name}`;
  let fh: FileHandle;
  try {
    fh = await open(dir.at(name), flags | O_NOFOLLOW | O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ELOOP') throw planted(path, 'a symbolic link');
    if (code === 'ENXIO') throw planted(path, 'a FIFO or socket');
    throw e;
  }
  try {
    await checkOwnFile(fh, path);
    return fh;
  } catch (e) {
    await fh.close().catch(() => undefined);
    throw e;
  }
}

/** Open (creating it if missing, never truncating) a file of this agent in `dir`. */
export async function openOrCreateIn(dir: SafeDir, name: string, fileMode: number): Promise<FileHandle> {
  try {
    return await withMode(await open(dir.at(name), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_NONBLOCK, fileMode), fileMode);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    return openExistingIn(dir, name, O_RDWR);
  }
}

/**
 * Write a whole file atomically: an O_EXCL temp file in the same directory, fchmod, then rename
 * over `name` (which replaces whatever entry had the name, a planted link included, without
 * following it). `durable`: the data is fsync'ed before the rename (the caller syncs the directory
 * when the rename itself must survive a crash).
 */
export async function replaceFileIn(dir: SafeDir, name: string, data: string | Uint8Array, fileMode: number, opts: { durable?: boolean } = {}): Promise<void> {
  const temp = `.${name}.${randomBytes(6).toString('hex')}.tmp`;
  const fh = await open(dir.at(temp), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_NONBLOCK, fileMode);
  let renamed = false;
  try {
    await fh.writeFile(data);
    await fh.chmod(fileMode);
    if (opts.durable) await fh.sync();
    await fh.close();
    await rename(dir.at(temp), dir.at(name));
    renamed = true;
  } finally {
    await fh.close().catch(() => undefined);
    if (!renamed) await unlink(dir.at(temp)).catch(() => undefined);
  }
}
