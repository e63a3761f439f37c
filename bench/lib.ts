/** Measurement helpers shared by benchmark sections: timing, peak RSS, on-disk and gzip sizes. */
import { spawn, spawnSync } from 'node:child_process';
import { lstatSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createGzip } from 'node:zlib';

export interface Command { cmd: string; args: readonly string[]; env?: Record<string, string> }

/** One figure: a measured value, the floor it is compared with (measured in the same run) and a target. */
export interface Figure {
  name: string;
  value: number;
  unit: 'ms' | 'MB' | 'exec/s';
  floor?: { name: string; value: number };
  /** Bounds for value/floor (ratio), for the value itself, or for value − floor (what the measured path adds). */
  target?: { maxRatio?: number; minRatio?: number; maxValue?: number; maxAdded?: number };
  note?: string;
}

export interface BenchContext {
  /** Repetitions per timed command (medians are reported). */
  runs: number;
  log: (line: string) => void;
}

export interface BenchSection {
  id: string;
  title: string;
  run(ctx: BenchContext): Promise<Figure[]>;
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Wall time of one run, spawn to exit; throws if the command fails (a failing run is not a figure). */
export function timeOnce(c: Command): number {
  const t = performance.now();
  const r = spawnSync(c.cmd, c.args, { env: c.env ?? {}, stdio: 'ignore' });
  const ms = performance.now() - t;
  if (r.status !== 0) throw new Error(`bench: '${c.cmd} ${c.args.join(' ')}' exited with ${r.status ?? r.signal}`);
  return ms;
}

/**
 * Medians of several commands, run interleaved (a b c a b c …) after one warm-up each, so drift in
 * machine load affects all of them alike.
 */
export function interleavedMedians(cmds: readonly Command[], runs: number): number[] {
  for (const c of cmds) timeOnce(c);
  const samples = cmds.map(() => [] as number[]);
  for (let i = 0; i < runs; i++) cmds.forEach((c, j) => samples[j].push(timeOnce(c)));
  return samples.map(median);
}

function vmHwmKb(pid: number): number {
  try {
    const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0; // exited
  }
}

/**
 * Peak resident set size (MB) of the process `c` starts, polling its VmHWM (the kernel's high-water
 * mark) every millisecond until it exits. exec() keeps the pid, so wrappers that exec the real
 * program (chroot, env, unshare without --fork) are measured through. Children are not counted.
 */
export function peakRssMb(c: Command): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(c.cmd, c.args, { env: c.env ?? {}, stdio: 'ignore' });
    let peak = 0;
    const poll = setInterval(() => (peak = Math.max(peak, vmHwmKb(child.pid!))), 1);
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearInterval(poll);
      if (code !== 0) reject(new Error(`bench: '${c.cmd} ${c.args.join(' ')}' exited with ${code ?? signal}`));
      else resolve(peak / 1024);
    });
  });
}

export async function medianPeakRssMb(c: Command, runs: number): Promise<number> {
  const xs: number[] = [];
  for (let i = 0; i < runs; i++) xs.push(await peakRssMb(c));
  return median(xs);
}

/** Bytes allocated on disk for a tree (st_blocks, like du) and the sum of apparent file sizes. */
export function diskUsage(dir: string): { allocatedMb: number; apparentMb: number } {
  let blocks = 0;
  let bytes = 0;
  const walk = (p: string): void => {
    const st = lstatSync(p);
    blocks += st.blocks;
    if (st.isDirectory()) for (const e of readdirSync(p)) walk(join(p, e));
    else bytes += st.size;
  };
  walk(dir);
  return { allocatedMb: (blocks * 512) / 1048576, apparentMb: bytes / 1048576 };
}

/** Size (MB) of `tar c <paths> | gzip -6`, with a reproducible tar stream (what a layer ships). */
export function tarGzipMb(cwd: string, paths: readonly string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const tar = spawn('tar', ['--sort=name', '--owner=0', '--group=0', '--numeric-owner', '-C', cwd, '-cf', '-', ...paths], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let bytes = 0;
    const gz = createGzip({ level: 6 });
    gz.on('data', (d: Buffer) => (bytes += d.length));
    gz.on('end', () => resolve(bytes / 1048576));
    gz.on('error', reject);
    tar.on('error', reject);
    tar.on('exit', (code) => {
      if (code !== 0) reject(new Error(`bench: tar exited with ${code}`));
    });
    tar.stdout.pipe(gz);
  });
}
