/**
 * Pick the runtime_version row for an action (Attune's executor: resolve_runtime_version), pure.
 *
 * 1. Candidates are narrowed to the versions THIS worker has: the versions it detected for the
 *    runtime (what it advertises in `capabilities.runtime_versions`). A catalog row matches a
 *    detected version when it names it or a prefix of it (`3.11` ~ `3.11.7`, `20` ~ `20.11.0`;
 *    Attune reads a bare row version as a tilde range, so its `20` misses `20.11.0`: fixed here).
 *    Rows marked `available = false` are skipped, as Attune does.
 * 2. The action's `runtime_version_constraint` keeps the candidates that satisfy it; the highest wins.
 * 3. No constraint: the candidate marked `is_default`, else the highest candidate.
 *
 * No candidate and no constraint → no version (the runtime's own execution_config runs, with the
 * detected interpreter). A constraint that no candidate satisfies → an error naming the action,
 * the constraint, the catalog's versions and the detected ones (Attune only warns and runs the
 * base interpreter, which may be exactly the version the constraint excludes).
 */
import type { RuntimeRow, RuntimeVersionRow } from '../model.ts';
import { normalizeRuntimeName } from '../runtimes.ts';

export interface DetectedVersion { name: string; path: string; version?: string | null }

export type VersionChoice =
  | { ok: true; version: RuntimeVersionRow | null }
  | { ok: false; error: string };

/** The detected interpreters that belong to this runtime (by its normalised name and aliases). */
export function detectedForRuntime(runtime: Pick<RuntimeRow, 'name' | 'aliases'>, detected: readonly DetectedVersion[]): DetectedVersion[] {
  const keys = new Set([runtime.name, ...(runtime.aliases ?? [])].map(normalizeRuntimeName));
  return detected.filter((d) => keys.has(normalizeRuntimeName(d.name)));
}

/** A catalog row version names the detected version or a prefix of it, component by component. */
export function rowMatchesDetected(rowVersion: string, detectedVersion: string): boolean {
  const row = parseVersion(rowVersion);
  const have = parseVersion(detectedVersion);
  return row.length > 0 && row.length <= have.length && row.every((n, i) => have[i] === n);
}

export function chooseRuntimeVersion(
  versions: readonly RuntimeVersionRow[],
  constraint: string | null,
  context: { actionRef: string; runtime: Pick<RuntimeRow, 'ref' | 'name' | 'aliases'>; detected: readonly DetectedVersion[] },
): VersionChoice {
  if (versions.length === 0) return { ok: true, version: null };
  const mine = detectedForRuntime(context.runtime, context.detected);
  const have = mine.map((d) => d.version).filter((v): v is string => !!v);
  const candidates = versions.filter((v) => v.available !== false && have.some((h) => rowMatchesDetected(v.version, h)));
  const byVersionDesc = (a: RuntimeVersionRow, b: RuntimeVersionRow) => compareVersions(b.version, a.version);
  const c = (constraint ?? '').trim();
  if (c === '') {
    const chosen = candidates.find((v) => v.is_default) ?? [...candidates].sort(byVersionDesc)[0] ?? null;
    return { ok: true, version: chosen };
  }
  const matching = candidates.filter((v) => satisfies(v.version, c)).sort(byVersionDesc);
  if (matching.length > 0) return { ok: true, version: matching[0] };
  const catalog = [...versions].sort(byVersionDesc)
    .map((v) => `${v.version}${v.is_default ? ' (default)' : ''}${v.available === false ? ' (unavailable)' : ''}`).join(', ');
  const kind = normalizeRuntimeName(context.runtime.name);
  const here = mine.length > 0
    ? mine.map((d) => `${kind} ${d.version ?? '(unknown version)'} at ${d.path}`).join(', ')
    : `no ${kind} interpreter`;
  return {
    ok: false,
    error: `${kind} action ${context.actionRef}: no version of runtime ${context.runtime.ref} satisfies the constraint '${c}' on this worker: ` +
      `the catalog has ${catalog}; this image has ${here}. Run the action on a worker whose image has a matching ${kind}, or change the action's runtime_version_constraint.`,
  };
}

export function parseVersion(text: string): number[] {
  const m = /^\s*v?(\d+(?:\.\d+)*)/.exec(text);
  return m ? m[1].split('.').map(Number) : [];
}

export function compareVersions(a: string, b: string): number {
  const x = parseVersion(a);
  const y = parseVersion(b);
  for (let i = 0; i < Math.max(x.length, y.length, 3); i++) {
    const d = (x[i] ?? 0) - (y[i] ?? 0);
    if (d !== 0) return d;
  }
  return a.localeCompare(b);
}

export function satisfies(version: string, constraint: string): boolean {
  // `>= 3.10` → `>=3.10`, then every clause must hold.
  const clauses = constraint.replace(/(>=|<=|!=|==|>|<|=|\^|~)\s+/g, '$1').split(/[,\s]+/).filter(Boolean);
  return clauses.every((cl) => clauseHolds(version, cl));
}

function clauseHolds(version: string, clause: string): boolean {
  if (clause === '*' || clause === 'x') return true;
  const m = /^(>=|<=|>|<|==|=|!=|\^|~)?\s*v?(\d+(?:\.\d+)*)(?:\.[x*])?$/.exec(clause);
  if (!m) return false;
  const op = m[1] ?? '';
  const want = m[2];
  const cmp = compareVersions(version, want);
  const v = parseVersion(version);
  const w = parseVersion(want);
  const prefix = () => w.every((n, i) => v[i] === n);
  switch (op) {
    case '>=': return cmp >= 0;
    case '<=': return cmp <= 0;
    case '>': return cmp > 0;
    case '<': return cmp < 0;
    case '!=': return !prefix();
    case '^': return cmp >= 0 && v[0] === w[0] && (w[0] !== 0 || v[1] === w[1]);
    case '~': return cmp >= 0 && v[0] === w[0] && (w.length < 2 || v[1] === w[1]);
    default: return prefix(); // '', '=', '==': 3.11 matches 3.11.x
  }
}
