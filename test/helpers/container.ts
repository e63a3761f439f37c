/**
 * A tiny container runtime for tests, with mount namespaces and chroot (what a kubelet or Docker
 * does, minus the image pull): a private mount namespace per run, bind mounts (read-only or not)
 * and fresh tmpfs mounts, optionally /proc and a read-only root, then `env -i` + chroot, optionally
 * as another uid. Mounts vanish with the run. Needs root.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';

export interface Mount {
  /** Mount point inside the root (must exist there). */
  path: string;
  /** Host path to bind; without it, a fresh tmpfs. */
  host?: string;
  ro?: boolean;
  noexec?: boolean;
}

export interface ContainerOptions {
  user?: { uid: number; gid: number };
  env?: Record<string, string>;
  mounts?: Mount[];
  /** Remount the root itself read-only (like readOnlyRootFilesystem / read_only: true). */
  readOnlyRoot?: boolean;
  /** Mount /proc inside the root. */
  proc?: boolean;
}

function q(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** argv for /usr/bin/unshare: a private mount namespace, the mounts, a read-only root, then env -i + chroot. */
export function containerArgs(root: string, argv: readonly string[], o: ContainerOptions = {}): string[] {
  const steps = [`mount --bind ${q(root)} ${q(root)}`];
  for (const m of o.mounts ?? []) {
    const at = q(join(root, m.path));
    const flags = [m.ro ? 'ro' : 'rw', ...(m.noexec ? ['noexec'] : ['exec']), 'nosuid', 'nodev'].join(',');
    if (m.host !== undefined) steps.push(`mount --bind ${q(m.host)} ${at}`, `mount -o remount,bind,${flags} ${at}`);
    else steps.push(`mount -t tmpfs -o mode=1777,size=256m,${flags} tmpfs ${at}`);
  }
  if (o.proc) steps.push(`mount -t proc proc ${q(join(root, '/proc'))}`);
  if (o.readOnlyRoot) steps.push(`mount -o remount,bind,ro ${q(root)}`);
  steps.push('exec /usr/bin/env -i "$@"');
  const env = Object.entries(o.env ?? {}).map(([k, v]) => `${k}=${v}`);
  const user = o.user ? [`--userspec=${o.user.uid}:${o.user.gid}`] : [];
  return ['--mount', '--propagation', 'private', '/bin/sh', '-ec', steps.join('\n'), 'sh', ...env, '/usr/sbin/chroot', ...user, root, ...argv];
}

export interface Run { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string; ms: number }

export function runContainer(root: string, argv: readonly string[], o: ContainerOptions = {}, timeoutMs = 60_000): Promise<Run> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn('/usr/bin/unshare', containerArgs(root, argv, o), { env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ms: performance.now() - started });
    });
  });
}

export const show = (r: Run): string => `exit ${r.code ?? r.signal} after ${r.ms.toFixed(0)} ms\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`;
