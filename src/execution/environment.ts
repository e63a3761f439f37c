/**
 * The child-process baseline (docs/attune-compat.md §5.6 step 1): actions and interpreter probes start from an
 * EMPTY environment plus these exact names copied from the agent's own environment, plus the
 * configured `worker.passthrough_env`. The agent's database/broker URLs are never among them.
 */
export const BASELINE_ENV_NAMES: readonly string[] = [
  'PATH', 'HOME', 'LANG', 'TZ', 'TMPDIR',
  'LC_ALL', 'LC_CTYPE', 'LC_NUMERIC', 'LC_TIME', 'LC_COLLATE', 'LC_MONETARY', 'LC_MESSAGES',
  'LC_PAPER', 'LC_NAME', 'LC_ADDRESS', 'LC_TELEPHONE', 'LC_MEASUREMENT', 'LC_IDENTIFICATION',
];

/** Used when the agent itself has no PATH (e.g. started with `env -i` or from a scratch image). */
export const FALLBACK_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export function baselineEnvironment(
  agentEnv: Record<string, string | undefined>,
  passthrough: readonly string[],
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of [...BASELINE_ENV_NAMES, ...passthrough]) {
    const v = agentEnv[name];
    if (v !== undefined) out[name] = v;
  }
  if (out.PATH === undefined || out.PATH === '') out.PATH = FALLBACK_PATH;
  return out;
}
