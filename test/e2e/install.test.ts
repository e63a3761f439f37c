/**
 * `attune-agent install` of the built one file on this host: the happy path (the copy runs, fully
 * verified), re-installing over a running copy, and each failure with its exit code 5 and message:
 * a noexec tmpfs, a read-only mount, a source that is not the one file, a damaged source. Plus the
 * /proc/self/mountinfo parser the noexec pre-check relies on.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type AddressInfo } from 'node:net';
import { build, type BuildResult } from '../../build/build.ts';
import { readPieces } from '../../build/onefile.ts';
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

/** Runs `exe` (default: the built one file), optionally after shell `setup` lines in a private mount namespace. */
function agent(args: readonly string[], setup: string[] = [], exe = built.executable): Promise<Run> {
  const [cmd, argv] = setup.length === 0
    ? [exe, [...args]]
    : ['/usr/bin/unshare', ['--mount', '--propagation', 'private', '/bin/sh', '-ec', [...setup, 'exec "$@"'].join('\n'), 'sh', exe, ...args]];
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
const sha = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');

test('install copies the one file it runs from (0555), alone, and runs the copy with the full check', async () => {
  const target = join(work, 'ok', 'nested'); // created with its parents
  const r = await agent(['install', target]);
  assert.equal(r.code, 0, show(r));
  assert.match(r.stdout, /^attune-agent install: installed attune-agent \d+\.\d+\.\d+ as .*\/ok\/nested\/attune-agent \(1\d\d\.\d MB\); the copy runs there\.$/m);
  assert.match(r.stdout, /mount this volume in the worker container \(read-only is fine; Attune uses \/opt\/attune\/agent\) and run its attune-agent\./);
  assert.deepEqual(readdirSync(target), ['attune-agent']);
  assert.equal(statSync(join(target, 'attune-agent')).mode & 0o7777, 0o555);
  assert.equal(sha(join(target, 'attune-agent')), sha(built.executable));

  // The installed copy installs itself elsewhere (what an init image running a copied agent does).
  const again = await agent(['install', join(work, 'ok', 'second')], [], join(target, 'attune-agent'));
  assert.equal(again.code, 0, show(again));
  assert.equal(sha(join(work, 'ok', 'second', 'attune-agent')), sha(built.executable));
});

test('re-installing over a copy that is running replaces it by rename (no ETXTBSY), and the running one goes on', async () => {
  const target = join(work, 'busy');
  assert.equal((await agent(['install', target])).code, 0);
  // A worker waiting for a database that accepts the connection and never answers: alive, its file mapped.
  const silent = createServer(() => {});
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  const port = (silent.address() as AddressInfo).port;
  const running = spawn(join(target, 'attune-agent'), [], {
    env: { ATTUNE__DATABASE__URL: `postgresql://nobody@127.0.0.1:${port}/none`, ATTUNE__MESSAGE_QUEUE__URL: `amqp://127.0.0.1:${port}`, ATTUNE__DATABASE__CONNECT_TIMEOUT: '60' },
    stdio: 'ignore',
  });
  const closed = new Promise<NodeJS.Signals | null>((resolve) => running.on('close', (_code, signal) => resolve(signal)));
  try {
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(running.exitCode, null, 'the old copy runs');
    const r = await agent(['install', target]);
    assert.equal(r.code, 0, show(r));
    assert.equal(running.exitCode, null, 'the old copy still runs after its file was replaced');
    assert.match(readFileSync(`/proc/${running.pid}/maps`, 'utf8'), /attune-agent \(deleted\)/, 'it runs on the replaced (unlinked) file');
  } finally {
    running.kill('SIGKILL');
    silent.close();
  }
  assert.equal(await closed, 'SIGKILL');
  assert.deepEqual(readdirSync(target), ['attune-agent'], 'no temporary file is left');
});

test('install into a noexec tmpfs fails with exit 5 and a message naming the noexec mount', async () => {
  const mnt = join(work, 'noexec');
  mkdirSync(mnt);
  const r = await agent(['install', join(mnt, 'agent')], [`mount -t tmpfs -o noexec,size=256m tmpfs '${mnt}'`]);
  assert.equal(r.code, 5, show(r));
  assert.equal(r.stderr, `attune-agent install: error: ${mnt}/agent is on a noexec mount (${mnt}): programs cannot run from it, so the worker could not start the agent. ` +
    'Use a volume mounted without noexec (in Kubernetes an emptyDir is exec-able unless a policy adds noexec; with docker/compose do not set the noexec option on the agent_bin volume or tmpfs).\n');
  // The same tmpfs without noexec works: the mount option is the whole difference.
  const ok = await agent(['install', join(mnt, 'agent')], [`mount -t tmpfs -o size=256m tmpfs '${mnt}'`]);
  assert.equal(ok.code, 0, show(ok));
});

test('install into a read-only mount fails with exit 5 and says the volume is read-only', async () => {
  const mnt = join(work, 'ro');
  mkdirSync(mnt);
  const r = await agent(['install', mnt], [`mount -t tmpfs -o ro tmpfs '${mnt}'`]);
  assert.equal(r.code, 5, show(r));
  assert.match(r.stderr, /^attune-agent install: error: cannot write into .*\/ro: EROFS.*mounted read-only in this container; the init container needs it writable\)$/m);
});

test('install from something that is not the one file says what to pass instead (exit 5)', async () => {
  // The plain SEA carries no payload: it cannot be copied alone.
  const self = await agent(['install', join(work, 'never')], [], built.seaExecutable);
  assert.equal(self.code, 5, show(self));
  assert.match(self.stderr, /this executable \(.*\/sea\/attune-agent\) is not the one-file agent, so it cannot be copied alone; run the one of the agent-init image \(\/usr\/local\/bin\/attune-agent\), or pass --source <file>/);
  const other = await agent(['install', '--source', built.seaExecutable, join(work, 'never')]);
  assert.equal(other.code, 5, show(other));
  assert.match(other.stderr, /sea\/attune-agent is not the one-file agent \(it carries no payload\)/);
  const missing = await agent(['install', '--source', join(work, 'nothing-here'), join(work, 'never')]);
  assert.equal(missing.code, 5, show(missing));
  assert.match(missing.stderr, /nothing-here does not exist or is not a file/);
});

test('a damaged source (one byte of the Node program changed) fails the run check with exit 5, not at worker start', async () => {
  const src = join(work, 'damaged-src');
  copyFileSync(built.executable, src);
  chmodSync(src, 0o755);
  const program = readPieces(src).find((p) => p.kind === 'program')!;
  const fd = openSync(src, 'r+');
  writeSync(fd, Buffer.from([0x5a]), 0, 1, program.offset + program.size - 2); // section headers: only the full check sees it
  closeSync(fd);
  const r = await agent(['install', '--source', src, join(work, 'damaged-dst')]);
  assert.equal(r.code, 5, show(r));
  assert.match(r.stderr, /^attune-agent install: error: the copy does not run: `.*damaged-dst\/attune-agent --version` exited with 127:\nattune-agent: cannot start: the Node program inside .*damaged-dst\/attune-agent fails its SHA-256 check/m);
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
