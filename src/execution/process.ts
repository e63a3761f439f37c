/**
 * The process adapter (docs/attune-compat.md §5.7–5.8): run one argv in its own process group with a cleared
 * environment, feed stdin, capture bounded stdout/stderr (optionally streamed to log files and
 * mirrored), enforce the timeout and cancellation, and always leave no process of the group behind.
 * runProcess → spawnAction (real pipes, the addon's posix_spawn or child_process) → ProcessResult.
 *
 * Completion is the child's `exit` event plus a bounded drain of the pipes, never `close`: a
 * daemonised grandchild that inherited stdout would otherwise hang the run forever. After the drain
 * whatever is left of the process group is SIGKILLed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import type { FileHandle } from 'node:fs/promises';
import { BoundedCapture } from './capture.ts';
import { openLogFile } from './log-files.ts';
import { StreamScrubber } from './secret-scrub.ts';
import { closeFds, nativeAddon } from '../native/addon.ts';
import { spawnNative, type ActionChild } from '../native/spawn.ts';
import { cancelReasonOf, type CancelReason } from './cancel.ts';

export interface ProcessSpec {
  argv: string[];
  env: Record<string, string>;
  /** null = inherit the agent's cwd. */
  cwd: string | null;
  /** Text written to stdin before it is closed; null = stdin opened and closed at once. */
  stdin: string | null;
  timeoutMs: number;
  killGracePeriodMs: number;
  /** How long the pipes may keep delivering after the process exited (Attune default 1 s). */
  logFinalizationTimeoutMs?: number;
  maxStdoutBytes: number;
  maxStderrBytes: number;
  /**
   * Log files that receive the same bounded bytes as the capture (created/truncated here). A
   * promise: it may settle while the process already runs (the log artifacts are allocated then);
   * what the action writes meanwhile waits in the capture. Null = no files. `root`: the shared
   * directory they are under (artifacts_dir), below which no link is followed.
   */
  logFiles?: Promise<{ root: string; stdout: string; stderr: string } | null>;
  /** Secret texts replaced in both streams before the capture, the files and the mirrors see them (secret-scrub.ts). */
  secretPatterns?: readonly string[];
  /** Copy the bounded output here too (`log.mirror_runtime_*`). */
  mirrorStdout?: NodeJS.WritableStream | null;
  mirrorStderr?: NodeJS.WritableStream | null;
}

export interface RunLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

export interface ProcessExit {
  kind: 'exited';
  pid: number;
  /** Process exit code; -1 when killed by a signal or timed out. */
  exitCode: number;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  cancelled: CancelReason | null;
  durationMs: number;
  stdout: string;
  stderr: string;
  stdoutTruncated: boolean;
  stdoutBytesTruncated: number;
  stderrTruncated: boolean;
  stderrBytesTruncated: number;
  /** The pipes did not reach EOF within the finalization window (a grandchild held them). */
  logsIncomplete: boolean;
  /** Writing parameters to stdin failed (EPIPE when the action exited without reading). */
  stdinError: { code: string | undefined; message: string } | null;
  /** What started the process: the addon's posix_spawn, or child_process.spawn (fork); null: nothing started (cancelled before). */
  launcher: Launcher | null;
  /** Log file problems (the run itself is unaffected). */
  logErrors: string[];
  /** What each log file received (bytes, SHA-256), when it was written completely; null otherwise. */
  stdoutLog: LogDigest | null;
  stderrLog: LogDigest | null;
}

export type Launcher = 'posix_spawn' | 'child_process';

export interface LogDigest { bytes: number; sha256: string }

export interface SpawnFailure {
  kind: 'spawn-error';
  code: string | undefined;
  message: string;
  durationMs: number;
}

/** How one process ended: it ran (and exited, was killed, timed out or was cancelled), or could not be started. */
export type ProcessResult = ProcessExit | SpawnFailure;

const NOOP_LOGGER: RunLogger = { debug() {}, info() {}, warn() {} };
export const DEFAULT_LOG_FINALIZATION_TIMEOUT_MS = 1000;
const SPAWN_ATTEMPTS = 5;
const ETXTBSY_RETRY_MS = 25;
/** After the leftover group was SIGKILLed, how long its pipe ends may take to close. */
const POST_KILL_DRAIN_MS = 250;
const MAX_TIMER_MS = 2 ** 31 - 1;

export async function runProcess(spec: ProcessSpec, opts: { signal?: AbortSignal; logger?: RunLogger } = {}): Promise<ProcessResult> {
  const log = opts.logger ?? NOOP_LOGGER;
  const signal = opts.signal;
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);

  if (signal?.aborted) return cancelledBeforeStart(cancelReasonOf(signal));

  const logErrors: string[] = [];
  // The log files are created while the process starts (not before: that was two sequential
  // open+fchmod round trips to the thread pool on every execution's critical path); what the
  // action writes meanwhile waits in the capture, which holds it anyway.
  const stdoutFile = openOptional(spec.logFiles, 'stdout', logErrors);
  const stderrFile = openOptional(spec.logFiles, 'stderr', logErrors);
  const closeFiles = async () => {
    const files = await Promise.all([stdoutFile, stderrFile]);
    await Promise.allSettled(files.map((f) => f?.close()));
  };

  let spawned: Spawned;
  const spawnStarted = performance.now();
  try {
    spawned = await spawnAction(spec, log);
  } catch (e) {
    await closeFiles();
    const err = e as NodeJS.ErrnoException;
    return { kind: 'spawn-error', code: err.code, message: describeSpawnError(spec, err), durationMs: elapsed() };
  }
  const { child } = spawned;
  const pid = child.pid!;
  // Either spawn blocks the event loop until the child has exec'd (child_process's fork: a cost
  // that grows with the agent's RSS; the addon's posix_spawn: a constant one).
  log.debug({ pid, launcher: spawned.launcher, spawn_ms: +(performance.now() - spawnStarted).toFixed(2) }, 'action process started');
  child.on('error', (e) => log.warn({ pid, err: e.message }, 'action process error'));

  const scrub = () => (spec.secretPatterns?.length ? new StreamScrubber(spec.secretPatterns) : null);
  const outPump = new OutputPump(spawned.stdout, new BoundedCapture('stdout', spec.maxStdoutBytes), stdoutFile, spec.mirrorStdout ?? null, logErrors, scrub());
  const errPump = new OutputPump(spawned.stderr, new BoundedCapture('stderr', spec.maxStderrBytes), stderrFile, spec.mirrorStderr ?? null, logErrors, scrub());
  const outDone = outPump.done;
  const errDone = errPump.done;

  let stdinError: ProcessExit['stdinError'] = null;
  spawned.stdin.on('error', (e: NodeJS.ErrnoException) => {
    stdinError ??= { code: e.code, message: e.code === 'EPIPE' ? 'Broken pipe (os error 32)' : e.message };
  });
  if (spec.stdin !== null && spec.stdin !== '') spawned.stdin.end(spec.stdin);
  else spawned.stdin.end();

  const exited = new Promise<{ code: number | null; sig: NodeJS.Signals | null }>((resolve) => {
    // A very short action may have ended (and been reaped) before we got here.
    if (child.exitCode !== null || child.signalCode !== null) resolve({ code: child.exitCode, sig: child.signalCode });
    else child.once('exit', (code, sig) => resolve({ code, sig }));
  });

  let terminating: 'timeout' | CancelReason | null = null;
  let graceTimer: NodeJS.Timeout | undefined;
  const terminate = (why: 'timeout' | CancelReason) => {
    if (terminating !== null || child.exitCode !== null || child.signalCode !== null) return;
    terminating = why;
    log.info({ pid, reason: why, grace_ms: spec.killGracePeriodMs }, 'terminating action process group (SIGTERM)');
    killGroup(pid, 'SIGTERM');
    graceTimer = setTimeout(() => {
      log.warn({ pid, reason: why }, 'action still running after the grace period; SIGKILL to its process group');
      killGroup(pid, 'SIGKILL');
    }, Math.min(spec.killGracePeriodMs, MAX_TIMER_MS));
  };
  // setTimeout fires at once above 2^31−1 ms (~24.8 days): clamp very long timeouts.
  const timeoutTimer = setTimeout(() => terminate('timeout'), Math.min(spec.timeoutMs, MAX_TIMER_MS));
  const onAbort = () => terminate(cancelReasonOf(signal!));
  signal?.addEventListener('abort', onAbort, { once: true });
  if (signal?.aborted) onAbort(); // aborted while the process was being spawned

  const { code, sig } = await exited;
  clearTimeout(timeoutTimer);
  clearTimeout(graceTimer);
  signal?.removeEventListener('abort', onAbort);
  const durationMs = elapsed();

  // Bounded drain: the pipes normally reach EOF right after exit. (EOF only: the log files may
  // still be waiting for their paths — the allocation — which says nothing about the pipes.)
  const finalizationMs = spec.logFinalizationTimeoutMs ?? DEFAULT_LOG_FINALIZATION_TIMEOUT_MS;
  const eof = Promise.all([outPump.ended, errPump.ended]);
  const drained = await within(eof, finalizationMs);
  // Whatever is left of the group (background children) goes now; ESRCH when nothing is.
  killGroup(pid, 'SIGKILL', true);
  if (!drained) {
    log.warn({ pid, finalization_ms: finalizationMs }, 'action output pipes still open after exit (a background process held them); logs are incomplete');
    if (!(await within(eof, POST_KILL_DRAIN_MS))) {
      outPump.abandon();
      errPump.abandon();
    }
  }
  // What was kept is in the log files before the result (and the seal) is made.
  await Promise.all([outDone, errDone]);
  // Every byte is written (the pumps awaited each write): closing the descriptors does not have to
  // hold the result back (another thread-pool round trip on every execution's critical path).
  void closeFiles();

  const out = outPump.capture.result();
  const err = errPump.capture.result();
  const timedOut = terminating === 'timeout';
  const cancelled = terminating === 'cancel' || terminating === 'shutdown' ? terminating : null;
  return {
    kind: 'exited',
    pid,
    exitCode: timedOut || code === null ? -1 : code,
    signal: sig,
    timedOut,
    cancelled,
    durationMs,
    stdout: out.text,
    stderr: err.text,
    stdoutTruncated: out.truncated,
    stdoutBytesTruncated: out.bytesTruncated,
    stderrTruncated: err.truncated,
    stderrBytesTruncated: err.bytesTruncated,
    logsIncomplete: !drained,
    stdinError,
    launcher: spawned.launcher,
    logErrors,
    stdoutLog: outPump.fileDigest(),
    stderrLog: errPump.fileDigest(),
  };
}

function cancelledBeforeStart(reason: CancelReason): ProcessExit {
  return {
    kind: 'exited', pid: 0, exitCode: -1, signal: null, timedOut: false, cancelled: reason, durationMs: 0,
    stdout: '', stderr: '', stdoutTruncated: false, stdoutBytesTruncated: 0, stderrTruncated: false,
    stderrBytesTruncated: 0, logsIncomplete: false, stdinError: null, launcher: null, logErrors: [], stdoutLog: null, stderrLog: null,
  };
}

/** Signal the process group (negative pid); fall back to the pid itself if the group is gone. */
export function killGroup(pid: number, sig: NodeJS.Signals, groupOnly = false): void {
  try {
    process.kill(-pid, sig);
    return;
  } catch {
    // ESRCH: no member left; EPERM: not ours any more.
  }
  if (groupOnly) return;
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

/** The child and the agent's ends of its stdio. */
interface Spawned {
  child: ActionChild;
  launcher: Launcher;
  stdin: Writable;
  stdout: PumpSource;
  stderr: PumpSource;
}

/** A child-process stream (socket pair, adopted by the pump) or our read end of a real pipe. */
type PumpSource = { kind: 'stream'; stream: Readable } | { kind: 'fd'; fd: number };

/**
 * Start the action with real pipes as its stdio when the addon is there (native/addon.ts: the child
 * gets one end of each as fd 0/1/2 — posix_spawn or libuv dup2s them, so its copies lose
 * close-on-exec — and the agent closes those ends right after the exec and keeps the others); the
 * addon's posix_spawn starts it when it can (native/spawn.ts), else child_process.spawn does
 * (socket pairs without the addon). Every pipe fd is close-on-exec, so concurrent spawns never
 * inherit another run's pipes. ETXTBSY (the file just written by another thread or process, still
 * open for writing) is retried a few times.
 */
async function spawnAction(spec: ProcessSpec, log: RunLogger): Promise<Spawned> {
  const addon = nativeAddon();
  for (let attempt = 1; ; attempt++) {
    const owned: number[] = [];
    try {
      if (!addon) return withStreams(await spawnOnce(spec, ['pipe', 'pipe', 'pipe']));
      const pipe = () => {
        const ends = addon.pipe();
        owned.push(...ends);
        return ends;
      };
      const [inRead, inWrite] = pipe();
      const [outRead, outWrite] = pipe();
      const [errRead, errWrite] = pipe();
      const childEnds = [inRead, outWrite, errWrite];
      const native = await spawnNative(addon, spec, [inRead, outWrite, errWrite]);
      const child = native ?? (await spawnOnce(spec, childEnds));
      closeFds(childEnds);
      return {
        child,
        launcher: native ? 'posix_spawn' : 'child_process',
        stdin: new Socket({ fd: inWrite, readable: false, writable: true }),
        stdout: { kind: 'fd', fd: outRead },
        stderr: { kind: 'fd', fd: errRead },
      };
    } catch (e) {
      closeFds(owned);
      if ((e as NodeJS.ErrnoException).code !== 'ETXTBSY' || attempt >= SPAWN_ATTEMPTS) throw e;
      log.debug({ attempt, file: spec.argv[0] }, 'spawn hit ETXTBSY; retrying');
      await new Promise((r) => setTimeout(r, ETXTBSY_RETRY_MS));
    }
  }
}

function withStreams(child: ChildProcess): Spawned {
  return { child, launcher: 'child_process', stdin: child.stdin!, stdout: { kind: 'stream', stream: child.stdout! }, stderr: { kind: 'stream', stream: child.stderr! } };
}

function spawnOnce(spec: ProcessSpec, stdio: ('pipe' | number)[]): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    let child: ChildProcess;
    try {
      child = spawn(spec.argv[0], spec.argv.slice(1), {
        cwd: spec.cwd ?? undefined,
        env: spec.env,
        // detached = setsid(): the action leads its own process group, so signals reach its children.
        detached: true,
        stdio,
        windowsHide: true,
      });
    } catch (e) {
      reject(e);
      return;
    }
    const onError = (e: Error) => {
      child.stdin?.destroy();
      child.stdout?.destroy();
      child.stderr?.destroy();
      reject(e);
    };
    child.once('error', onError);
    child.once('spawn', () => {
      child.removeListener('error', onError);
      resolve(child);
    });
  });
}

function describeSpawnError(spec: ProcessSpec, e: NodeJS.ErrnoException): string {
  const file = spec.argv[0];
  switch (e.code) {
    case 'ENOENT':
      return `cannot start '${file}': no such file or directory (ENOENT)` +
        (spec.cwd ? ` (or the working directory ${spec.cwd} is missing)` : '');
    case 'EACCES':
      return `cannot start '${file}': permission denied (EACCES); check it is executable and not on a noexec mount`;
    case 'ETXTBSY':
      return `cannot start '${file}': text file busy (ETXTBSY) after ${SPAWN_ATTEMPTS} attempts`;
    case 'ENOEXEC':
      return `cannot start '${file}': not an executable format (ENOEXEC); add a #! line or set the action's runtime`;
    default:
      return `cannot start '${file}': ${e.message}`;
  }
}

async function openOptional(files: ProcessSpec['logFiles'], stream: 'stdout' | 'stderr', errors: string[]): Promise<FileHandle | null> {
  const where = files ? await files : null;
  const path = where?.[stream];
  if (!where || !path) return null;
  try {
    return await openLogFile(where.root, path);
  } catch (e) {
    errors.push(`cannot create log file ${path}: ${(e as Error).message}`);
    return null;
  }
}

/** Resolves true if `p` settles within `ms`, false otherwise; never leaves a timer behind. */
async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((r) => {
    timer = setTimeout(() => r(false), ms);
  });
  try {
    return await Promise.race([p.then(() => true as const), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Feeds one pipe into the bounded capture, its log file and the optional mirror.
 *
 * Memory: a stream `data` event carries a freshly allocated buffer per read (64 KiB), garbage as
 * soon as it is copied or dropped; an action writing 1 GiB made ~60 MB of such garbage pile up
 * before V8 collected it. Instead the pipe's handle is adopted by a socket with `onread`: libuv
 * reads into ONE reused 64 KiB buffer, the capture copies what it keeps, the rest costs nothing.
 * Reading never pauses: what waits for the log file is only what the capture kept (≤ its limit),
 * written in order from the capture's own memory.
 */
class OutputPump {
  readonly capture: BoundedCapture;
  /** Resolves once the pipe reached EOF (or failed, or was abandoned). */
  readonly ended: Promise<void>;
  /** `ended`, and the log file writes done. */
  readonly done: Promise<void>;
  readonly #source: Readable;
  #file: FileHandle | null = null;
  #fileFailed = false;
  readonly #fileHash = createHash('sha256');
  #fileBytes = 0;
  readonly #mirror: NodeJS.WritableStream | null;
  readonly #errors: string[];
  readonly #scrub: StreamScrubber | null;
  #writes: Promise<void> = Promise.resolve();

  constructor(from: PumpSource, capture: BoundedCapture, file: Promise<FileHandle | null>, mirror: NodeJS.WritableStream | null, errors: string[],
    scrub: StreamScrubber | null = null) {
    this.capture = capture;
    this.#scrub = scrub;
    this.#writes = file.then((f) => {
      this.#file = f;
    });
    this.#mirror = mirror;
    this.#errors = errors;
    const onChunk = (n: number, buf: Buffer) => {
      this.#take(buf.subarray(0, n));
      return true;
    };
    if (from.kind === 'fd') {
      this.#source = new Socket({ fd: from.fd, readable: true, writable: false, onread: readBuffer(onChunk) } as unknown as ConstructorParameters<typeof Socket>[0]);
    } else {
      const adopted = adoptWithReadBuffer(from.stream, onChunk);
      this.#source = adopted ?? from.stream;
      if (!adopted) from.stream.on('data', (chunk: Buffer) => this.#take(chunk));
    }
    const source = this.#source;
    this.ended = new Promise<void>((resolve) => {
      source.once('end', resolve);
      source.once('close', resolve);
      source.once('error', () => resolve());
    });
    // #writes is read when the pipe has ended: by then every chunk's write is chained on it (and
    // the scrubber's held-back last bytes, passed on here).
    this.done = this.ended.then(() => {
      if (this.#scrub) this.#keep(this.#scrub.end());
      return this.#writes;
    });
  }

  /** Stop reading (a background process keeps the pipe open): whatever it still writes is lost. */
  abandon(): void {
    this.#source.destroy();
  }

  #take(chunk: Uint8Array): void {
    this.#keep(this.#scrub ? this.#scrub.write(chunk) : chunk);
  }

  #keep(chunk: Uint8Array): void {
    const kept = this.capture.write(chunk);
    if (kept.length === 0) return;
    if (this.#mirror) this.#mirror.write(kept);
    if (!this.#fileFailed) this.#writes = this.#writes.then(() => this.#append(kept));
  }

  /** The log file's bytes and digest (hashed as written: sealing needs no re-read); null if it was not written whole. */
  fileDigest(): LogDigest | null {
    if (this.#fileFailed || this.#file === null) return null;
    return { bytes: this.#fileBytes, sha256: this.#fileHash.digest('hex') };
  }

  async #append(bytes: Buffer): Promise<void> {
    const file = this.#file;
    if (!file) return;
    try {
      for (let off = 0; off < bytes.length;) off += (await file.write(bytes, off, bytes.length - off)).bytesWritten;
      this.#fileHash.update(bytes);
      this.#fileBytes += bytes.length;
    } catch (e) {
      this.#errors.push(`writing ${this.capture.stream} log failed: ${(e as Error).message}`);
      this.#file = null;
      this.#fileFailed = true;
    }
  }
}

const READ_BUFFER_BYTES = 64 * 1024;

/** net.Socket `onread`: libuv reads into this one buffer, reused for every read of the pipe. */
function readBuffer(onChunk: (n: number, buf: Buffer) => boolean) {
  return { buffer: Buffer.allocUnsafeSlow(READ_BUFFER_BYTES), callback: onChunk };
}

/**
 * Move a child-process pipe's handle to a socket that reads into one reused buffer (net.Socket's
 * `onread`); the original stream is detached from the handle and destroyed. Null when this Node
 * does not expose what is needed (the caller then reads the stream normally).
 */
function adoptWithReadBuffer(pipe: Readable, onChunk: (n: number, buf: Buffer) => boolean): Socket | null {
  const original = pipe as Socket & { _handle?: { useUserBuffer?: unknown } | null };
  const handle = original._handle;
  if (!(pipe instanceof Socket) || !handle || typeof handle.useUserBuffer !== 'function' || pipe.readableLength > 0) return null;
  const adopted = new Socket({ handle, readable: true, writable: false, onread: readBuffer(onChunk) } as unknown as ConstructorParameters<typeof Socket>[0]);
  original._handle = null; // the original no longer touches the handle ...
  original.destroy(); // ... and just closes (ChildProcess counts that 'close')
  return adopted;
}
