/**
 * Pick the runtime_version row for an action (contract §5.2 step 4, simplified), pure:
 * available (not `available = false`) rows only; no constraint → the default row (if any);
 * a constraint → the highest version that satisfies it. Nothing matches → null, and the runtime's
 * own execution_config is used. Constraints: `3.11` (prefix), `=3.11.4`, `>=3.10, <3.13`, `^3.10`,
 * `~3.11`, `!=3.12`, `*`; clauses separated by commas or spaces all have to hold.
 */
import type { RuntimeVersionRow } from '../model.ts';

export function chooseRuntimeVersion(
  versions: readonly RuntimeVersionRow[],
  constraint: string | null,
): RuntimeVersionRow | null {
  const usable = versions.filter((v) => v.available !== false);
  if (usable.length === 0) return null;
  const c = (constraint ?? '').trim();
  if (c === '') return usable.find((v) => v.is_default) ?? null;
  const matching = usable.filter((v) => satisfies(v.version, c));
  matching.sort((a, b) => compareVersions(b.version, a.version));
  return matching[0] ?? null;
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
