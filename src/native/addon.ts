/**
 * The native addon, loaded once: real pipes for an action's stdin/stdout/stderr (below), the
 * posix_spawn start of actions (spawn.ts) and idle memory release (memory.ts).
 *
 * Node (libuv) connects a child's stdio through Unix socket pairs, and Linux refuses to open a
 * socket by path: under a Node parent `echo x > /dev/stderr` (bash and dash), `tee /dev/stderr`,
 * `cat /dev/stdin` and Python's open("/dev/stdout") fail with ENXIO. The Rust agent gives actions
 * pipes, so scripts written for it do that freely. Node has no pipe(2), so the build ships a tiny
 * Node-API addon (build/native/attune-native.c) beside the executable; without it the runner falls
 * back to socket pairs and the agent logs once at start what that breaks.
 *
 * Lookup: $ATTUNE_AGENT_PIPES (a path, or `off`), else the copy the one file's launcher unpacked
 * (src/launcher.ts), else `lib/attune-pipes.node` next to the executable (the portable folder and
 * dist/ have it); when run from source (tests), ./dist/lib.
 */
import { closeSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { launcher } from './launcher.ts';

declare const __AGENT_VERSION__: string | undefined;

export const PIPES_ENV = 'ATTUNE_AGENT_PIPES';
export const PIPES_ADDON = 'attune-pipes.node';
/** `off`: start actions with child_process.spawn (fork of the agent) instead of the addon's posix_spawn. */
export const NATIVE_SPAWN_ENV = 'ATTUNE_AGENT_NATIVE_SPAWN';

/** The addon's functions (build/native/attune-native.c): pipes, action start and exit, idle memory. */
export interface NativeAddon {
  /** [readFd, writeFd], both close-on-exec; throws on EMFILE and the like. */
  pipe(): [number, number];
  /**
   * posix_spawn (on a thread-pool thread) in a new session with default signals and the fds as
   * 0/1/2; resolves with the pid, rejects with an Error carrying `errno` (a number) when the
   * program cannot start. The fds must stay open until it settles.
   */
  spawn?(file: string, argv: string[], env: string[], cwd: string | null, stdin: number, stdout: number, stderr: number): Promise<number>;
  /** waitid(WNOHANG) on that pid: null while it runs, else [exitCode, signalNumber] (one is -1). */
  wait?(pid: number): [number, number] | null;
  /** malloc_trim, and with filePages drop the clean pages of read-only file mappings; the file bytes dropped (memory.ts). */
  releaseMemory?(filePages: boolean): number;
  /** mallopt(M_MMAP_THRESHOLD, 128 KiB): big blocks go back to the kernel when freed (memory.ts). */
  keepLargeAllocationsMapped?(): boolean;
  /** Not dumpable, initial environment block zeroed, fds >= 3 close-on-exec (harden.ts). */
  harden?(): HardenReport;
  /** Clears FD_CLOEXEC on fd (env-handoff.ts). */
  inheritable?(fd: number): void;
}

export interface HardenReport {
  /** PR_GET_DUMPABLE after the call: false. */
  dumpable: boolean;
  /** Bytes of the initial environment block zeroed; -1 when /proc/self/stat was unreadable. */
  environBytes: number;
  /** Descriptors marked close-on-exec by the fallback walk; -1 when close_range did them all. */
  cloexecFds: number;
}

export type PipesStatus =
  | { available: true; path: string }
  | { available: false; reason: string };

let loaded: { addon: NativeAddon | null; status: PipesStatus } | undefined;

/** The addon, or null when it is missing or disabled (loaded once). */
export function nativeAddon(): NativeAddon | null {
  loaded ??= load(process.env);
  return loaded.addon;
}

export function pipesStatus(): PipesStatus {
  loaded ??= load(process.env);
  return loaded.status;
}

function candidates(env: NodeJS.ProcessEnv): string[] {
  const fromEnv = env[PIPES_ENV];
  if (fromEnv !== undefined && fromEnv !== '') return [fromEnv];
  const exeDir = dirname(process.execPath);
  const list = [...(launcher?.addon ? [launcher.addon] : []), join(exeDir, 'lib', PIPES_ADDON)];
  if (typeof __AGENT_VERSION__ !== 'string') list.push(join(process.cwd(), 'dist', 'lib', PIPES_ADDON));
  return list;
}

/**
 * The addon's harden(), also when ATTUNE_AGENT_PIPES=off (that switch is about how actions are
 * started, not about protecting the agent's secrets): null only when no addon file can be loaded.
 */
export function hardenFunction(): { harden: () => HardenReport } | { reason: string } {
  const addon = nativeAddon();
  if (addon?.harden) return { harden: addon.harden };
  if (process.env[PIPES_ENV] !== 'off') return { reason: pipesStatus().available ? `${PIPES_ADDON} has no harden()` : (pipesStatus() as { reason: string }).reason };
  const path = candidates({}).find((p) => existsSync(p));
  if (path === undefined) return { reason: `${PIPES_ADDON} not found` };
  try {
    const mod = { exports: {} as Partial<NativeAddon> };
    process.dlopen(mod, path);
    const fn = mod.exports.harden;
    return typeof fn === 'function' ? { harden: fn } : { reason: `${path} has no harden()` };
  } catch (e) {
    return { reason: `cannot load ${path}: ${(e as Error).message}` };
  }
}

function load(env: NodeJS.ProcessEnv): { addon: NativeAddon | null; status: PipesStatus } {
  if (env[PIPES_ENV] === 'off') return { addon: null, status: { available: false, reason: `${PIPES_ENV}=off` } };
  const tried = candidates(env);
  const path = tried.find((p) => existsSync(p));
  if (path === undefined) return { addon: null, status: { available: false, reason: `${PIPES_ADDON} not found (looked in ${tried.join(', ')})` } };
  try {
    const mod = { exports: {} as Partial<NativeAddon> };
    process.dlopen(mod, path);
    const { pipe, spawn, wait, releaseMemory, keepLargeAllocationsMapped } = mod.exports;
    if (typeof pipe !== 'function') throw new Error('it exports no pipe()');
    // Prove it once: a broken addon must fail here, not on an execution's critical path.
    const [r, w] = pipe();
    closeFds([r, w]);
    const addon: NativeAddon = typeof spawn === 'function' && typeof wait === 'function' && env[NATIVE_SPAWN_ENV] !== 'off' ? { pipe, spawn, wait } : { pipe };
    if (typeof releaseMemory === 'function') addon.releaseMemory = releaseMemory;
    if (typeof keepLargeAllocationsMapped === 'function') addon.keepLargeAllocationsMapped = keepLargeAllocationsMapped;
    if (typeof mod.exports.harden === 'function') addon.harden = mod.exports.harden;
    if (typeof mod.exports.inheritable === 'function') addon.inheritable = mod.exports.inheritable;
    return { addon, status: { available: true, path } };
  } catch (e) {
    return { addon: null, status: { available: false, reason: `cannot load ${path}: ${(e as Error).message}` } };
  }
}

/** Close descriptors we own, ignoring the already closed. */
export function closeFds(fds: readonly number[]): void {
  for (const fd of fds) {
    try {
      closeSync(fd);
    } catch {
      // EBADF: already closed
    }
  }
}
