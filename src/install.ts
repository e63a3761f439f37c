/**
 * `attune-agent install <dir>`: the init-container step, with no shell needed in the image.
 *
 * Copies the one file (by default the file this agent runs from; `--source <file>` names another)
 * to `<dir>/attune-agent`, typically a volume shared with the worker container, which may mount it
 * read-only anywhere (Attune mounts it at /opt/attune/agent). The file is written under a
 * temporary name, made 0555 and renamed into place, so re-installing into a persistent volume
 * (compose upgrades) never rewrites a file that a running worker has mapped (no ETXTBSY, no torn
 * binary). 0555, not 0111: the launcher reads its own file at start.
 *
 * Then the copy is checked: byte-for-byte against the source (a full disk or a broken volume), its
 * ELF machine against this CPU, and finally it is RUN once with `--version` and
 * ATTUNE_AGENT_VERIFY=full (the launcher then also checks the SHA-256 of the Node program inside),
 * so a `noexec` mount, a wrong architecture or a damaged copy fails the init container loudly
 * (exit 5) instead of leaving the worker crash-looping with an obscure error. A noexec mount is also
 * found up front in /proc/self/mountinfo, before 115 MB are copied.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  accessSync, constants, chmodSync, copyFileSync, createReadStream, existsSync, mkdirSync, openSync, readSync, closeSync,
  readFileSync, realpathSync, renameSync, rmSync, statSync,
} from 'node:fs';
import { join, resolve } from 'node:path';
import { EXIT } from './exit-codes.ts';
import { launcher } from './native/launcher.ts';

/** Where Attune's workers mount the agent volume (any other path works as well). */
export const CONTRACT_DIR = '/opt/attune/agent';
const EXECUTABLE = 'attune-agent';
/** The one file ends with a 64-byte footer that starts with this (build/launcher/onefile.h). */
const ONEFILE_MAGIC = 'ATTUNE-ONEFILE/1';
const ONEFILE_FOOTER_SIZE = 64;
const RUN_CHECK_TIMEOUT_MS = 60_000;

export interface InstallOptions {
  targetDir: string;
  /** The one file to copy (default: the one this agent runs from); a directory means `<dir>/attune-agent`. */
  source?: string;
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
    const r = await install(opts.targetDir, opts.source);
    out(`attune-agent install: installed attune-agent ${r.version} as ${r.file} (${(r.bytes / 1e6).toFixed(1)} MB); the copy runs there.`);
    if (r.target !== CONTRACT_DIR) out(`attune-agent install: mount this volume in the worker container (read-only is fine; Attune uses ${CONTRACT_DIR}) and run its ${EXECUTABLE}.`);
    return EXIT.OK;
  } catch (e) {
    if (!(e instanceof InstallError)) throw e;
    err(`attune-agent install: error: ${e.message}`);
    return EXIT.INSTALL;
  }
}

export interface InstallResult { target: string; file: string; version: string; bytes: number }

export async function install(targetDir: string, source?: string): Promise<InstallResult> {
  const from = resolveSource(source);
  const target = resolve(targetDir);
  const file = join(target, EXECUTABLE);
  prepareTarget(target, from);

  const noexec = mountOf(target);
  if (noexec?.options.includes('noexec')) throw new InstallError(noexecMessage(target, noexec.mountPoint));

  const bytes = statSync(from).size;
  copyFile(from, file, target);
  await verifyCopy(from, file);
  checkMachine(file);
  const version = await runCopy(file);
  return { target, file, version, bytes };
}

// ───────────────────────────── source and target ─────────────────────────────

/** A one file carries its payload footer at the end (a plain SEA or a portable folder's executable does not). */
export function isOneFile(path: string): boolean {
  let fd: number | undefined;
  try {
    fd = openSync(path, 'r');
    const size = statSync(path).size;
    if (size < ONEFILE_FOOTER_SIZE) return false;
    const buf = Buffer.alloc(16);
    readSync(fd, buf, 0, 16, size - ONEFILE_FOOTER_SIZE);
    return buf.toString('latin1') === ONEFILE_MAGIC;
  } catch {
    return false;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

function resolveSource(source: string | undefined): string {
  let file = source !== undefined ? resolve(source) : (launcher?.self ?? process.execPath);
  if (source !== undefined && isDirectory(file)) file = join(file, EXECUTABLE);
  if (!isFile(file)) throw new InstallError(`${file} does not exist or is not a file: pass the agent's one file (--source <file>)`);
  if (!isOneFile(file)) {
    throw new InstallError(source !== undefined
      ? `${file} is not the one-file agent (it carries no payload): pass dist/attune-agent or /usr/local/bin/attune-agent of the agent images`
      : `this executable (${file}) is not the one-file agent, so it cannot be copied alone; run the one of the agent-init image (/usr/local/bin/attune-agent), or pass --source <file>`);
  }
  return file;
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
  const dst = join(target, EXECUTABLE);
  if (existsSync(dst) && realpathSync(dst) === realpathSync(source)) {
    throw new InstallError(`${dst} is the file this agent runs from; install into another directory (e.g. the shared volume at /mnt/agent-bin)`);
  }
}

// ───────────────────────────── copy ─────────────────────────────

function copyFile(source: string, dst: string, target: string): void {
  const tmp = `${dst}.attune-install-${process.pid}`;
  const step = (what: string, path: string, fn: () => void): void => {
    try {
      fn();
    } catch (e) {
      rmSync(tmp, { force: true });
      throw new InstallError(`cannot ${what} ${path}: ${describeErrno(e)}${hintFor(e, target)}`);
    }
  };
  step('write', tmp, () => {
    rmSync(tmp, { force: true });
    copyFileSync(source, tmp);
    chmodSync(tmp, 0o555);
  });
  step('rename into', dst, () => {
    if (existsSync(dst) && statSync(dst).isDirectory()) rmSync(dst, { recursive: true, force: true });
    renameSync(tmp, dst);
  });
}

async function sha256(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) h.update(chunk as Buffer);
  return h.digest('hex');
}

async function verifyCopy(source: string, dst: string): Promise<void> {
  let same: boolean;
  try {
    same = statSync(dst).size === statSync(source).size && (await sha256(dst)) === (await sha256(source));
  } catch (e) {
    throw new InstallError(`cannot read back ${dst}: ${describeErrno(e)}`);
  }
  if (!same) throw new InstallError(`the copy ${dst} differs from ${source}: the volume lost data (full, or a broken file system)`);
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
 * Runs `<dir>/attune-agent --version` as the worker will: the one file needs nothing beside it, so
 * the copy is executed directly. ATTUNE_AGENT_VERIFY=full makes its launcher check every byte.
 */
async function runCopy(exe: string): Promise<string> {
  const argv = [exe, '--version'];
  const r = await runBounded(argv, RUN_CHECK_TIMEOUT_MS);
  const how = `\`${argv.join(' ')}\``;
  const target = resolve(exe, '..');
  if (r.spawnError) {
    const code = r.spawnError.code;
    if (code === 'EACCES' || code === 'EPERM') {
      const m = mountOf(target);
      if (m?.options.includes('noexec')) throw new InstallError(noexecMessage(target, m.mountPoint));
      throw new InstallError(`cannot execute ${exe} (${code}): the volume at ${target} does not allow running programs (a noexec mount, or a security policy such as SELinux/AppArmor); mount it without noexec`);
    }
    if (code === 'ENOEXEC') throw new InstallError(`${exe} cannot be executed on this machine (ENOEXEC: wrong architecture or a broken copy)`);
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
    // Only the full check: NODE_OPTIONS & co. of the init container must not change the verdict.
    const child = spawn(argv[0], argv.slice(1), { env: { ATTUNE_AGENT_VERIFY: 'full' }, stdio: ['ignore', 'pipe', 'pipe'] });
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

function isDirectory(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}
