/**
 * `attune-agent install` of the built glibc executable on this host (`--source` = the portable
 * folder): the happy path through the copy's own loader, and each failure with its exit code 5
 * and message: a noexec tmpfs, a read-only mount, a folder that is not a portable folder, a broken
 * copy of the executable. Plus the /proc/self/mountinfo parser the noexec pre-check relies on.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, chmodSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build, type BuildResult } from '../../build/build.ts';
import { mountOf, parseMountinfoLine } from '../../src/install.ts';

let built: BuildResult;
let work: string;

before(async () => {
  assert.equal(process.getuid?.(), 0, 'install e2e tests need root (tmpfs mounts in a mount namespace)');
  built = await build({ log: () => {} });
  work = mkdtempSync(join(tmpdir(), 'attune-install-'));
});
after(() => rmSync(work, { recursive: true, force: true }));

interface Run { code: number | null; stdout: string; stderr: string }

/** Runs the built executable, optionally after shell `setup` lines in a private mount namespace. */
function agent(args: readonly string[], setup: string[] = []): Promise<Run> {
  const [cmd, argv] = setup.length === 0
    ? [built.executable, [...args]]
    : ['/usr/bin/unshare', ['--mount', '--propagation', 'private', '/bin/sh', '-ec', [...setup, 'exec "$@"'].join('\n'), 'sh', built.executable, ...args]];
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, argv, { env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
const show = (r: Run): string => `exit ${r.code}\n${r.stdout}${r.stderr}`;

test('install --source copies the portable folder (0555/0444, dirs 0555) and runs the copy through its own loader', async () => {
  const target = join(work, 'ok', 'nested'); // created with its parents
  const r = await agent(['install', '--source', built.portableAgentDir, target]);
  assert.equal(r.code, 0, show(r));
  assert.match(r.stdout, /installed attune-agent \d+\.\d+\.\d+ into .*\/ok\/nested \(\d+ files, 1\d\d\.\d MB\); the copy runs there\./);
  assert.match(r.stdout, /mount this volume at \/opt\/attune\/agent in the worker container/);
  assert.equal(statSync(join(target, 'attune-agent')).mode & 0o7777, 0o555);
  assert.equal(statSync(join(target, 'lib', 'libc.so.6')).mode & 0o7777, 0o444);
  assert.equal(statSync(join(target, 'lib')).mode & 0o7777, 0o555);
  assert.deepEqual(readdirSync(target).sort(), readdirSync(built.portableAgentDir).sort());
});

test('install into a noexec tmpfs fails with exit 5 and a message naming the noexec mount', async () => {
  const mnt = join(work, 'noexec');
  mkdirSync(mnt);
  const r = await agent(['install', '--source', built.portableAgentDir, join(mnt, 'agent')], [`mount -t tmpfs -o noexec,size=256m tmpfs '${mnt}'`]);
  assert.equal(r.code, 5, show(r));
  assert.equal(r.stderr, `attune-agent install: error: ${mnt}/agent is on a noexec mount (${mnt}): programs cannot run from it, so the worker could not start the agent. ` +
    'Use a volume mounted without noexec (in Kubernetes an emptyDir is exec-able unless a policy adds noexec; with docker/compose do not set the noexec option on the agent_bin volume or tmpfs).\n');
  // The same tmpfs without noexec works: the mount option is the whole difference.
  const ok = await agent(['install', '--source', built.portableAgentDir, join(mnt, 'agent')], [`mount -t tmpfs -o size=256m tmpfs '${mnt}'`]);
  assert.equal(ok.code, 0, show(ok));
});

test('install into a read-only mount fails with exit 5 and says the volume is read-only', async () => {
  const mnt = join(work, 'ro');
  mkdirSync(mnt);
  const r = await agent(['install', '--source', built.portableAgentDir, mnt], [`mount -t tmpfs -o ro tmpfs '${mnt}'`]);
  assert.equal(r.code, 5, show(r));
  assert.match(r.stderr, /^attune-agent install: error: cannot write into .*\/ro: EROFS.*mounted read-only in this container; the init container needs it writable\)$/m);
});

test('install without a portable folder to copy from says what to run instead (exit 5)', async () => {
  // dist/attune-agent is the plain glibc executable: its folder is no portable folder.
  const self = await agent(['install', join(work, 'never')]);
  assert.equal(self.code, 5, show(self));
  assert.match(self.stderr, /is not inside a portable folder; run the one in \/opt\/attune\/agent \(the agent-init image\), or pass --source <portable folder>/);
  const other = await agent(['install', '--source', work, join(work, 'never')]);
  assert.equal(other.code, 5, show(other));
  assert.match(other.stderr, /holds no attune-agent: pass the portable folder/);
});

test('a broken source (truncated executable) fails the run check with exit 5, not at worker start', async () => {
  const src = join(work, 'broken-src');
  cpSync(built.portableAgentDir, src, { recursive: true });
  chmodSync(join(src, 'attune-agent'), 0o755);
  writeFileSync(join(src, 'attune-agent'), Buffer.from('\x7fELF\x02\x01\x01\x00' + '\0'.repeat(56)));
  const r = await agent(['install', '--source', src, join(work, 'broken-dst')]);
  assert.equal(r.code, 5, show(r));
  assert.match(r.stderr, /^attune-agent install: error: /m);
  assert.match(r.stderr, /attune-agent is not a valid executable \(ELF header names no CPU\): the copy is broken$/m);
});

test('mountinfo: the deepest (and last) mount holding a path, escaped mount points, options', () => {
  const info = [
    '22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw',
    '30 22 0:25 / /mnt/agent\\040bin rw,nosuid,nodev,noexec,relatime - tmpfs tmpfs rw',
    '31 22 0:26 / /mnt/agent rw,relatime - tmpfs tmpfs rw',
    '32 31 0:27 / /mnt/agent rw,noexec - tmpfs tmpfs rw', // mounted over 31
    'garbage',
  ].join('\n');
  assert.deepEqual(parseMountinfoLine('36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue'), { mountPoint: '/mnt2', options: ['rw', 'noatime'], fsType: 'ext3' });
  assert.equal(parseMountinfoLine('garbage'), undefined);
  assert.equal(mountOf('/mnt/agent bin/x', info)?.mountPoint, '/mnt/agent bin');
  assert.ok(mountOf('/mnt/agent bin/x', info)?.options.includes('noexec'));
  assert.deepEqual(mountOf('/mnt/agent/lib', info)?.options, ['rw', 'noexec']);
  assert.equal(mountOf('/mnt/agentx', info)?.mountPoint, '/');
});
