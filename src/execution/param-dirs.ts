/**
 * The private directories of parameter and inline-code files: `$TMPDIR/attune-exec-{pid}-{start}-
 * {execution id}-{random}` (0700). A run removes its own; a SIGKILLed agent cannot, and the
 * parameters (secrets among them) would stay on disk. So at start the agent sweeps the leftovers:
 * directories of its uid with this prefix whose agent is gone — its pid is not running, or runs
 * with another start time (a reused pid), or is this very pid (a container restarts its agent with
 * the same pid, and this agent has not made any yet). Directories of other live agents stay.
 */
import { readFileSync } from 'node:fs';
import { lstat, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const PARAM_DIR_PREFIX = 'attune-exec-';
const NAME = /^attune-exec-(\d+)-(\d+)-\d+-[0-9a-f]+$/;
/** Agents before the pid was in the name: `attune-exec-{execution id}-{12 hex}`; swept once untouched for a day. */
const OLD_NAME = /^attune-exec-\d+-[0-9a-f]{12}$/;
const OLD_NAME_AGE_MS = 24 * 3600 * 1000;

let ownStart: string | undefined;

/** The process's start time in clock ticks after boot (/proc/{pid}/stat field 22); '0' when unknown. */
export function processStartTime(pid: number | 'self'): string {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command (which may contain spaces and parentheses): state is field 3.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[22 - 3] ?? '0';
  } catch {
    return '0';
  }
}

export function parameterDirName(executionId: number, random: string): string {
  ownStart ??= processStartTime('self');
  return `${PARAM_DIR_PREFIX}${process.pid}-${ownStart}-${executionId}-${random}`;
}

function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Whether the agent that made a directory with this name is gone. */
function abandoned(name: string, mtimeMs: number, now: number): boolean {
  const m = NAME.exec(name);
  if (!m) return OLD_NAME.test(name) && now - mtimeMs > OLD_NAME_AGE_MS;
  const pid = Number(m[1]);
  if (pid === process.pid) return true; // this agent's earlier life: it has made none yet
  if (!running(pid)) return true;
  const start = processStartTime(pid);
  return m[2] !== '0' && start !== '0' && start !== m[2];
}

/** Remove the parameter directories of agents that are gone (call before the first execution). */
export async function sweepParameterDirs(dir = tmpdir(), now = Date.now()): Promise<{ removed: string[]; errors: string[] }> {
  const removed: string[] = [];
  const errors: string[] = [];
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => n.startsWith(PARAM_DIR_PREFIX));
  } catch (e) {
    return { removed, errors: [`cannot list ${dir}: ${(e as Error).message}`] };
  }
  const me = process.geteuid?.();
  for (const name of names) {
    const path = join(dir, name);
    try {
      const st = await lstat(path);
      if (!st.isDirectory() || (me !== undefined && st.uid !== me)) continue;
      if (!abandoned(name, st.mtimeMs, now)) continue;
      await rm(path, { recursive: true, force: true });
      removed.push(path);
    } catch (e) {
      errors.push(`cannot remove ${path}: ${(e as Error).message}`);
    }
  }
  return { removed, errors };
}
