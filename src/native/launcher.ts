/**
 * What the one file's launcher (build/launcher/launcher.c) did before Node started: where it put the
 * pipes addon, the path of the one file itself, and whether the libraries went to memory or to a
 * cache directory. It passes these as ATTUNE_AGENT_LAUNCHER_* variables; they are read once and
 * removed from the environment here, first thing, so nothing the agent starts inherits them and no
 * caller can pass them to an agent that was not started by the launcher.
 */
const PREFIX = 'ATTUNE_AGENT_LAUNCHER_';

export interface LauncherHandoff {
  /** attune-pipes.node: /proc/self/fd/N (a sealed memfd) or a file of the per-uid cache directory. */
  addon?: string;
  /** The one file (what `attune-agent install` copies). */
  self?: string;
  /** `memory`, or `disk:<cache directory>`. */
  unpack?: string;
}

function take(env: NodeJS.ProcessEnv): LauncherHandoff | null {
  const h: LauncherHandoff = { addon: env[`${PREFIX}ADDON`], self: env[`${PREFIX}SELF`], unpack: env[`${PREFIX}UNPACK`] };
  for (const k of Object.keys(env)) if (k.startsWith(PREFIX)) delete env[k];
  return h.self !== undefined ? h : null;
}

/** Set when this process was started by the one file's launcher; null when run otherwise (plain SEA, from source). */
export const launcher: LauncherHandoff | null = take(process.env);
