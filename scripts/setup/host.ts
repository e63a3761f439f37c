/**
 * What the set-up steps share: the error they stop with, running commands, probing ports, waiting.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import net from 'node:net';
import which from 'which';

/**
 * A stop the user can act on: `message` says what is wrong, `commands` what to run about it. The
 * entry point prints both and exits 1, never a stack trace.
 */
export class SetupError extends Error {
  readonly commands: string[];
  constructor(message: string, commands: string[] = []) {
    super(message);
    this.commands = commands;
  }
}

/** One thing the set-up looks after: ready, or what is wrong, the commands that fix it, and the fix. */
export type Check = { ready: true } | { ready: false; problem: string; commands: string[]; fix: () => Promise<string> };

export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

/** Absolute path of `cmd` on PATH (sbin included: root's tools live there), or null. */
export function onPath(cmd: string): string | null {
  const path = [process.env.PATH ?? '', '/usr/local/sbin', '/usr/sbin', '/sbin'].join(':');
  return which.sync(cmd, { nothrow: true, path });
}

/** systemd runs this machine (a VM): services are started through it, not behind its back. */
export function systemdRunning(): boolean {
  return existsSync('/run/systemd/system');
}

export interface Ran { code: number; stdout: string; stderr: string }

/** Run a command and collect its output; `inherit` streams it instead (apt-get's progress). */
export function run(cmd: string, args: readonly string[], opts: { inherit?: boolean; env?: NodeJS.ProcessEnv } = {}): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(onPath(cmd) ?? cmd, args, {
      stdio: opts.inherit ? ['ignore', 'inherit', 'inherit'] : ['ignore', 'pipe', 'pipe'],
      env: opts.env ?? process.env,
    });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    child.on('error', (e) => reject(new SetupError(`cannot run ${cmd}: ${e.message}`)));
    child.on('close', (code, signal) => resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr }));
  });
}

/** Run a command that must succeed; the error names the command and shows its output. */
export async function mustRun(cmd: string, args: readonly string[], opts: { inherit?: boolean; env?: NodeJS.ProcessEnv } = {}): Promise<Ran> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) {
    const out = `${r.stdout}${r.stderr}`.trim();
    throw new SetupError(`'${[cmd, ...args].join(' ')}' failed with exit ${r.code}${out ? `:\n${out}` : ' (its output is above)'}`);
  }
  return r;
}

/** True when something accepts TCP connections on host:port. */
export function portOpen(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const done = (open: boolean): void => {
      s.destroy();
      resolve(open);
    };
    s.setTimeout(timeoutMs, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/** Poll `check` until it returns a value other than undefined; undefined after `timeoutMs`. */
export async function pollFor<T>(check: () => Promise<T | undefined>, timeoutMs: number, intervalMs = 250): Promise<T | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined || Date.now() >= deadline) return v;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

const LOCAL_HOSTS = new Set(['127.0.0.1', 'localhost', '::1', '[::1]']);

/** Set-up manages only servers on this machine; a URL elsewhere is the user's to run. */
export function isLocalHost(hostname: string): boolean {
  return LOCAL_HOSTS.has(hostname.toLowerCase());
}

/** host:port of a URL, with the scheme's default port. */
export function endpoint(url: string, defaultPort: number): { host: string; port: number } {
  const u = new URL(url);
  return { host: u.hostname.replace(/^\[|\]$/g, ''), port: u.port ? Number(u.port) : defaultPort };
}
