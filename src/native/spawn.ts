/**
 * Action processes started by the addon's posix_spawn (addon.ts) instead of child_process.spawn.
 *
 * Why: libuv starts a child with fork(), which copies the page tables of the whole agent and blocks
 * the event loop for ~2–3 ms per execution at ~90 MB RSS (the largest single cost per run in the
 * profile). posix_spawn (clone with CLONE_VM|CLONE_VFORK) costs the same whatever the agent's size.
 *
 * The spawn itself runs on a thread-pool thread (the addon): posix_spawn suspends its caller until the
 * child has exec'd, and that wait (the child scheduled on a busy machine) is not the event loop's.
 *
 * Exit: libuv does not know these pids, so on every SIGCHLD each live action pid is asked with
 * waitid(WNOHANG) on that pid alone; libuv's own children (interpreter probes) and tini's orphans are
 * never reaped here. SIGCHLD listeners do not keep the event loop alive; the runner's timers and pipes
 * do, for as long as an action runs.
 */
import { EventEmitter } from 'node:events';
import { constants } from 'node:os';
import type { NativeAddon } from './addon.ts';

/** What the runner needs of a child process (child_process.ChildProcess has the same shape). */
export interface ActionChild {
  readonly pid?: number;
  readonly exitCode: number | null;
  readonly signalCode: NodeJS.Signals | null;
  once(event: 'exit', listener: (code: number | null, signal: NodeJS.Signals | null) => void): this;
  on(event: 'error', listener: (err: Error) => void): this;
}

type SpawningAddon = Required<NativeAddon>;

/** Number → name, the first name of a number winning (SIGABRT, not its alias SIGIOT; as child_process reports). */
function byNumber<T extends string>(table: Record<string, number>): Map<number, T> {
  const names = new Map<number, T>();
  for (const [name, n] of Object.entries(table)) if (!names.has(n)) names.set(n, name as T);
  return names;
}
const SIGNAL_NAMES = byNumber<NodeJS.Signals>(constants.signals);
const ERRNO_NAMES = byNumber<string>(constants.errno);

class NativeChild extends EventEmitter implements ActionChild {
  readonly pid: number;
  exitCode: number | null = null;
  signalCode: NodeJS.Signals | null = null;

  constructor(pid: number) {
    super();
    this.pid = pid;
  }

  /** Called with the waitid result once the process ended. */
  settle(code: number, signal: number): void {
    if (signal >= 0) this.signalCode = SIGNAL_NAMES.get(signal) ?? (`SIG${signal}` as NodeJS.Signals);
    else this.exitCode = code;
    this.emit('exit', this.exitCode, this.signalCode);
  }
}

const live = new Map<number, NativeChild>();
let listening: SpawningAddon | null = null;
/** A slow poll while actions run: an exit is never missed, even if a SIGCHLD were (it costs a waitid per action per second). */
const POLL_MS = 1000;
let poll: NodeJS.Timeout | undefined;

function reapLive(addon: SpawningAddon): void {
  for (const [pid, child] of live) {
    let status: [number, number] | null;
    try {
      status = addon.wait(pid);
    } catch {
      // ECHILD: someone else reaped it (cannot happen unless a waitpid(-1) runs in this process);
      // report it as killed rather than wait for ever.
      status = [-1, constants.signals.SIGKILL];
    }
    if (status === null) continue;
    live.delete(pid);
    child.settle(status[0], status[1]);
  }
  if (live.size === 0 && poll !== undefined) {
    clearInterval(poll);
    poll = undefined;
  }
}

/**
 * Start argv[0] (a path: no PATH search here) with the three fds as its stdio (they must stay open
 * until this settles). Null when the addon cannot do this one (no posix_spawn in it, a bare
 * command name, ENOSYS for a working directory on glibc < 2.29, a file without #! line): the
 * caller then uses child_process.spawn. Rejects with an ErrnoException-like Error (`code` ENOENT,
 * EACCES, ETXTBSY...) when the program cannot start.
 */
export async function spawnNative(
  addon: NativeAddon,
  spec: { argv: string[]; env: Record<string, string>; cwd: string | null },
  fds: readonly [number, number, number],
): Promise<ActionChild | null> {
  if (addon.spawn === undefined || addon.wait === undefined || !spec.argv[0]?.includes('/')) return null;
  const native = addon as SpawningAddon;
  if (listening === null) {
    listening = native;
    process.on('SIGCHLD', () => reapLive(native));
  }
  const env = Object.entries(spec.env).map(([k, v]) => `${k}=${v}`);
  let pid: number;
  try {
    pid = await native.spawn(spec.argv[0], spec.argv, env, spec.cwd, fds[0], fds[1], fds[2]);
  } catch (e) {
    const errno = (e as { errno?: unknown }).errno;
    if (typeof errno !== 'number') throw e;
    const code = ERRNO_NAMES.get(errno) ?? `E${errno}`;
    // ENOSYS: no addchdir on this glibc. ENOEXEC (no #! line): child_process's execvp runs such a
    // file with /bin/sh, and actions written for that keep working.
    if (code === 'ENOSYS' || code === 'ENOEXEC') return null;
    throw Object.assign(new Error(`spawn ${spec.argv[0]} ${code}`), { code, errno: -errno, syscall: 'posix_spawn', path: spec.argv[0] });
  }
  const child = new NativeChild(pid);
  live.set(pid, child);
  if (poll === undefined) {
    poll = setInterval(() => reapLive(native), POLL_MS);
    poll.unref();
  }
  // The spawn ran on another thread: the child may have exited, and its SIGCHLD been handled,
  // before it was registered. Ask now; it stays a zombie until asked, so nothing is lost.
  reapLive(native);
  return child;
}
