/**
 * `attune-agent install <dir>`: the init-container step, with no shell in the image.
 *
 * Copies the portable folder (by default the folder this executable runs from: `lib/`, `tini-static`,
 * `LICENSES/` and the executable) into `<dir>`, typically a volume shared with the worker container
 * that mounts it read-only at /opt/attune/agent. Files are 0444 (0555 for executables) and
 * sub-directories 0555: readable everywhere, because a single executable application reads its own
 * file at start (0311 would not do). Each file is written under a temporary name and renamed into
 * place, so re-installing into a persistent volume (compose upgrades) never rewrites a file that a
 * running worker has mapped (no ETXTBSY, no torn binaries).
 *
 * Then the copy is checked: byte-for-byte against the source (a full disk or a broken volume), its
 * ELF machine against this CPU, and finally it is RUN once with `--version` from `<dir>`, so a
 * `noexec` mount, a wrong architecture or a broken copy fails the init container loudly (exit 5)
 * instead of leaving the worker crash-looping with an obscure error. A noexec mount is also found
 * up front in /proc/self/mountinfo, before 115 MB are copied.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  accessSync, constants, chmodSync, copyFileSync, createReadStream, existsSync, lstatSync, mkdirSync, openSync, readSync, closeSync,
  readFileSync, readdirSync, readlinkSync, realpathSync, renameSync, rmSync, statSync, symlinkSync,
} from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { EXIT } from './exit-codes.ts';

/** The folder every worker mounts the agent at: the portable executable's ELF interpreter lives below it. */
export const CONTRACT_DIR = '/opt/attune/agent';
const EXECUTABLE = 'attune-agent';
const LOADER = 'lib/ld-linux-x86-64.so.2';
const RUN_CHECK_TIMEOUT_MS = 60_000;

export interface InstallOptions {
  targetDir: string;
  sourceDir?: string;
  /** Where messages go (default: stdout for progress, stderr for the error). */
  out?: (line: string) => void;
  err?: (line: string) => void;
}

/** A failure with the message the init container's log should show. */
export class InstallError extends Error {}

export async function installAgent(opts: InstallOptions): Promise<number> {
  const out = opts.out ?? ((l: string) => process.stdout.write(l + '\n'));
  const err = opts.err ?? ((l: string) => process.stderr.write(l + '\n'));
  try {
    const r = await install(opts.targetDir, opts.sourceDir);
    out(`attune-agent install: installed attune-agent ${r.version} into ${r.target} (${r.files} files, ${(r.bytes / 1e6).toFixed(1)} MB); the copy runs there.`);
    if (r.target !== CONTRACT_DIR) out(`attune-agent install: mount this volume at ${CONTRACT_DIR} in the worker container (read-only is fine) and run ${CONTRACT_DIR}/${EXECUTABLE}.`);
    return EXIT.OK;
  } catch (e) {
    if (!(e instanceof InstallError)) throw e;
    err(`attune-agent install: error: ${e.message}`);
    return EXIT.INSTALL;
  }
}

export interface InstallResult { target: string; version: string; files: number; bytes: number }

export async function install(targetDir: string, sourceDir?: string): Promise<InstallResult> {
  const source = resolveSource(sourceDir);
  const target = resolve(targetDir);
  prepareTarget(target, source);

  const noexec = mountOf(target);
  if (noexec?.options.includes('noexec')) throw new InstallError(noexecMessage(target, noexec.mountPoint));

  const entries = listEntries(source);
  let bytes = 0;
  for (const e of entries) bytes += e.size;
  copyTree(source, target, entries);
  await verifyCopy(source, target, entries);
  checkMachine(join(target, EXECUTABLE));
  const version = await runCopy(target);
  return { target, version, files: entries.filter((e) => e.kind === 'file').length, bytes };
}

// ───────────────────────────── source and target ─────────────────────────────

function resolveSource(sourceDir: string | undefined): string {
  const dir = sourceDir !== undefined ? resolve(sourceDir) : dirname(realpathSync(process.execPath));
  const hint = sourceDir !== undefined
    ? 'pass the portable folder (the one holding attune-agent, lib/ and tini-static)'
    : `this executable (${process.execPath}) is not inside a portable folder; run the one in ${CONTRACT_DIR} (the agent-init image), or pass --source <portable folder>`;
  if (!isFile(join(dir, EXECUTABLE))) throw new InstallError(`${dir} holds no ${EXECUTABLE}: ${hint}`);
  if (!isFile(join(dir, LOADER))) throw new InstallError(`${dir} holds no ${LOADER}, so it is not a portable folder: ${hint}`);
  return dir;
}

function prepareTarget(target: string, source: string): void {
  try {
    if (!existsSync(target)) mkdirSync(target, { recursive: true });
  } catch (e) {
    throw new InstallError(`cannot create ${target}: ${describeErrno(e)}`);
  }
  if (!statSync(target).isDirectory()) throw new InstallError(`${target} is not a directory`);
  try {
    accessSync(target, constants.W_OK);
  } catch (e) {
    throw new InstallError(`cannot write into ${target}: ${describeErrno(e)}${hintFor(e, target)}`);
  }
  if (realpathSync(target) === realpathSync(source)) {
    throw new InstallError(`${target} is the folder this agent runs from; mount the shared volume somewhere else in the init container (e.g. /mnt/agent-bin)`);
  }
}

interface Entry { rel: string; kind: 'dir' | 'file' | 'symlink'; mode: number; size: number }

/** Sorted, parents before children. */
function listEntries(root: string): Entry[] {
  const out: Entry[] = [];
  const walk = (rel: string): void => {
    for (const name of readdirSync(join(root, rel)).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      const st = lstatSync(join(root, r));
      if (st.isDirectory()) {
        out.push({ rel: r, kind: 'dir', mode: 0o555, size: 0 });
        walk(r);
      } else if (st.isSymbolicLink()) {
        out.push({ rel: r, kind: 'symlink', mode: 0, size: 0 });
      } else if (st.isFile()) {
        out.push({ rel: r, kind: 'file', mode: st.mode & 0o111 ? 0o555 : 0o444, size: st.size });
      }
    }
  };
  walk('');
  return out;
}

// ───────────────────────────── copy ─────────────────────────────

function copyTree(source: string, target: string, entries: readonly Entry[]): void {
  const tmpSuffix = `.attune-install-${process.pid}`;
  const dirs = entries.filter((e) => e.kind === 'dir');
  const step = (what: string, path: string, fn: () => void): void => {
    try {
      fn();
    } catch (e) {
      throw new InstallError(`cannot ${what} ${path}: ${describeErrno(e)}${hintFor(e, target)}`);
    }
  };
  // Directories first, writable while we fill them (an earlier install left them 0555).
  for (const d of dirs) {
    const p = join(target, d.rel);
    if (existsSync(p) && !lstatSync(p).isDirectory()) step('replace', p, () => rmSync(p, { recursive: true, force: true }));
    // Not recursive (parents come first): recursive mkdir reports EROFS as ENOENT.
    if (!existsSync(p)) step('create', p, () => mkdirSync(p));
    step('make writable', p, () => chmodSync(p, 0o755));
  }
  // The executable last: a half-finished install never has a new executable with old libraries.
  const files = entries.filter((e) => e.kind !== 'dir');
  files.sort((a, b) => Number(a.rel === EXECUTABLE) - Number(b.rel === EXECUTABLE));
  for (const f of files) {
    const src = join(source, f.rel);
    const dst = join(target, f.rel);
    const tmp = dst + tmpSuffix;
    step('write', tmp, () => {
      rmSync(tmp, { force: true });
      if (f.kind === 'symlink') symlinkSync(readlinkSync(src), tmp);
      else {
        copyFileSync(src, tmp);
        chmodSync(tmp, f.mode);
      }
    });
    step('rename into', dst, () => {
      if (existsSync(dst) && lstatSync(dst).isDirectory()) rmSync(dst, { recursive: true, force: true });
      renameSync(tmp, dst);
    });
  }
  for (const d of [...dirs].reverse()) step('set the mode of', join(target, d.rel), () => chmodSync(join(target, d.rel), d.mode));
}

async function sha256(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) h.update(chunk as Buffer);
  return h.digest('hex');
}

async function verifyCopy(source: string, target: string, entries: readonly Entry[]): Promise<void> {
  for (const f of entries) {
    if (f.kind !== 'file') continue;
    const dst = join(target, f.rel);
    let same: boolean;
    try {
      same = statSync(dst).size === f.size && (await sha256(dst)) === (await sha256(join(source, f.rel)));
    } catch (e) {
      throw new InstallError(`cannot read back ${dst}: ${describeErrno(e)}`);
    }
    if (!same) throw new InstallError(`the copy ${dst} differs from ${join(source, f.rel)}: the volume lost data (full, or a broken file system)`);
  }
}

// ───────────────────────────── checks ─────────────────────────────

const ELF_MACHINES: Record<number, string> = { 0x3e: 'x64', 0xb7: 'arm64', 0x03: 'ia32', 0x28: 'arm', 0xf3: 'riscv64', 0x15: 'ppc64', 0x16: 's390x' };

/** The copy must be an ELF executable for this CPU (an amd64 init image on an arm64 node under emulation, say). */
export function checkMachine(exe: string): void {
  const head = Buffer.alloc(20);
  const fd = openSync(exe, 'r');
  try {
    readSync(fd, head, 0, 20, 0);
  } finally {
    closeSync(fd);
  }
  if (head.readUInt32BE(0) !== 0x7f454c46) throw new InstallError(`${exe} is not an ELF executable: the copy is broken`);
  const machine = head.readUInt16LE(18);
  if (machine === 0) throw new InstallError(`${exe} is not a valid executable (ELF header names no CPU): the copy is broken`);
  const arch = ELF_MACHINES[machine] ?? `ELF machine 0x${machine.toString(16)}`;
  if (arch !== process.arch) {
    throw new InstallError(`${exe} is built for ${arch} but this node's CPU is ${process.arch}: use the agent image of this architecture`);
  }
}

/**
 * Runs `<target>/attune-agent --version`. Where the contract folder exists (the agent-init image,
 * whose own agent sits there) the copy is executed directly, as the worker will; elsewhere (an
 * install on a host) through the copy's own loader, since the ELF interpreter path is absolute.
 */
async function runCopy(target: string): Promise<string> {
  const exe = join(target, EXECUTABLE);
  const direct = existsSync(join(CONTRACT_DIR, LOADER)) || target === CONTRACT_DIR;
  const argv = direct ? [exe, '--version'] : [join(target, LOADER), exe, '--version'];
  const r = await runBounded(argv, RUN_CHECK_TIMEOUT_MS);
  const how = `\`${argv.join(' ')}\``;
  if (r.spawnError) {
    const code = r.spawnError.code;
    if (code === 'EACCES' || code === 'EPERM') {
      const m = mountOf(target);
      if (m?.options.includes('noexec')) throw new InstallError(noexecMessage(target, m.mountPoint));
      throw new InstallError(`cannot execute ${argv[0]} (${code}): the volume at ${target} does not allow running programs (a noexec mount, or a security policy such as SELinux/AppArmor); mount it without noexec`);
    }
    if (code === 'ENOEXEC') throw new InstallError(`${argv[0]} cannot be executed on this machine (ENOEXEC: wrong architecture or a broken copy)`);
    if (code === 'ENOENT') throw new InstallError(`${argv[0]} cannot be started (ENOENT: its ELF interpreter ${CONTRACT_DIR}/${LOADER} is missing or the copy is broken)`);
    throw new InstallError(`cannot start ${how}: ${r.spawnError.message}`);
  }
  const output = (r.stdout + r.stderr).trim().slice(0, 2000);
  if (r.timedOut) throw new InstallError(`${how} did not finish within ${RUN_CHECK_TIMEOUT_MS / 1000} s`);
  if (r.code !== 0) {
    const noexec = /failed to map segment|Permission denied|Operation not permitted/.test(output) && mountOf(target)?.options.includes('noexec');
    if (noexec) throw new InstallError(noexecMessage(target, mountOf(target)!.mountPoint));
    throw new InstallError(`the copy does not run: ${how} exited with ${r.code ?? r.signal}${output ? `:\n${output}` : ''}`);
  }
  const version = r.stdout.trim();
  if (!/^\d+\.\d+\.\d+\S*$/.test(version)) throw new InstallError(`the copy does not run: ${how} printed ${JSON.stringify(output)} instead of a version`);
  return version;
}

interface Bounded { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string; timedOut: boolean; spawnError?: NodeJS.ErrnoException }

function runBounded(argv: readonly string[], timeoutMs: number): Promise<Bounded> {
  return new Promise((resolvePromise) => {
    // An empty environment: NODE_OPTIONS & co. of the init container must not change the verdict.
    const child = spawn(argv[0], argv.slice(1), { env: {}, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d.length + stdout.length > 65536 ? '' : d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d.length + stderr.length > 65536 ? '' : d));
    child.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolvePromise({ code: null, signal: null, stdout, stderr, timedOut, spawnError: e });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolvePromise({ code, signal, stdout, stderr, timedOut });
    });
  });
}

// ───────────────────────────── mounts and messages ─────────────────────────────

export interface MountEntry { mountPoint: string; options: string[]; fsType: string }

/** The mount holding `path` (longest mount point prefix in /proc/self/mountinfo); undefined without /proc. */
export function mountOf(path: string, mountinfo?: string): MountEntry | undefined {
  let text = mountinfo;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/self/mountinfo', 'utf8');
    } catch {
      return undefined;
    }
  }
  let real = path;
  try {
    real = realpathSync(path);
  } catch {
    /* keep it as given */
  }
  let best: MountEntry | undefined;
  for (const line of text.split('\n')) {
    const m = parseMountinfoLine(line);
    if (!m) continue;
    const inside = m.mountPoint === '/' || real === m.mountPoint || real.startsWith(m.mountPoint + '/');
    // Later lines are mounted on top of earlier ones at the same point: take the last match of the longest.
    if (inside && (!best || m.mountPoint.length >= best.mountPoint.length)) best = m;
  }
  return best;
}

/** `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue` (proc(5)). */
export function parseMountinfoLine(line: string): MountEntry | undefined {
  const f = line.split(' ');
  const dash = f.indexOf('-', 6);
  if (f.length < 10 || dash < 0) return undefined;
  const unescape = (s: string): string => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  return { mountPoint: unescape(f[4]), options: f[5].split(','), fsType: f[dash + 1] ?? '' };
}

function noexecMessage(target: string, mountPoint: string): string {
  return (
    `${target} is on a noexec mount (${mountPoint}): programs cannot run from it, so the worker could not start the agent. ` +
    'Use a volume mounted without noexec (in Kubernetes an emptyDir is exec-able unless a policy adds noexec; ' +
    'with docker/compose do not set the noexec option on the agent_bin volume or tmpfs).'
  );
}

function hintFor(e: unknown, target: string): string {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'EROFS') return ` (the volume at ${target} is mounted read-only in this container; the init container needs it writable)`;
  if (code === 'ENOSPC') return ' (the volume is full: the agent needs about 120 MB)';
  if (code === 'EACCES' || code === 'EPERM') return ` (this uid ${process.getuid?.() ?? '?'} may not write there: make the volume writable for it, e.g. fsGroup in Kubernetes)`;
  return '';
}

function describeErrno(e: unknown): string {
  const x = e as NodeJS.ErrnoException;
  if (!x.code) return String(e);
  return x.message.startsWith(x.code) ? x.message : `${x.code}: ${x.message}`;
}

function isFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}
