/** `--detect-only` output: Attune's text report (docs/attune-compat.md §2.5) and the documented JSON shape. Pure. */
import type { DetectionResult } from './detect.ts';
import { RUNTIMES } from '../runtimes.ts';

export function formatTextReport(r: DetectionResult, envRuntimes: string | undefined): string {
  const lines: string[] = [];
  if (envRuntimes !== undefined && envRuntimes.trim() !== '') {
    lines.push(`ATTUNE_WORKER_RUNTIMES is set to: ${envRuntimes}`);
    lines.push('Auto-detection found the runtimes below; the worker uses only those matching the variable.');
  }
  lines.push('=== Attune Agent Runtime Detection Report ===', '');
  if (r.detected.length === 0) {
    lines.push('No runtimes detected!', '', 'Install at least one of these interpreters in the image (or put it on PATH):');
    for (const b of RUNTIMES.flatMap((p) => p.binaries)) lines.push(`  - ${b}`);
  } else {
    lines.push(`Detected ${r.detected.length} runtime(s):`, '');
    for (const d of r.detected) lines.push(`  ✓ ${d.name.padEnd(10)} ${d.path} (${d.version ?? 'unknown version'})`);
  }
  const notes = [
    ...r.detected.filter((d) => d.note).map((d) => `  ! ${d.name.padEnd(10)} ${d.path}: ${d.note}`),
    ...r.unusable.map((u) => `  ✗ ${u.name.padEnd(10)} ${u.path}: not usable: ${u.reason}`),
  ];
  if (notes.length > 0) lines.push('', 'Notes:', ...notes);
  if (r.filter.length > 0 && r.selected.length === 0) {
    lines.push('', `Warning: none of the detected runtimes matches ATTUNE_WORKER_RUNTIMES=${r.filter.join(',')}.`);
  }
  lines.push('', `ATTUNE_WORKER_RUNTIMES=${r.detected.map((d) => d.name).join(',')}`, '');
  return lines.join('\n');
}

/** What the agent puts in ATTUNE_WORKER_RUNTIMES: the filter if set, else the detected names. */
export function workerRuntimesValue(r: DetectionResult): string {
  return r.filter.length > 0 ? r.filter.join(',') : r.detected.map((d) => d.name).join(',');
}

export interface JsonReport {
  runtimes: { name: string; path: string; version: string | null; binary: string; note?: string }[];
  unusable: { name: string; path: string; binary: string; reason: string }[];
  filter: string[] | null;
  attune_worker_runtimes: string;
}

export function jsonReport(r: DetectionResult): JsonReport {
  return {
    runtimes: r.selected.map((d) => ({ name: d.name, path: d.path, version: d.version, binary: d.binary, ...(d.note ? { note: d.note } : {}) })),
    unusable: r.unusable.map((u) => ({ ...u })),
    filter: r.filter.length > 0 ? [...r.filter] : null,
    attune_worker_runtimes: r.filter.length > 0 ? r.selected.map((d) => d.name).join(',') : workerRuntimesValue(r),
  };
}
