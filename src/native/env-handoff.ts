/**
 * The environment of the tini re-exec (pid1.ts, runs not started by the one file's launcher).
 * tini stays PID 1 for the agent's whole life and is dumpable: whatever environment it is given
 * stays readable in /proc/1/environ by every action of the same uid. So tini gets none of it:
 * before the execve the agent writes its environment into a pipe whose read end survives the exec
 * (the write end is close-on-exec, so the reader sees EOF), and tini's environment holds only
 * ATTUNE_AGENT_INIT and ATTUNE_AGENT_ENV_FD. The re-executed agent reads the pipe first thing
 * (takeEnvironment, from main.ts) and closes it; tini's copy of the read end is then an empty pipe.
 */
import { closeSync, readFileSync, writeSync } from 'node:fs';
import { nativeAddon } from './addon.ts';

export const ENV_FD_ENV = 'ATTUNE_AGENT_ENV_FD';
/** Set instead when the pipe could not be made (no addon): tini then holds the environment, and the agent says so. */
export const ENV_LEAK_ENV = 'ATTUNE_AGENT_ENV_IN_INIT';
/** A pipe holds 64 KiB before a write blocks; nobody reads it before the exec. */
const PIPE_CAPACITY = 65536;

/** A pipe holding `env`, its read end inheritable; null when the addon or the room is missing. */
export function handEnvironmentOver(env: Readonly<Record<string, string>>): { fd: number } | { reason: string } {
  const addon = nativeAddon();
  if (!addon?.inheritable) return { reason: 'the native addon (lib/attune-pipes.node) is not available' };
  const data = Buffer.from(Object.entries(env).map(([k, v]) => `${k}=${v}\0`).join(''), 'utf8');
  if (data.length >= PIPE_CAPACITY) return { reason: `the environment is ${data.length} bytes, more than a pipe holds` };
  const [r, w] = addon.pipe();
  try {
    writeSync(w, data);
    addon.inheritable(r);
  } catch (e) {
    closeSync(r);
    return { reason: (e as Error).message };
  } finally {
    closeSync(w);
  }
  return { fd: r };
}

/** In the re-executed agent: the environment from the pipe replaces the (marker-only) one; a warning when tini holds it. */
export function takeEnvironment(env: NodeJS.ProcessEnv): string | null {
  const leak = env[ENV_LEAK_ENV];
  if (leak !== undefined) {
    delete env[ENV_LEAK_ENV];
    return `tini (PID 1) holds the agent's environment, credentials included, in /proc/1/environ, readable by actions of this uid (${leak}): ` +
      'ship lib/attune-pipes.node beside the executable, use the one file dist/attune-agent, or put the credentials in the configuration file';
  }
  const fdText = env[ENV_FD_ENV];
  if (fdText === undefined) return null;
  delete env[ENV_FD_ENV];
  const fd = Number(fdText);
  if (!Number.isInteger(fd) || fd < 3) return null;
  let text: string;
  try {
    text = readFileSync(fd, 'utf8');
  } finally {
    try {
      closeSync(fd);
    } catch {
      /* already closed */
    }
  }
  for (const entry of text.split('\0')) {
    const eq = entry.indexOf('=');
    if (eq > 0 && env[entry.slice(0, eq)] === undefined) env[entry.slice(0, eq)] = entry.slice(eq + 1);
  }
  return null;
}
