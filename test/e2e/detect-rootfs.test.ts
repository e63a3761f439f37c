/**
 * `--detect-only` of the built one file (dist/attune-agent) against root filesystems with real host
 * interpreters, none at all, and fake ones that hang or print garbage. No which(1) in any of them.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { build, type BuildResult } from '../../build/build.ts';
import {
  AGENT, NONROOT, REAL_INTERPRETERS, addFakeInterpreter, addHostBinary, addHostFile, createWorkspace, describeRun,
  processesUnder, runInRoot, type RootFs, type RunOptions,
} from '../helpers/rootfs.ts';
import { waitFor } from '../helpers/wait.ts';

interface JsonReport {
  runtimes: { name: string; path: string; version: string | null; binary: string; note?: string }[];
  unusable: unknown[];
  filter: string[] | null;
  attune_worker_runtimes: string;
}

const ws = createWorkspace('detect');
let built: BuildResult;
let interpreters: RootFs;

before(async () => {
  assert.equal(process.getuid?.(), 0, 'e2e root-filesystem tests need root (chroot, mknod, mount namespaces): run them as root or in a privileged CI container');
  built = await build({ log: () => {} });
  interpreters = ws.make('interpreters');
  addHostFile(interpreters.dir, built.executable, AGENT);
});
after(() => ws.dispose());

// The JVM needs /proc (it locates libjli.so through $ORIGIN); real containers always have it.
const WITH_PROC: RunOptions = { proc: true };

async function detectJson(root: RootFs, opts: RunOptions = {}): Promise<JsonReport> {
  const r = await runInRoot(root.dir, [AGENT, '--detect-only', '--json'], { ...WITH_PROC, ...opts });
  assert.equal(r.code, 0, describeRun(r));
  assert.equal(r.stderr, '');
  return JSON.parse(r.stdout) as JsonReport;
}

/** How each interpreter states its own version, parsed here independently of src/detect. */
const OWN_VERSION: Record<keyof typeof REAL_INTERPRETERS, { runtime: string; args: string[]; pattern: RegExp; reportedPath: string }> = {
  bash: { runtime: 'shell', args: ['--version'], pattern: /GNU bash, version (\d+\.\d+\.\d+)/, reportedPath: '/bin/bash' },
  python3: { runtime: 'python', args: ['--version'], pattern: /^Python (\d+\.\d+\.\d+)$/m, reportedPath: '/usr/bin/python3' },
  node: { runtime: 'node', args: ['--version'], pattern: /^v(\d+\.\d+\.\d+)$/m, reportedPath: '/usr/local/bin/node' },
  java: { runtime: 'java', args: ['-version'], pattern: /^openjdk version "([^"]+)"/m, reportedPath: '/usr/bin/java' },
  perl: { runtime: 'perl', args: ['--version'], pattern: /\(v(\d+\.\d+\.\d+)\)/, reportedPath: '/usr/bin/perl' },
};

test('reports every real interpreter with the version that interpreter prints itself (no which(1) in the image)', async () => {
  for (const p of ['/usr/bin/which', '/bin/which', '/usr/local/bin/which', '/usr/sbin/which']) {
    assert.ok(!existsSync(interpreters.dir + p), `${p} must not exist in the root`);
  }
  for (const user of [undefined, NONROOT]) {
    const report = await detectJson(interpreters, { user });
    for (const [binary, own] of Object.entries(OWN_VERSION)) {
      const direct = await runInRoot(interpreters.dir, [REAL_INTERPRETERS[binary as keyof typeof REAL_INTERPRETERS], ...own.args], WITH_PROC);
      assert.equal(direct.code, 0, `${binary} ${own.args.join(' ')} in the root: ${describeRun(direct)}`);
      const printed = own.pattern.exec(direct.stdout + direct.stderr)?.[1];
      assert.ok(printed, `${binary} printed no version: ${direct.stdout}${direct.stderr}`);
      const entry = report.runtimes.find((r) => r.name === own.runtime);
      assert.ok(entry, `${own.runtime} missing from ${JSON.stringify(report)}`);
      assert.deepEqual(
        { path: entry.path, binary: entry.binary, version: entry.version, note: entry.note },
        { path: own.reportedPath, binary, version: printed, note: undefined },
      );
    }
    assert.deepEqual(report.unusable, []);
    assert.equal(report.attune_worker_runtimes, 'shell,python,node,java,perl');
  }
});

test('text report lists each interpreter like Attune does', async () => {
  const r = await runInRoot(interpreters.dir, [AGENT, '--detect-only'], WITH_PROC);
  assert.equal(r.code, 0, describeRun(r));
  assert.match(r.stdout, /^Detected 5 runtime\(s\):$/m);
  assert.match(r.stdout, /^ {2}✓ python {5}\/usr\/bin\/python3 \(\d+\.\d+\.\d+\)$/m);
  assert.match(r.stdout, /^ {2}✓ java {7}\/usr\/bin\/java \(\d+(?:\.\d+){2,3}\)$/m);
  assert.match(r.stdout, /^ATTUNE_WORKER_RUNTIMES=shell,python,node,java,perl$/m);
});

for (const filter of ['python,shell', 'python3,bash']) {
  test(`ATTUNE_WORKER_RUNTIMES=${filter} selects python and shell`, async () => {
    const report = await detectJson(interpreters, { env: { ATTUNE_WORKER_RUNTIMES: filter } });
    assert.deepEqual(report.runtimes.map((r) => r.name), ['shell', 'python']);
    assert.deepEqual(report.filter, filter.split(','));
    assert.equal(report.attune_worker_runtimes, 'shell,python');

    const text = await runInRoot(interpreters.dir, [AGENT, '--detect-only'], { ...WITH_PROC, env: { ATTUNE_WORKER_RUNTIMES: filter } });
    assert.equal(text.code, 0, describeRun(text));
    assert.match(text.stdout, new RegExp(`^ATTUNE_WORKER_RUNTIMES is set to: ${filter}$`, 'm'));
  });
}

test('a root without interpreters reports none and what to install, exit 0', async () => {
  const root = ws.make('scratch');
  addHostFile(root.dir, built.executable, AGENT);
  const r = await runInRoot(root.dir, [AGENT, '--detect-only']);
  assert.equal(r.code, 0, describeRun(r));
  assert.match(r.stdout, /^No runtimes detected!$/m);
  for (const b of ['bash', 'python3', 'node', 'java', 'perl', 'Rscript']) assert.match(r.stdout, new RegExp(`^ {2}- ${b}$`, 'm'));
  const json = await detectJson(root);
  assert.deepEqual(json, { runtimes: [], unusable: [], filter: null, attune_worker_runtimes: '' });
});

test('hanging python3 and node and a ruby printing garbage are reported within one probe timeout', async () => {
  const root = ws.make('scratch', 'fakes');
  addHostFile(root.dir, built.executable, AGENT);
  addHostBinary(root.dir, '/usr/bin/bash', '/bin/bash'); // a well-behaved probe alongside
  addFakeInterpreter(root.dir, 'python3', 'hang');
  addFakeInterpreter(root.dir, 'node', 'hang');
  addFakeInterpreter(root.dir, 'ruby', 'garbage');
  const env = { ATTUNE__WORKER__PROBE_TIMEOUT: '1' };

  const r = await runInRoot(root.dir, [AGENT, '--detect-only'], { env, timeoutMs: 20_000 });
  assert.equal(r.code, 0, describeRun(r));
  // Probes run in parallel: two hung probes cost one timeout (plus start-up), not two.
  assert.ok(r.ms >= 1000, `the hung probes were not waited for (${r.ms.toFixed(0)} ms)`);
  assert.ok(r.ms < 1900, `--detect-only took ${r.ms.toFixed(0)} ms with two hung probes and a 1 s probe timeout`);
  assert.match(r.stdout, /^ {2}✓ python {5}\/usr\/local\/bin\/python3 \(unknown version\)$/m);
  assert.match(r.stdout, /^ {2}✓ ruby {7}\/usr\/local\/bin\/ruby \(unknown version\)$/m);
  assert.match(r.stdout, /^ {2}✓ shell {6}\/bin\/bash \(\d+\.\d+\.\d+\)$/m);
  assert.match(r.stdout, /^ {2}! python {5}\/usr\/local\/bin\/python3: version probe timed out after 1000 ms$/m);
  assert.match(r.stdout, /^ {2}! node {7}\/usr\/local\/bin\/node: version probe timed out after 1000 ms$/m);
  await waitFor('no probe process left in the root', () => processesUnder(root.dir).length === 0, { timeoutMs: 2000 });

  const json = await detectJson(root, { env });
  const byName = Object.fromEntries(json.runtimes.map((x) => [x.name, x]));
  assert.equal(byName.python.version, null);
  assert.match(byName.python.note ?? '', /timed out after 1000 ms/);
  assert.equal(byName.node.version, null);
  assert.equal(byName.ruby.version, null);
  assert.match(byName.ruby.note ?? '', /no version in output of 'ruby --version' \(exit 0\)/);
  assert.equal(byName.shell.note, undefined);
  await waitFor('no probe process left in the root', () => processesUnder(root.dir).length === 0, { timeoutMs: 2000 });
});
