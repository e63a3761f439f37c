/**
 * Runtime version verification as Attune's worker does it on `PackRegistered`
 * (crates/worker/src/version_verify.rs `collect_runtime_versions_capability`): every live
 * `runtime_version` row of a runtime this worker runs is checked HERE (the shared
 * `runtime_version.available` flag describes some other host), and the versions that verify become
 * `capabilities.runtime_versions` (`{normalised runtime name: [versions, newest first]}`, key
 * `runtime_versions`).
 *
 * One row verifies when one of `distributions.verification.commands` (by `priority`, lowest
 * first; default 100) exits with its `exit_code` (default 0) and, when it has a `pattern`, the
 * regex matches stdout+stderr; each command is limited to 10 s. A row without commands verifies
 * when `execution_config.interpreter.binary --version` exits 0, or has no binary at all.
 */
import type { RuntimeVersionRow } from '../model.ts';
import { normalizeRuntimeName } from '../runtimes.ts';
import { compareVersionsDesc } from './capabilities.ts';
import { runVersionProbe } from '../detect/detect.ts';

export const RUNTIME_VERSIONS_CAPABILITY_KEY = 'runtime_versions';
const VERIFY_TIMEOUT_MS = 10_000;

export type VersionRowForVerify = Pick<RuntimeVersionRow, 'runtime_ref' | 'version' | 'distributions' | 'execution_config'>;

interface VerificationCommand { binary: string; args: string[]; exitCode: number; pattern: string | null; priority: number }

/** The verification commands of `distributions`, by priority (Attune's extract_verification_commands). */
export function verificationCommands(distributions: unknown): VerificationCommand[] {
  const cmds = (distributions as { verification?: { commands?: unknown } } | null)?.verification?.commands;
  if (!Array.isArray(cmds)) return [];
  const out: VerificationCommand[] = [];
  for (const c of cmds as Array<Record<string, unknown>>) {
    if (c === null || typeof c !== 'object' || typeof c.binary !== 'string') continue;
    out.push({
      binary: c.binary,
      args: Array.isArray(c.args) ? c.args.filter((a): a is string => typeof a === 'string') : [],
      exitCode: Number.isInteger(c.exit_code) ? (c.exit_code as number) : 0,
      pattern: typeof c.pattern === 'string' ? c.pattern : null,
      priority: Number.isInteger(c.priority) ? (c.priority as number) : 100,
    });
  }
  return out.sort((a, b) => a.priority - b.priority);
}

/** The runtime name a version row belongs to: the last segment of its runtime_ref, normalised. */
export function versionRuntimeName(row: Pick<RuntimeVersionRow, 'runtime_ref'>): string {
  const ref = row.runtime_ref ?? '';
  return normalizeRuntimeName(ref.split('.').pop() ?? ref);
}

/** Whether this row's interpreter is on this worker (run with the child baseline environment: its PATH). */
export async function verifyRuntimeVersion(row: VersionRowForVerify, env: Record<string, string>): Promise<boolean> {
  const commands = verificationCommands(row.distributions);
  if (commands.length === 0) {
    const binary = row.execution_config?.interpreter?.binary ?? '';
    if (binary === '') return true;
    const r = await runVersionProbe(binary, ['--version'], env, VERIFY_TIMEOUT_MS);
    return !r.spawnError && !r.timedOut && r.exitCode === 0;
  }
  for (const c of commands) {
    const r = await runVersionProbe(c.binary, c.args, env, VERIFY_TIMEOUT_MS);
    if (r.spawnError || r.timedOut || r.exitCode !== c.exitCode) continue;
    if (c.pattern === null) return true;
    try {
      if (new RegExp(c.pattern).test(r.output)) return true;
    } catch {
      /* an invalid pattern fails this command, as in Attune */
    }
  }
  return false;
}

/**
 * `{runtime: [versions]}` of the rows that verify here, for the runtimes this worker runs
 * (`runtimes`, normalised); merged with `detected` (the versions the agent detected, which it
 * advertises from the start) so a runtime without version rows stays advertised.
 */
export async function collectRuntimeVersions(
  rows: readonly VersionRowForVerify[],
  runtimes: ReadonlySet<string>,
  detected: Readonly<Record<string, readonly string[]>>,
  env: Record<string, string>,
): Promise<Record<string, string[]>> {
  const by = new Map<string, Set<string>>();
  for (const [k, vs] of Object.entries(detected)) by.set(k, new Set(vs));
  for (const row of rows) {
    const name = versionRuntimeName(row);
    if (!runtimes.has(name)) continue;
    if (!(await verifyRuntimeVersion(row, env))) continue;
    if (!by.has(name)) by.set(name, new Set());
    by.get(name)!.add(row.version);
  }
  const out: Record<string, string[]> = {};
  for (const k of [...by.keys()].sort()) out[k] = [...by.get(k)!].sort(compareVersionsDesc);
  return out;
}
