/**
 * PID 1 duties (design.md "Pitfalls: PID 1").
 *
 * Node neither reaps orphaned grandchildren nor has prctl(PR_SET_CHILD_SUBREAPER). When the agent
 * starts as PID 1 (the container entrypoint `/opt/attune/agent/attune-agent`), it replaces itself
 * (`process.execve`, no fork: the PID stays 1) with the bundled static tini:
 *
 *     tini-static -s -g -- /opt/attune/agent/attune-agent <same arguments>
 *
 * tini is then PID 1: it reaps every orphan, forwards SIGTERM/SIGINT (-g: to the agent's process
 * group; actions run in groups of their own, so they never get the container's signal directly),
 * and exits with the agent's exit code (128+n when a signal ended it). The environment marker
 * ATTUNE_AGENT_INIT=tini makes the re-executed agent skip this step, so there is never a loop.
 * tini's own environment holds nothing else: the agent's environment (its credentials) travels to
 * the re-executed agent through a pipe (env-handoff.ts), so /proc/1/environ shows none of it.
 *
 * tini is looked up as `$ATTUNE_AGENT_TINI` (a path, or `off` to disable the re-exec), then
 * `tini-static` beside the executable (the portable folder ships it). Without it (e.g. the plain
 * dist/attune-agent as PID 1) the agent runs on and logs a warning: orphans would stay zombies.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { ENV_FD_ENV, ENV_LEAK_ENV, handEnvironmentOver } from './env-handoff.ts';

export const INIT_MARKER_ENV = 'ATTUNE_AGENT_INIT';
export const TINI_PATH_ENV = 'ATTUNE_AGENT_TINI';
export const TINI_NAME = 'tini-static';

export type Pid1Plan =
  | { kind: 'none' }
  | { kind: 'exec'; file: string; args: string[]; env: Record<string, string> }
  | { kind: 'warn'; message: string };

export interface Pid1Facts {
  pid: number;
  /** The running executable (for the single executable: the agent file itself). */
  execPath: string;
  /** The agent's own arguments (without the executable). */
  argv: readonly string[];
  env: Readonly<Record<string, string | undefined>>;
  exists(path: string): boolean;
}

/** What to do at start (pure). */
export function planPid1(f: Pid1Facts): Pid1Plan {
  if (f.pid !== 1) return { kind: 'none' };
  if (f.env[INIT_MARKER_ENV]) {
    return { kind: 'warn', message: `running as PID 1 although ${INIT_MARKER_ENV}=${f.env[INIT_MARKER_ENV]} says an init already runs: orphaned action processes may stay zombies` };
  }
  const override = (f.env[TINI_PATH_ENV] ?? '').trim();
  if (override.toLowerCase() === 'off') {
    return { kind: 'warn', message: `running as PID 1 with ${TINI_PATH_ENV}=off: orphaned action processes are not reaped (zombies accumulate); use docker run --init, shareProcessNamespace: true, or an init as entrypoint` };
  }
  const candidates = override !== '' ? [override] : [join(dirname(f.execPath), TINI_NAME)];
  const tini = candidates.find((p) => f.exists(p));
  if (!tini) {
    return {
      kind: 'warn',
      message: `running as PID 1 without an init: ${candidates.join(', ')} not found, so orphaned action processes are not reaped (zombies accumulate). ` +
        `Use the portable folder (/opt/attune/agent ships ${TINI_NAME}), set ${TINI_PATH_ENV}, or run with docker --init / shareProcessNamespace: true`,
    };
  }
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(f.env)) if (v !== undefined) env[k] = v;
  env[INIT_MARKER_ENV] = 'tini';
  return { kind: 'exec', file: tini, args: [tini, '-s', '-g', '--', f.execPath, ...f.argv], env };
}

/**
 * Apply the plan for this process. Returns a warning to log, or null. On success `process.execve`
 * does not return (the process image is replaced, the PID stays 1).
 */
export function ensureInit(argv: readonly string[]): string | null {
  const plan = planPid1({ pid: process.pid, execPath: process.execPath, argv, env: process.env, exists: existsSync });
  if (plan.kind === 'none') return null;
  if (plan.kind === 'warn') return plan.message;
  // tini's environment: the marker and the pipe holding the agent's (env-handoff.ts).
  let env = plan.env;
  const handoff = handEnvironmentOver(plan.env);
  if ('fd' in handoff) env = { [INIT_MARKER_ENV]: plan.env[INIT_MARKER_ENV], [ENV_FD_ENV]: String(handoff.fd) };
  else env = { ...plan.env, [ENV_LEAK_ENV]: handoff.reason }; // the re-executed agent warns (takeEnvironment)
  try {
    // process.execve is experimental in Node 24 and would print an ExperimentalWarning right before
    // the image is replaced; the agent's stderr is not the place for it.
    const emit = process.emitWarning;
    process.emitWarning = (() => undefined) as typeof process.emitWarning;
    try {
      process.execve!(plan.file, plan.args, env);
    } finally {
      process.emitWarning = emit;
    }
  } catch (e) {
    return `running as PID 1 and could not start ${plan.file} as init (${(e as Error).message}): orphaned action processes are not reaped`;
  }
  return null; // not reached
}

/**
 * SIGKILL the process group of every direct child whose group it leads (the actions: each runs in
 * its own group). Used when the agent exits at once (third signal), so no action outlives it.
 * Linux /proc only; returns how many groups were signalled.
 */
export function killChildProcessGroups(): number {
  let n = 0;
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${process.pid}/task`);
  } catch {
    return 0;
  }
  const children = new Set<number>();
  for (const t of tasks) {
    try {
      for (const c of readFileSync(`/proc/${process.pid}/task/${t}/children`, 'utf8').split(/\s+/)) if (c) children.add(Number(c));
    } catch {
      /* thread gone */
    }
  }
  for (const pid of children) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const pgid = Number(fields[2]);
      if (pgid === pid) {
        process.kill(-pid, 'SIGKILL');
        n++;
      }
    } catch {
      /* already gone */
    }
  }
  return n;
}
