/**
 * The one file (dist/attune-agent), copied ALONE into root filesystems built here (busybox-only,
 * musl, scratch-like, glibc without libstdc++, Debian-like, an older Debian's glibc 2.31): it runs
 * at /usr/local/bin/attune-agent and at a path with a space, as root and as uid 65532, with and
 * without /proc (memfds vs the per-uid cache directory), from a read-only mount, with a read-only
 * root with and without a writable /tmp; and a worker registers, runs an action and stops on
 * SIGTERM in a busybox root and in a read-only one. Its checks: a damaged or truncated copy, a
 * tampered or hijacked cache directory, concurrent first starts. Two builds are byte-identical.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import {
  chmodSync, chownSync, closeSync, copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync,
  statSync, symlinkSync, truncateSync, writeFileSync, writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChannelModel } from 'amqplib';
import { build, REPO_ROOT, type BuildResult } from '../../build/build.ts';
import { readPieces } from '../../build/onefile.ts';
import { sharedLibraries } from '../../build/portable.ts';
import { NONROOT, addHostFile, addTextFile, createWorkspace, processesUnder, type RootFsKind } from '../helpers/rootfs.ts';
import { containerArgs, runContainer, show, type ContainerOptions, type Mount } from '../helpers/container.ts';
import { createTestDatabase } from '../helpers/pg.ts';
import { AMQP_URL, collectExecutionMessages, connectTest, publishExecutionRequested } from '../helpers/amqp.ts';
import { createExecution, executionRow, insertAction, seedCoreRuntimes, startAgent, separateIds } from '../harness/platform.ts';

const VERSION = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const BIN = '/usr/local/bin/attune-agent';
const ROOT_USER = { uid: 0, gid: 0 };
const ws = createWorkspace('onefile');
let built: BuildResult;

before(async () => {
  assert.equal(process.getuid?.(), 0, 'e2e root-filesystem tests need root (chroot, mknod, mount namespaces): run them as root or in a privileged CI container');
  built = await build({ log: () => {} });
});
after(() => ws.dispose());

function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** The one file at `path` inside the root, and nothing else of the agent anywhere in it. */
function placeAgent(root: string, path = BIN): void {
  addHostFile(root, built.executable, path);
}

/** The agent's cache directories in a root's /tmp (named attune-agent-<uid>; the JVM's probe leaves hsperfdata_*). */
function tmpEntries(root: string): string[] {
  return readdirSync(join(root, 'tmp')).filter((f) => f.startsWith('attune-agent')).sort();
}

const KINDS: readonly RootFsKind[] = ['busybox', 'musl', 'scratch', 'glibc-no-libstdcxx', 'interpreters', 'glibc-old'];

for (const kind of KINDS) {
  test(`the one file alone at ${BIN} of a ${kind} root: --version and --detect-only as root and uid 65532, from memory (/proc) and from the cache dir (no /proc)`, async () => {
    const root = ws.make(kind);
    placeAgent(root.dir);
    assert.deepEqual(readdirSync(join(root.dir, 'usr/local/bin')).filter((f) => f.startsWith('attune')), ['attune-agent'], 'nothing beside the file');
    for (const proc of [true, false]) {
      for (const user of [ROOT_USER, NONROOT]) {
        const who = `uid ${user.uid}, ${proc ? 'with' : 'without'} /proc`;
        const v = await runContainer(root.dir, [BIN, '--version'], { user, proc });
        assert.equal(v.code, 0, `${kind}, ${who}: ${show(v)}`);
        assert.equal(v.stdout, `${VERSION}\n`);
        assert.equal(v.stderr, '');
        const d = await runContainer(root.dir, [BIN, '--detect-only', '--json'], { user, proc });
        assert.equal(d.code, 0, `${kind}, ${who}: ${show(d)}`);
        assert.equal(d.stderr, '');
        const report = JSON.parse(d.stdout) as { runtimes: { name: string; path: string }[] };
        if (kind === 'scratch') assert.deepEqual(report.runtimes, []);
        else assert.ok(report.runtimes.some((r) => r.name === 'shell'), `${kind}: shell detected: ${d.stdout}`);
      }
      // With /proc the libraries went to memfds: nothing was written. Without, each uid got its cache dir.
      if (proc) assert.deepEqual(tmpEntries(root.dir), [], `${kind}: memory mode writes nothing`);
      else assert.deepEqual(tmpEntries(root.dir), ['attune-agent-0', `attune-agent-${NONROOT.uid}`]);
    }
    assert.deepEqual(processesUnder(root.dir), []);
  });
}

test('at a path with a space, from a read-only mount of its own directory, uid 65532: --version, --detect-only', async () => {
  const root = ws.make('busybox');
  const agentDir = join(ws.dir, 'agent dir');
  mkdirSync(agentDir);
  copyFileSync(built.executable, join(agentDir, 'attune-agent'));
  chmodSync(join(agentDir, 'attune-agent'), 0o555);
  mkdirSync(join(root.dir, 'opt', 'my agent'), { recursive: true });
  const exe = '/opt/my agent/attune-agent';
  for (const proc of [true, false]) {
    const o: ContainerOptions = { user: NONROOT, proc, mounts: [{ path: '/opt/my agent', host: agentDir, ro: true }] };
    const v = await runContainer(root.dir, [exe, '--version'], o);
    assert.equal(v.code, 0, show(v));
    assert.equal(v.stdout, `${VERSION}\n`);
    const d = await runContainer(root.dir, [exe, '--detect-only'], o);
    assert.equal(d.code, 0, show(d));
    assert.match(d.stdout, /^ATTUNE_WORKER_RUNTIMES=shell$/m);
    const w = await runContainer(root.dir, ['/bin/touch', '/opt/my agent/probe'], o);
    assert.match(w.stderr, /Read-only file system/, 'the directory really is read-only');
  }
});

test('read-only root: with /proc and nothing writable (memory), without /proc but a writable /tmp (cache), and neither (a clear error)', async () => {
  const root = ws.make('busybox');
  placeAgent(root.dir);
  const memory = await runContainer(root.dir, [BIN, '--detect-only'], { user: NONROOT, readOnlyRoot: true, proc: true });
  assert.equal(memory.code, 0, show(memory));
  assert.match(memory.stdout, /^ATTUNE_WORKER_RUNTIMES=shell$/m);
  const tmpfs: Mount[] = [{ path: '/tmp' }];
  const disk = await runContainer(root.dir, [BIN, '--version'], { user: NONROOT, readOnlyRoot: true, mounts: tmpfs });
  assert.equal(disk.code, 0, show(disk));
  assert.equal(disk.stdout, `${VERSION}\n`);
  const diskDetect = await runContainer(root.dir, [BIN, '--detect-only'], { user: NONROOT, readOnlyRoot: true, mounts: tmpfs });
  assert.equal(diskDetect.code, 0, show(diskDetect));
  assert.match(diskDetect.stdout, /^ATTUNE_WORKER_RUNTIMES=shell$/m);

  const none = await runContainer(root.dir, [BIN, '--version'], { user: NONROOT, readOnlyRoot: true });
  assert.equal(none.code, 127, show(none));
  assert.equal(none.stdout, '');
  assert.equal(none.stderr, 'attune-agent: cannot start: its libraries cannot be put in memory (/proc/self/fd/4: No such file or directory (is /proc mounted?)) ' +
    'nor on disk (tried /tmp (mkdir /tmp/attune-agent-65532: Read-only file system)). Mount /proc (every container runtime does), ' +
    'or give it a writable, exec-able directory: ATTUNE_AGENT_CACHE_DIR, TMPDIR or /tmp\n');

  // Forced modes say what they need.
  const forced = await runContainer(root.dir, [BIN, '--version'], { readOnlyRoot: true, env: { ATTUNE_AGENT_UNPACK: 'memory' }, mounts: tmpfs });
  assert.equal(forced.code, 127, show(forced));
  assert.match(forced.stderr, /ATTUNE_AGENT_UNPACK=memory, but .*is \/proc mounted\?/);
  const cacheDir = await runContainer(root.dir, [BIN, '--version'], { readOnlyRoot: true, proc: true, env: { ATTUNE_AGENT_UNPACK: 'disk', ATTUNE_AGENT_CACHE_DIR: '/tmp' }, mounts: tmpfs });
  assert.equal(cacheDir.code, 0, show(cacheDir));
});

test('it opens only its own libraries: LD_DEBUG shows memfds (never the root\'s glibc 2.31), and a hostile LD_LIBRARY_PATH changes nothing', async () => {
  const root = ws.make('glibc-old');
  placeAgent(root.dir);
  addHostFile(root.dir, built.seaExecutable, '/usr/local/bin/attune-agent-sea');
  addTextFile(root.dir, '/hostile/libc.so.6', 'not an ELF file\n');
  addTextFile(root.dir, '/hostile/libstdc++.so.6', 'not an ELF file\n');
  // LD_DEBUG is set inside the root (busybox env), so only the agent's own loader reports.
  const debug = (exe: string) => ['/usr/bin/env', 'LD_DEBUG=libs', exe, '--version'];
  const one = await runContainer(root.dir, debug(BIN), { proc: true });
  assert.equal(one.code, 0, show(one));
  // The loader itself carries the name of the program's PT_INTERP; the launcher loaded it from the payload.
  const opened = [...one.stderr.matchAll(/calling init: (\S+)/g)].map((m) => m[1]).filter((p) => p !== '/lib64/ld-linux-x86-64.so.2');
  assert.ok(opened.length >= 5 && opened.every((p) => /^\/proc\/self\/fd\/\d+$/.test(p)), `libraries from memfds only: ${opened.join(', ')}`);
  assert.doesNotMatch(one.stderr, /\/lib\/x86_64-linux-gnu\/|ld\.so\.cache/, 'no file of the root\'s glibc is even looked at');
  // Control: the plain SEA in the same root uses the root's own (older) glibc.
  const sea = await runContainer(root.dir, debug('/usr/local/bin/attune-agent-sea'), { proc: true });
  assert.equal(sea.code, 0, show(sea));
  assert.match(sea.stderr, /calling init: \/lib\/x86_64-linux-gnu\/libc\.so\.6/);

  const hostile = await runContainer(root.dir, [BIN, '--version'], { user: NONROOT, env: { LD_LIBRARY_PATH: '/hostile' } });
  assert.equal(hostile.code, 0, show(hostile));
  assert.equal(hostile.stdout, `${VERSION}\n`);
  const seaHostile = await runContainer(root.dir, ['/usr/local/bin/attune-agent-sea', '--version'], { env: { LD_LIBRARY_PATH: '/hostile' } });
  assert.notEqual(seaHostile.code, 0, 'control: the plain SEA does take LD_LIBRARY_PATH');
});

test('the cache directory is trusted only when this uid owns it with mode 0700 and every file checks out', async () => {
  const root = ws.make('busybox');
  placeAgent(root.dir);
  const uidDir = join(root.dir, 'tmp', `attune-agent-${NONROOT.uid}`);
  const run = () => runContainer(root.dir, [BIN, '--version'], { user: NONROOT });
  const expectRefused = async (why: RegExp) => {
    const r = await run();
    assert.equal(r.code, 127, show(r));
    assert.match(r.stderr, why);
    assert.match(r.stderr, /ATTUNE_AGENT_CACHE_DIR/);
  };
  // Another uid made it first (and would swap the libraries).
  mkdirSync(uidDir);
  chownSync(uidDir, 1000, 1000);
  chmodSync(uidDir, 0o777);
  await expectRefused(/\/tmp\/attune-agent-65532 belongs to uid 1000, not to this uid 65532/);
  // Ours, but others may enter it.
  chownSync(uidDir, NONROOT.uid, NONROOT.gid);
  chmodSync(uidDir, 0o755);
  await expectRefused(/\/tmp\/attune-agent-65532 has mode 755 \(group or others may enter it\); expected 0700/);
  // A symlink to a directory of ours elsewhere.
  rmSync(uidDir, { recursive: true });
  const elsewhere = join(root.dir, 'tmp', 'elsewhere');
  mkdirSync(elsewhere, { mode: 0o700 });
  chownSync(elsewhere, NONROOT.uid, NONROOT.gid);
  symlinkSync('/tmp/elsewhere', uidDir);
  await expectRefused(/\/tmp\/attune-agent-65532: .* \(a symlink is refused\)/);
  rmSync(uidDir);
  rmSync(elsewhere, { recursive: true });

  // A good one; then a library replaced (same owner and mode, other bytes): found and written again.
  const ok = await run();
  assert.equal(ok.code, 0, show(ok));
  const [version] = readdirSync(uidDir);
  assert.match(version, /^[0-9a-f]{32}$/);
  const libc = join(uidDir, version, 'libc.so.6');
  const good = sha256(libc);
  chmodSync(join(uidDir, version), 0o700);
  rmSync(libc);
  writeFileSync(libc, Buffer.alloc(4096, 0x41));
  chownSync(libc, NONROOT.uid, NONROOT.gid);
  chmodSync(libc, 0o500);
  const again = await run();
  assert.equal(again.code, 0, show(again));
  assert.equal(sha256(libc), good, 'the tampered library was replaced by the verified one');
  assert.deepEqual(readdirSync(uidDir), [version], 'no temporary or stale directory is left');
});

test('concurrent first starts share one cache directory safely (no /proc: disk mode)', async () => {
  const root = ws.make('busybox');
  placeAgent(root.dir);
  const runs = await Promise.all(Array.from({ length: 8 }, () => runContainer(root.dir, [BIN, '--version'], { user: NONROOT })));
  for (const r of runs) assert.equal(r.code, 0, show(r));
  const uidDir = join(root.dir, 'tmp', `attune-agent-${NONROOT.uid}`);
  assert.equal(statSync(uidDir).mode & 0o777, 0o700);
  const entries = readdirSync(uidDir);
  assert.equal(entries.length, 1, `one version directory, no leftovers: ${entries.join(', ')}`);
  const files = readdirSync(join(uidDir, entries[0])).sort();
  const pieces = readPieces(built.executable);
  assert.deepEqual(files, pieces.filter((p) => p.kind === 'library' || p.kind === 'addon').map((p) => p.name).sort());
  for (const f of files) {
    const p = pieces.find((x) => x.name === f)!;
    assert.equal(sha256(join(uidDir, entries[0], f)), p.sha256, `${f} matches the payload`);
    assert.equal(statSync(join(uidDir, entries[0], f)).uid, NONROOT.uid);
  }
});

test('a damaged copy fails to start with a message, never runs damaged code: truncated, a library changed, the program changed (ATTUNE_AGENT_VERIFY=full)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'attune-onefile-damage-'));
  try {
    const run = (exe: string, env: Record<string, string> = {}) => new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
      const c = spawn(exe, ['--version'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      c.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
      c.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      c.on('error', reject);
      c.on('close', (code) => resolve({ code, stdout, stderr }));
    });
    const copy = (name: string) => {
      const p = join(dir, name);
      copyFileSync(built.executable, p);
      chmodSync(p, 0o755);
      return p;
    };
    const poke = (file: string, offset: number) => {
      const fd = openSync(file, 'r+');
      const b = Buffer.alloc(1);
      try {
        readSync(fd, b, 0, 1, offset);
        b[0] ^= 0xff;
        writeSync(fd, b, 0, 1, offset);
      } finally {
        closeSync(fd);
      }
    };
    const pieces = readPieces(built.executable);

    const truncated = copy('truncated');
    truncateSync(truncated, statSync(truncated).size - 1000);
    const t = await run(truncated);
    assert.equal(t.code, 127);
    assert.match(t.stderr, /^attune-agent: cannot start: .*truncated has no payload \(a truncated or partial copy: \d+ bytes\); copy the whole file again$/m);

    const libc = pieces.find((p) => p.name === 'libc.so.6')!;
    const badLib = copy('bad-lib');
    poke(badLib, libc.offset + Math.floor(libc.size / 2));
    const l = await run(badLib);
    assert.equal(l.code, 127);
    assert.match(l.stderr, /libc\.so\.6 inside .*bad-lib fails its SHA-256 check: the file is damaged; copy it again/);

    // The last byte of the program is in its section header table, which nothing maps: only the full check sees it.
    const program = pieces.find((p) => p.kind === 'program')!;
    const badProgram = copy('bad-program');
    poke(badProgram, program.offset + program.size - 1);
    const quick = await run(badProgram);
    assert.equal(quick.code, 0, `the quick start maps the program in place without hashing it: ${quick.stderr}`);
    const full = await run(badProgram, { ATTUNE_AGENT_VERIFY: 'full' });
    assert.equal(full.code, 127);
    assert.match(full.stderr, /the Node program inside .*bad-program fails its SHA-256 check/);
    const intact = await run(built.executable, { ATTUNE_AGENT_VERIFY: 'full' });
    assert.equal(intact.code, 0, intact.stderr);
    assert.equal(intact.stdout, `${VERSION}\n`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('layout: launcher, page-aligned program, loader, the 6 libraries the SEA needs, addon, notices; --licenses; size budget', async () => {
  const pieces = readPieces(built.executable);
  const program = pieces.find((p) => p.kind === 'program')!;
  assert.equal(program.offset % 4096, 0);
  const { libs } = sharedLibraries(built.seaExecutable);
  assert.deepEqual(
    pieces.filter((p) => p.kind === 'library').map((p) => p.name).sort(),
    libs.map((l) => l.name).filter((n) => !n.startsWith('ld-linux')).sort(),
  );
  assert.deepEqual(pieces.filter((p) => p.kind !== 'library').map((p) => [p.kind, p.name]), [
    ['program', 'attune-agent'], ['interp', 'ld-linux-x86-64.so.2'], ['addon', 'attune-pipes.node'], ['notice', 'LICENSES.txt'],
  ]);
  const data = readFileSync(built.executable);
  for (const p of pieces) {
    if (p.kind === 'program') continue; // patched DT_NEEDED: checked by running it
    assert.equal(createHash('sha256').update(data.subarray(p.offset, p.offset + p.size)).digest('hex'), p.sha256, p.name);
  }
  assert.equal(statSync(built.executable).mode & 0o777, 0o555);
  assert.ok(data.length <= 120 * 1024 * 1024, `one file is ${(data.length / 1048576).toFixed(1)} MiB, budget 120 MB`);

  const out = await new Promise<string>((resolve, reject) => {
    const c = spawn(built.executable, ['--licenses'], { env: {}, stdio: ['ignore', 'pipe', 'inherit'] });
    let s = '';
    c.stdout.setEncoding('utf8').on('data', (d: string) => (s += d));
    c.on('error', reject);
    c.on('close', (code) => (code === 0 ? resolve(s) : reject(new Error(`--licenses exited ${code}`))));
  });
  assert.match(out, new RegExp(`^attune-agent ${VERSION.replace(/\./g, '\\.')}: licence notices`));
  for (const f of ['libc6.copyright', 'libstdc++6.copyright', 'libgcc-s1.copyright', 'musl-dev.copyright', 'node.LICENSE', 'npm-packages.txt', 'common-licenses/LGPL-2.1']) {
    assert.match(out, new RegExp(`^={78}\\n${f.replace(/[.+]/g, '\\$&')}\\n={78}$`, 'm'), `${f} in full`);
  }
  assert.match(out, /^ {2}commander@/m);
});

// ───────────────────────────── a worker in a root ─────────────────────────────

interface WorkerCase { title: string; agentPath: string; container: ContainerOptions; agentDir?: string }

async function workerRoundTrip(t: import('node:test').TestContext, kind: RootFsKind, c: WorkerCase): Promise<void> {
  const db = await createTestDatabase('e2e_onefile');
  t.after(() => db.drop());
  await separateIds(db.pool);
  const runtimeIds = await seedCoreRuntimes(db.pool);
  const mq: ChannelModel = await connectTest('e2e-onefile');
  t.after(() => mq.close());
  const collector = await collectExecutionMessages(mq);
  t.after(() => collector.close());

  // busybox sh only. It writes its answer through /proc/self/fd/1 when /proc is there: that works only
  // with real pipes, i.e. with the addon the launcher unpacked.
  const packs = join(ws.dir, `packs-${randomUUID().slice(0, 8)}`);
  mkdirSync(join(packs, 'onepack', 'actions'), { recursive: true });
  const out = c.container.proc ? '/proc/self/fd/1' : '/dev/null';
  writeFileSync(join(packs, 'onepack', 'actions', 'hello.sh'),
    `#!/bin/sh\nparams=$(cat)\nprintf '{"uid":%s,"params":%s}' "$(id -u)" "$params"\n${c.container.proc ? `printf ' ' > ${out}\n` : ''}`);
  await insertAction(db.pool, 'onepack', { ref: 'onepack.hello', entrypoint: 'hello.sh', runtime: 'shell', output_format: 'json' }, runtimeIds);

  const root = ws.make(kind);
  if (c.agentDir === undefined) placeAgent(root.dir, c.agentPath);
  for (const d of ['/opt/attune/packs', '/opt/attune/artifacts', '/opt/attune/runtime_envs']) mkdirSync(join(root.dir, d), { recursive: true });
  const name = `onefile-${process.pid}-${randomUUID().slice(0, 8)}`;
  const env = {
    ATTUNE__DATABASE__URL: db.url,
    ATTUNE__DATABASE__SCHEMA: db.schema,
    ATTUNE__MESSAGE_QUEUE__URL: AMQP_URL,
    ATTUNE__PACKS_BASE_DIR: '/opt/attune/packs',
    ATTUNE__ARTIFACTS_DIR: '/opt/attune/artifacts',
    ATTUNE__RUNTIME_ENVS_DIR: '/opt/attune/runtime_envs',
    ATTUNE__WORKER__SHUTDOWN_TIMEOUT: '5',
    ATTUNE_WORKER_NAME: name,
    ATTUNE_WORKER_TYPE: 'container',
  };
  const mounts: Mount[] = [
    ...(c.container.mounts ?? []),
    { path: '/opt/attune/packs', host: packs, ro: true },
    { path: '/opt/attune/artifacts' },
    { path: '/opt/attune/runtime_envs' },
  ];
  const agent = startAgent({}, containerArgs(root.dir, [c.agentPath], { ...c.container, env, mounts }), { executable: '/usr/bin/unshare' });
  t.after(async () => {
    await agent.stop('SIGKILL');
  });
  await agent.waitForLog(`${c.title}: the agent to consume`, (l) => l.msg === 'consuming execution dispatches', { timeoutMs: 30_000 });
  const worker = (await db.pool.query(`SELECT id, status::text AS status, capabilities FROM worker WHERE name = $1`, [name])).rows[0] as
    { id: number; status: string; capabilities: { runtimes: string[] } };
  assert.ok(worker, `worker row ${name}`);
  assert.equal(worker.status, 'active');
  assert.deepEqual([...worker.capabilities.runtimes].sort(), ['native', 'shell']);

  const id = await createExecution(db.pool, { actionRef: 'onepack.hello', workerId: worker.id, config: { n: 7 } });
  await publishExecutionRequested(mq, worker.id, { execution_id: id, action_ref: 'onepack.hello', config: { n: 7 } });
  await collector.waitFor(`${c.title}: ExecutionCompleted`, (m) => m.some((x) => x.routingKey === 'execution.completed' && x.json?.payload?.execution_id === id), { timeoutMs: 30_000 });
  const row = await executionRow(db.pool, id);
  assert.equal(row.status, 'completed', `${c.title}: ${JSON.stringify(row.result)}; stderr ${agent.stderr.join('')}`);
  assert.deepEqual((row.result ?? {}).data, { uid: c.container.user?.uid ?? 0, params: { n: 7 } });
  assert.ok(!agent.logs.some((l) => /socket pairs, not pipes/.test(String(l.msg))), `${c.title}: the pipes addon loaded from the one file`);

  const exit = await agent.stop('SIGTERM');
  assert.equal(exit.code, 0, `${c.title}: the agent stops cleanly on SIGTERM; stderr: ${agent.stderr.join('')}`);
  assert.ok(agent.logs.some((l) => l.msg === 'worker deregistered (status inactive)'));
  const { rows } = await db.pool.query(`SELECT status::text AS status FROM worker WHERE id = $1`, [worker.id]);
  assert.equal(rows[0].status, 'inactive');
  assert.deepEqual(processesUnder(root.dir), []);
}

test('worker run in a busybox root, uid 65532, no /proc (libraries from the cache dir): registers, runs an action, stops on SIGTERM', async (t) => {
  await workerRoundTrip(t, 'busybox', { title: 'busybox', agentPath: BIN, container: { user: NONROOT } });
});

test('worker run with a read-only root and nothing writable but its data volumes, the one file on a read-only mount at /opt/attune/agent: registers, runs an action (real pipes), stops on SIGTERM', async (t) => {
  const agentDir = join(ws.dir, `ro-agent-${randomUUID().slice(0, 8)}`);
  mkdirSync(agentDir);
  copyFileSync(built.executable, join(agentDir, 'attune-agent'));
  chmodSync(join(agentDir, 'attune-agent'), 0o555);
  assert.deepEqual(readdirSync(agentDir), ['attune-agent']);
  await workerRoundTrip(t, 'busybox', {
    title: 'read-only',
    agentPath: '/opt/attune/agent/attune-agent',
    agentDir,
    container: { user: NONROOT, readOnlyRoot: true, proc: true, mounts: [{ path: '/opt/attune/agent', host: agentDir, ro: true }] },
  });
});

test('two builds into different directories are byte-identical', { timeout: 240_000 }, async () => {
  const other = mkdtempSync(join(tmpdir(), 'attune-build-'));
  try {
    // Others may edit src/ meanwhile: compare only builds made from the same inputs.
    let second: BuildResult | undefined;
    let first: BuildResult = built;
    for (let attempt = 0; attempt < 3; attempt++) {
      second = await build({ outDir: other, force: true, log: () => {} });
      first = await build({ log: () => {} }); // no-op unless src/ changed since
      if (first.inputs === second.inputs) break;
    }
    assert.ok(second && first.inputs === second.inputs, 'sources kept changing during the test');
    const paths = (r: BuildResult) => r.files.map((f) => f.path);
    assert.deepEqual(paths(second), paths(first));
    for (const f of first.files) {
      assert.equal(sha256(join(other, f.path)), sha256(join(first.outDir, f.path)), `${f.path} differs between builds`);
    }
    assert.ok(paths(first).includes('attune-agent'));
    assert.ok(existsSync(join(other, 'attune-agent')) && lstatSync(join(other, 'attune-agent')).size === lstatSync(built.executable).size);
  } finally {
    rmSync(other, { recursive: true, force: true });
  }
});

test('--version, usage errors and a closed reader on the host: the answer on the right stream, the right exit code, no crash', async () => {
  const run = (args: string[], shell?: string) => new Promise<{ code: number | null; out: string; err: string }>((resolve, reject) => {
    const child = shell ? spawn('/bin/bash', ['-c', shell], { stdio: ['ignore', 'pipe', 'pipe'] }) : spawn(built.executable, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString('utf8')));
    child.stderr!.on('data', (d: Buffer) => (err += d.toString('utf8')));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, out, err }));
  });
  const version = await run(['--version']);
  assert.deepEqual(version, { code: 0, out: `${VERSION}\n`, err: '' });
  const bad = await run(['--bogus']);
  assert.equal(bad.code, 2);
  assert.equal(bad.out, '');
  assert.match(bad.err, /unknown option '--bogus'/);
  // The reader closes before the agent writes: EPIPE is not a crash (no stack trace, exit 0).
  const closed = await run([], `set -o pipefail; '${built.executable}' --version | { exec 0<&-; sleep 0.5; }; echo "status=$?"`);
  assert.equal(closed.err, '');
  assert.match(closed.out, /status=0/);
});
