/**
 * The portable folder (dist/portable/opt/attune/agent) runs in images without glibc or libstdc++,
 * with an empty environment, as a non-root uid, from a read-only mount; the plain glibc executable
 * does not; and two builds are byte-identical.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstatSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build, REPO_ROOT, type BuildResult } from '../../build/build.ts';
import {
  AGENT, AGENT_DIR, NONROOT, addHostFile, addTextFile, createWorkspace, describeRun, installAgent, processesUnder, runInRoot,
  type RootFsKind,
} from '../helpers/rootfs.ts';

const VERSION = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const ws = createWorkspace('portable');
let built: BuildResult;

before(async () => {
  assert.equal(process.getuid?.(), 0, 'e2e root-filesystem tests need root (chroot, mknod, mount namespaces): run them as root or in a privileged CI container');
  built = await build({ log: () => {} });
});
after(() => ws.dispose());

const KINDS: readonly RootFsKind[] = ['busybox', 'musl', 'scratch', 'glibc-no-libstdcxx'];

for (const kind of KINDS) {
  test(`portable agent runs in a ${kind} root with an empty environment, as root and as uid 65532`, async () => {
    const root = ws.make(kind);
    installAgent(root.dir, built.portableAgentDir);
    for (const user of [undefined, NONROOT]) {
      const who = user ? 'uid 65532' : 'root';
      const v = await runInRoot(root.dir, [AGENT, '--version'], { user });
      assert.equal(v.code, 0, `${kind} as ${who}: ${describeRun(v)}`);
      assert.equal(v.stdout, `${VERSION}\n`);
      assert.equal(v.stderr, '');

      const d = await runInRoot(root.dir, [AGENT, '--detect-only'], { user });
      assert.equal(d.code, 0, `${kind} as ${who}: ${describeRun(d)}`);
      assert.equal(d.stderr, '');
      assert.match(d.stdout, /^=== Attune Agent Runtime Detection Report ===$/m);
      if (kind === 'scratch') {
        assert.match(d.stdout, /^No runtimes detected!$/m);
        assert.match(d.stdout, /^ATTUNE_WORKER_RUNTIMES=$/m);
      } else {
        // busybox's sh is the only interpreter in these roots; it prints no version.
        assert.match(d.stdout, /^ {2}✓ shell {6}\/bin\/sh \(unknown version\)$/m);
        assert.match(d.stdout, /^ATTUNE_WORKER_RUNTIMES=shell$/m);
      }
    }
    assert.deepEqual(processesUnder(root.dir), [], 'nothing may keep running in the root');
  });
}

test('the plain glibc executable fails where the portable one works (no loader; no libstdc++)', async () => {
  const cases: { kind: RootFsKind; error: RegExp }[] = [
    { kind: 'busybox', error: /No such file or directory/ }, // no /lib64/ld-linux-x86-64.so.2
    { kind: 'glibc-no-libstdcxx', error: /libstdc\+\+\.so\.6: cannot open shared object file/ },
  ];
  for (const { kind, error } of cases) {
    const root = ws.make(kind);
    addHostFile(root.dir, built.executable, '/usr/local/bin/attune-agent-glibc');
    installAgent(root.dir, built.portableAgentDir);
    const plain = await runInRoot(root.dir, ['/usr/local/bin/attune-agent-glibc', '--version']);
    assert.equal(plain.code, 127, `${kind}: ${describeRun(plain)}`);
    assert.match(plain.stderr, error);
    const portable = await runInRoot(root.dir, [AGENT, '--version']);
    assert.equal(portable.code, 0, `${kind}: ${describeRun(portable)}`);
  }
});

test('portable agent runs from a read-only bind mount, without /proc, ignoring a hostile LD_LIBRARY_PATH', async () => {
  const root = ws.make('busybox');
  // Libraries that would crash the agent if the loader picked them (DT_RPATH is searched first).
  addTextFile(root.dir, '/hostile/libc.so.6', 'not an ELF file\n');
  addTextFile(root.dir, '/hostile/libstdc++.so.6', 'not an ELF file\n');
  const r = await runInRoot(root.dir, [AGENT, '--version'], {
    agentBind: built.portableAgentDir,
    user: NONROOT,
    env: { LD_LIBRARY_PATH: '/hostile', PATH: '/usr/bin:/bin' },
  });
  assert.equal(r.code, 0, describeRun(r));
  assert.equal(r.stdout, `${VERSION}\n`);
});

test('portable folder layout: ELF interpreter and RPATH, bundled libraries, tini, licences, modes, size', () => {
  const dir = built.portableAgentDir;
  const exe = join(dir, 'attune-agent');
  const patchelf = (arg: string) => spawnSync('patchelf', [arg, exe], { encoding: 'utf8' }).stdout.trim();
  assert.equal(patchelf('--print-interpreter'), `${AGENT_DIR}/lib/ld-linux-x86-64.so.2`);
  assert.equal(patchelf('--print-rpath'), `${AGENT_DIR}/lib:$ORIGIN/lib`);
  const readelf = spawnSync('readelf', ['-d', exe], { encoding: 'utf8' }).stdout;
  assert.match(readelf, /\(RPATH\)/, 'DT_RPATH, not DT_RUNPATH (LD_LIBRARY_PATH must not override it)');

  const expected: Record<string, number> = {
    'attune-agent': 0o555,
    'tini-static': 0o555,
    'lib/ld-linux-x86-64.so.2': 0o555,
    'lib/libc.so.6': 0o444,
    'lib/libm.so.6': 0o444,
    'lib/libstdc++.so.6': 0o444,
    'lib/libgcc_s.so.1': 0o444,
    'lib/libdl.so.2': 0o444,
    'lib/libpthread.so.0': 0o444,
    'LICENSES/README': 0o444,
    'LICENSES/libc6.copyright': 0o444,
    'LICENSES/libstdc++6.copyright': 0o444,
    'LICENSES/libgcc-s1.copyright': 0o444,
    'LICENSES/tini.copyright': 0o444,
    'LICENSES/node.LICENSE': 0o444,
    'LICENSES/npm-packages.txt': 0o444,
  };
  const prefix = `portable${AGENT_DIR}/`;
  const files = built.files.filter((f) => f.path.startsWith(prefix)).map((f) => f.path.slice(prefix.length));
  for (const [rel, mode] of Object.entries(expected)) {
    assert.ok(files.includes(rel), `${rel} is missing from the portable folder`);
    const st = lstatSync(join(dir, rel));
    assert.equal(st.mode & 0o7777, mode, `${rel} mode ${(st.mode & 0o7777).toString(8)}`);
  }
  for (const rel of files) {
    assert.equal(lstatSync(join(dir, rel)).mtimeMs, lstatSync(exe).mtimeMs, `${rel}: every file carries the same fixed mtime`);
  }
  assert.match(readFileSync(join(dir, 'LICENSES', 'npm-packages.txt'), 'utf8'), /^ {2}commander@/m);
  const tini = spawnSync(join(dir, 'tini-static'), ['--version'], { encoding: 'utf8' });
  assert.match(tini.stdout, /tini version \d+\.\d+/);
  const bytes = built.files.filter((f) => f.path.startsWith(prefix)).reduce((s, f) => s + f.size, 0);
  assert.ok(bytes <= 120 * 1024 * 1024, `portable folder is ${(bytes / 1048576).toFixed(1)} MB, budget 120 MB`);
});

function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

test('two builds into different directories are byte-identical', { timeout: 180_000 }, async () => {
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
    assert.ok(paths(first).includes('attune-agent') && paths(first).some((p) => p.endsWith('/attune-agent')));
  } finally {
    rmSync(other, { recursive: true, force: true });
  }
});
