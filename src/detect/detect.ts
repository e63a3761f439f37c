/**
 * Interpreter detection (docs/attune-compat.md §2.1–2.2), fixed where the Rust agent hangs: every probe has a
 * timeout, all probes run in parallel, and no `which(1)` is needed in the image (PATH is searched
 * in-process with the `which` package against the cleared child environment's PATH).
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import which from 'which';
import { RUNTIMES, normalizeRuntimeName, type RuntimeSpec } from '../runtimes.ts';
import { parseVersion } from './parse.ts';

export interface DetectedRuntime {
  /** Canonical runtime name: shell, python, node, ruby, go, java, r, perl. */
  name: string;
  /** Absolute path of the interpreter that was found. */
  path: string;
  version: string | null;
  /** Binary name that matched (`python3`, `bash`, …). */
  binary: string;
  /** Why the version is unknown (timeout, crash, no version in output); absent when known. */
  note?: string;
}

export interface UnusableRuntime {
  name: string;
  path: string;
  binary: string;
  reason: string;
}

export interface DetectionResult {
  /** Everything found and usable, in probe order (unfiltered). */
  detected: DetectedRuntime[];
  /** Found on PATH but could not be executed at all. */
  unusable: UnusableRuntime[];
  /** The ATTUNE_WORKER_RUNTIMES filter in force (empty = none). */
  filter: string[];
  /** `detected` after the filter. */
  selected: DetectedRuntime[];
}

export interface DetectOptions {
  env: Record<string, string>;
  probeTimeoutMs: number;
  filter: readonly string[];
}

export async function detectRuntimes(opts: DetectOptions): Promise<DetectionResult> {
  // Each probe's lookup and spawn block the event loop until the child runs, one after another: the
  // slow starters go first so their run overlaps the others' launches (detection ≈ the slowest probe).
  const launchOrder = [...RUNTIMES].sort((a, b) => Number(b.slowProbe === true) - Number(a.slowProbe === true));
  const byName = new Map(await Promise.all(launchOrder.map(async (p) => [p.name, await probeRuntime(p, opts.env, opts.probeTimeoutMs)] as const)));
  const results = RUNTIMES.map((p) => byName.get(p.name)!);
  const detected: DetectedRuntime[] = [];
  const unusable: UnusableRuntime[] = [];
  for (const r of results) {
    if (r.detected) detected.push(r.detected);
    unusable.push(...r.unusable);
  }
  const filter = [...opts.filter];
  const wanted = new Set(filter.map(normalizeRuntimeName));
  const selected = filter.length === 0 ? detected : detected.filter((d) => wanted.has(normalizeRuntimeName(d.name)));
  return { detected, unusable, filter, selected };
}

export function locateBinary(binary: string, env: Record<string, string>): string | null {
  if ((binary === 'bash' || binary === 'sh') && existsSync(`/bin/${binary}`)) return `/bin/${binary}`;
  return which.sync(binary, { path: env.PATH ?? '', nothrow: true });
}

async function probeRuntime(
  spec: RuntimeSpec,
  env: Record<string, string>,
  timeoutMs: number,
): Promise<{ detected?: DetectedRuntime; unusable: UnusableRuntime[] }> {
  const unusable: UnusableRuntime[] = [];
  for (const binary of spec.binaries) {
    const path = locateBinary(binary, env);
    if (!path) continue;
    const run = await runVersionProbe(path, spec.versionArgs, env, timeoutMs);
    if (run.spawnError) {
      // Found but cannot execute (missing loader/libraries, no exec bit): try the next candidate.
      unusable.push({ name: spec.name, path, binary, reason: run.spawnError });
      continue;
    }
    const version = parseVersion(run.output, spec.versionStyle);
    const d: DetectedRuntime = { name: spec.name, path, version, binary };
    if (run.timedOut) d.note = `version probe timed out after ${timeoutMs} ms`;
    else if (run.signal) d.note = `version probe killed by ${run.signal}`;
    else if (version === null) d.note = `no version in output of '${binary} ${spec.versionArgs.join(' ')}' (exit ${run.exitCode})`;
    return { detected: d, unusable };
  }
  return { unusable };
}

interface ProbeRun { output: string; exitCode: number | null; signal: string | null; timedOut: boolean; spawnError?: string }

const MAX_PROBE_OUTPUT = 64 * 1024;

/** Runs `<path> <args>` in its own process group; the group is SIGKILLed at the deadline. */
export function runVersionProbe(path: string, args: readonly string[], env: Record<string, string>, timeoutMs: number): Promise<ProbeRun> {
  return new Promise((resolve) => {
    let output = '';
    let timedOut = false;
    let settled = false;
    const child = spawn(path, args, { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const collect = (chunk: Buffer) => {
      if (output.length < MAX_PROBE_OUTPUT) output += chunk.toString('utf8', 0, Math.min(chunk.length, MAX_PROBE_OUTPUT - output.length));
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    const killGroup = () => {
      try {
        if (child.pid) process.kill(-child.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup();
    }, timeoutMs);
    const finish = (r: ProbeRun) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      child.stdout.destroy();
      child.stderr.destroy();
      killGroup(); // leftovers of the group (a forked helper) must not outlive the probe
      resolve(r);
    };
    child.on('error', (e: NodeJS.ErrnoException) => finish({ output, exitCode: null, signal: null, timedOut: false, spawnError: describeSpawnError(e) }));
    child.on('exit', (code, signal) => {
      // Decide on exit, then give the pipes a moment: a grandchild holding them must not hang us.
      const done = () => finish({ output, exitCode: code, signal: timedOut ? null : signal, timedOut });
      if (child.stdout.readableEnded && child.stderr.readableEnded) done();
      else {
        const t = setTimeout(done, 100);
        child.on('close', () => {
          clearTimeout(t);
          done();
        });
      }
    });
  });
}

function describeSpawnError(e: NodeJS.ErrnoException): string {
  switch (e.code) {
    case 'ENOENT':
      return 'cannot be executed (ENOENT: its ELF interpreter or a #! interpreter is missing in this image)';
    case 'EACCES':
      return 'not executable (EACCES: no execute permission, or a noexec mount)';
    case 'ENOEXEC':
      return 'not a valid executable for this machine (ENOEXEC: wrong architecture or format)';
    default:
      return `cannot be executed (${e.code ?? e.message})`;
  }
}
