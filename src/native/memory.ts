/**
 * Process-wide memory: the idle release through the addon (releaseIdleMemory,
 * keepLargeAllocationsMapped; worker/idle-trim.ts decides when), and a garbage-collection hint
 * for the few moments the agent has just dropped a lot of memory at once: an action's captured output (up to 10 MiB per stream, docs/attune-compat.md §5.8) goes through several
 * short-lived copies (decoded text, the JSON for PostgreSQL, the driver's wire buffers). V8 only
 * collects those when its own heuristics say so: external (Buffer) memory may grow by 64 MB above
 * the last collection before it does, so one action with a full 10 MiB capture left ~70 MB of
 * garbage behind its result. A full collection right after such an execution's big buffers are
 * released costs a few milliseconds, and is only done past LARGE_OUTPUT_BYTES.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { nativeAddon } from './addon.ts';

/** Output (or result JSON) at least this big is worth a collection once it is released. */
export const LARGE_OUTPUT_BYTES = 1024 * 1024;

let gcFn: (() => void) | null | undefined;

function collector(): (() => void) | null {
  if (gcFn !== undefined) return gcFn;
  const existing = (globalThis as { gc?: () => void }).gc;
  if (typeof existing === 'function') return (gcFn = existing);
  try {
    // The documented way to reach V8's gc() without starting Node with --expose-gc: the flag only
    // affects contexts created afterwards, so a fresh context hands us the function.
    setFlagsFromString('--expose-gc');
    const fn = runInNewContext('gc') as unknown;
    gcFn = typeof fn === 'function' ? (fn as () => void) : null;
  } catch {
    gcFn = null;
  }
  return gcFn;
}

/** A full collection now (releaseIdleMemory); false when gc() is out of reach. */
export function collectNow(): boolean {
  const gc = collector();
  if (!gc) return false;
  gc();
  return true;
}

/** Collect now if `bytes` (what was just released) is large; returns whether it collected. */
export function collectAfterLargeRelease(bytes: number): boolean {
  if (bytes < LARGE_OUTPUT_BYTES) return false;
  const gc = collector();
  if (!gc) return false;
  gc();
  return true;
}

/**
 * From start-up on: blocks of 128 KiB and more are mapped on their own and unmapped when freed
 * (glibc would otherwise raise that threshold after each large output and keep such blocks in its
 * heap). False without the addon or when glibc refuses.
 */
export function keepLargeAllocationsMapped(): boolean {
  return nativeAddon()?.keepLargeAllocationsMapped?.() ?? false;
}

/** A full collection, then the addon's malloc_trim (+ file pages); the file bytes dropped (0 without the addon). */
export function releaseIdleMemory(filePages: boolean): number {
  collectNow();
  return nativeAddon()?.releaseMemory?.(filePages) ?? 0;
}
