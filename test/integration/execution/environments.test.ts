/**
 * Packs with dependencies (contract §5.4; docs/environments.md): runtime environments made by the
 * worker's run with real interpreters, pip and npm, offline (a wheel made at test time, a `file:`
 * npm dependency), and Attune's core.python / core.nodejs execution_config.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import pino from 'pino';
import * as h from '../../helpers/execution.ts';
import { CORE_RUNTIMES } from '../../fixtures/catalog/core-runtimes.ts';
import type { RuntimeExecutionConfig } from '../../../src/model.ts';
import { DEPS_MARKER, READY_MARKER, RuntimeEnvironments } from '../../../src/execution/environments.ts';
import { PACK_REF_MARKER, runtimeCacheKey, thisWorkerIdentity } from '../../../src/execution/runtime-cache-key.ts';
import { RELEASE_MARKER, releaseRoot } from '../../../src/execution/pack-files.ts';
import { createHash } from 'node:crypto';
import { renameSync } from 'node:fs';
import { makeWheel, writeDependencyPack } from '../../fixtures/environments/dep-pack.ts';

const FIXTURES = resolve(import.meta.dirname, '../../fixtures/environments');
const PATH = process.env.PATH ?? '/usr/bin:/bin';
const catalog = (ref: string) => CORE_RUNTIMES.find((r) => r.ref === ref)!.execution_config as RuntimeExecutionConfig;
const python = () => h.runtime('python', { execution_config: catalog('core.python') });
/** A packs dir with pack `testpack`: the action file and, when given, requirements.txt. */
function pythonPack(root: string, requirements: string | null): string {
  writeDependencyPack(join(root, 'packs'), 'testpack', requirements);
  return join(root, 'packs');
}

/** A logger whose lines the test reads: the setup commands that ran. */
function capture() {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: 'info' }, { write: (s: string) => { lines.push(JSON.parse(s)); } });
  const ran = (what: RegExp) => lines.filter((l) => typeof l.msg === 'string' && what.test(l.msg)).length;
  return { logger, lines, ran };
}

function runPython(packsDir: string, envsDir: string, logger: pino.Logger, baselinePath = PATH) {
  return h.run({
    execution: h.execution(), action: h.action('use_dep.py', { output_format: 'json' }), runtime: python(),
    config: { ...h.config(), packsBaseDir: packsDir, runtimeEnvsDir: envsDir }, detected: h.detected(),
    baselineEnv: { PATH: baselinePath }, logger,
  });
}

test('python pack with requirements.txt: venv made, the wheel imported, reused warm, reinstalled when requirements change', async (t) => {
  const root = h.tempDir('env-py');
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const wheel1 = makeWheel(root, '1.0.0', 'one');
  const packs = pythonPack(root, `${wheel1}\n`);
  const envs = join(root, 'runtime_envs');
  const envDir = join(envs, 'testpack', 'python');
  const log = capture();

  const first = await runPython(packs, envs, log.logger);
  assert.equal(first.status, 'completed', JSON.stringify(first.result));
  const data = first.result.data as { value: string; prefix: string };
  assert.equal(data.value, 'one');
  assert.equal(data.prefix, envDir, 'the action runs the venv\'s interpreter, under runtime_envs_dir');
  assert.ok(existsSync(join(envDir, READY_MARKER)));
  assert.equal(readFileSync(join(envDir, DEPS_MARKER), 'utf8'), execFileSync('sha256sum', [join(packs, 'testpack', 'requirements.txt')], { encoding: 'utf8' }).split(' ')[0]);
  assert.equal(log.ran(/runtime environment created/), 1);
  assert.equal(log.ran(/dependencies installed/), 1);
  assert.equal(log.ran(/: running `/), 2, 'create_command + install_command');
  const markerMtime = statSync(join(envDir, DEPS_MARKER)).mtimeMs;

  const second = await runPython(packs, envs, log.logger);
  assert.equal(second.status, 'completed');
  assert.equal((second.result.data as { value: string }).value, 'one');
  assert.equal(log.ran(/: running `/), 2, 'the warm run runs no setup command');
  assert.equal(statSync(join(envDir, DEPS_MARKER)).mtimeMs, markerMtime);

  const wheel2 = makeWheel(root, '2.0.0', 'two');
  writeFileSync(join(packs, 'testpack', 'requirements.txt'), `${wheel2}\n`);
  const third = await runPython(packs, envs, log.logger);
  assert.equal(third.status, 'completed', JSON.stringify(third.result));
  assert.equal((third.result.data as { value: string }).value, 'two');
  assert.equal(log.ran(/runtime environment created/), 1, 'the venv is kept');
  assert.equal(log.ran(/dependencies installed/), 2, 'a changed manifest is installed again');
});

test('a failing install fails the execution naming pack, runtime, command and output; the next run after the fix succeeds', async (t) => {
  const root = h.tempDir('env-fail');
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const missing = join(root, 'attune_fixture_dep-9.9.9-py3-none-any.whl');
  const packs = pythonPack(root, `${missing}\n`);
  const envs = join(root, 'runtime_envs');
  const log = capture();
  const bad = await runPython(packs, envs, log.logger);
  assert.equal(bad.status, 'failed');
  const error = String(bad.result.error);
  const venvPython = join(envs, 'testpack', 'python', 'bin', 'python3');
  assert.ok(error.startsWith(`Action execution failed: pack testpack, runtime python: \`${venvPython} -m pip install -r ${join(packs, 'testpack', 'requirements.txt')}\` failed (exit 1): `), error);
  assert.match(error, /attune_fixture_dep-9\.9\.9-py3-none-any\.whl/, 'the tail of pip\'s output');
  assert.ok(!existsSync(join(envs, 'testpack', 'python', DEPS_MARKER)), 'no marker for a failed install');

  writeFileSync(join(packs, 'testpack', 'requirements.txt'), `${makeWheel(root, '1.0.0', 'fixed')}\n`);
  const good = await runPython(packs, envs, log.logger);
  assert.equal(good.status, 'completed', JSON.stringify(good.result));
  assert.equal((good.result.data as { value: string }).value, 'fixed');
  assert.equal(log.ran(/runtime environment created/), 1, 'the venv made by the failed run is reused');
});

test('a python without venv support: the failure names the missing piece; nothing half-built stays', async (t) => {
  const root = h.tempDir('env-novenv');
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const packs = pythonPack(root, `${makeWheel(root, '1.0.0', 'one')}\n`);
  const envs = join(root, 'runtime_envs');
  // An image whose python3 is Debian's without python3-venv: `-m venv` fails with Debian's message.
  const bin = join(root, 'image-bin');
  mkdirSync(bin);
  const real = execFileSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' }).trim();
  writeFileSync(join(bin, 'python3'), `#!/bin/sh
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
  echo "The virtual environment was not created successfully because ensurepip is not
available.  On Debian/Ubuntu systems, you need to install the python3-venv
package using the following command.

    apt install python3.11-venv" >&2
  exit 1
fi
exec ${real} "$@"
`);
  chmodSync(join(bin, 'python3'), 0o755);
  const log = capture();
  const r = await runPython(packs, envs, log.logger, `${bin}:${PATH}`);
  assert.equal(r.status, 'failed');
  const error = String(r.result.error);
  assert.ok(error.startsWith(`Action execution failed: pack testpack, runtime python: \`${join(bin, 'python3')} -m venv --copies `), error);
  assert.match(error, /failed \(exit 1\): The virtual environment was not created successfully because ensurepip is not/);
  assert.match(error, /cannot create virtual environments: install python3-venv/);
  assert.deepEqual(readdir(join(envs, 'testpack')), [], 'no temporary sibling, no lock, no environment left');
});

test('node pack with a file: dependency: require() finds it through the runtime\'s NODE_PATH', async (t) => {
  const root = h.tempDir('env-node');
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const dep = join(root, 'fixture-dep');
  mkdirSync(dep);
  writeFileSync(join(dep, 'package.json'), JSON.stringify({ name: 'attune-fixture-dep', version: '1.0.0', main: 'index.js' }));
  writeFileSync(join(dep, 'index.js'), "module.exports = { value: 'from-file-dep' };\n");
  const pack = join(root, 'packs', 'testpack');
  mkdirSync(join(pack, 'actions'), { recursive: true });
  writeFileSync(join(pack, 'package.json'), JSON.stringify({ private: true, type: 'commonjs', dependencies: { 'attune-fixture-dep': `file:${dep}` } }));
  writeFileSync(join(pack, 'actions', 'use_dep.js'), "console.log(JSON.stringify({ value: require('attune-fixture-dep').value, node_path: process.env.NODE_PATH }));\n");
  const envs = join(root, 'runtime_envs');
  const log = capture();
  const node = h.runtime('node', { execution_config: { ...catalog('core.nodejs'), interpreter: { binary: process.execPath, args: [], file_extension: '.js' } } });
  const r = await h.run({
    execution: h.execution(), action: h.action('use_dep.js', { output_format: 'json' }), runtime: node,
    config: { ...h.config(), packsBaseDir: join(root, 'packs'), runtimeEnvsDir: envs }, detected: h.detected(),
    // The operator's npm settings (worker.passthrough_env): no audit/fund round trips.
    baselineEnv: { PATH, npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false' }, logger: log.logger,
  });
  assert.equal(r.status, 'completed', JSON.stringify(r.result));
  const data = r.result.data as { value: string; node_path: string };
  assert.equal(data.value, 'from-file-dep');
  assert.equal(data.node_path, join(envs, 'testpack', 'node.js', 'node_modules'));
  assert.equal(log.ran(/dependencies installed/), 1);
});

test('10 concurrent first executions in two processes sharing runtime_envs: one creation, one install, all complete', async (t) => {
  const root = h.tempDir('env-shared');
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const packs = pythonPack(root, `${makeWheel(root, '1.0.0', 'shared')}\n`);
  const envs = join(root, 'runtime_envs');
  const agent = () => new Promise<{ lines: Record<string, unknown>[]; results: { status: string; result: Record<string, unknown> }[] }>((done, fail) => {
    const child = spawn(process.execPath, [join(FIXTURES, 'run-many.ts'), packs, envs, '5', PATH], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => { out += s; });
    child.on('error', fail);
    child.on('close', (code) => {
      const lines = out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
      const res = out.split('\n').find((l) => l.startsWith('RESULTS '));
      if (code !== 0 || !res) return fail(new Error(`agent process exited ${code}: ${out}`));
      done({ lines, results: JSON.parse(res.slice('RESULTS '.length)) });
    });
  });
  const [a, b] = await Promise.all([agent(), agent()]);
  const results = [...a.results, ...b.results];
  assert.equal(results.length, 10);
  for (const r of results) {
    assert.equal(r.status, 'completed', JSON.stringify(r.result));
    assert.equal((r.result.data as { value: string }).value, 'shared');
  }
  const count = (re: RegExp) => [...a.lines, ...b.lines].filter((l) => re.test(String(l.msg))).length;
  assert.equal(count(/runtime environment created/), 1, 'exactly one creation');
  assert.equal(count(/dependencies installed/), 1, 'exactly one install');
  assert.deepEqual(readdir(join(envs, 'testpack')), ['python'], 'no lock or temporary sibling left');
});

test('a broken environment (dangling interpreter link) is rebuilt', async (t) => {
  const root = h.tempDir('env-broken');
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const packs = pythonPack(root, `${makeWheel(root, '1.0.0', 'rebuilt')}\n`);
  const envs = join(root, 'runtime_envs');
  const envDir = join(envs, 'testpack', 'python');
  mkdirSync(join(envDir, 'bin'), { recursive: true });
  const { symlinkSync } = await import('node:fs');
  symlinkSync('/nonexistent/python3', join(envDir, 'bin', 'python3'));
  writeFileSync(join(envDir, 'stale-file'), 'x');
  const log = capture();
  const r = await runPython(packs, envs, log.logger);
  assert.equal(r.status, 'completed', JSON.stringify(r.result));
  assert.equal((r.result.data as { value: string }).value, 'rebuilt');
  assert.ok(!existsSync(join(envDir, 'stale-file')), 'the broken directory was replaced');
  assert.ok(existsSync(join(envDir, READY_MARKER)));
});

test('a pack without dependencies gets no environment (runs on the image\'s interpreter, as before)', async (t) => {
  const root = h.tempDir('env-none');
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const pack = join(root, 'packs', 'testpack');
  mkdirSync(join(pack, 'actions'), { recursive: true });
  writeFileSync(join(pack, 'actions', 'prefix.py'), 'import json, sys\nprint(json.dumps({"prefix": sys.prefix}))\n');
  writeFileSync(join(pack, 'requirements.txt'), '# nothing yet\n');
  const envs = join(root, 'runtime_envs');
  const log = capture();
  const r = await h.run({
    execution: h.execution(), action: h.action('prefix.py', { output_format: 'json' }), runtime: python(),
    config: { ...h.config(), packsBaseDir: join(root, 'packs'), runtimeEnvsDir: envs }, detected: h.detected(),
    baselineEnv: { PATH }, logger: log.logger,
  });
  assert.equal(r.status, 'completed', JSON.stringify(r.result));
  assert.ok(!String((r.result.data as { prefix: string }).prefix).startsWith(envs));
  assert.ok(!existsSync(envs));
  assert.equal(log.ran(/: running `/), 0);
});

function readdir(dir: string): string[] {
  return (execFileSync('ls', ['-A', dir], { encoding: 'utf8' })).split('\n').filter(Boolean).sort();
}

test('a stale lock (its owner pid is dead on this host) is broken; a setup command over worker.env_setup_timeout is killed and explained', async (t) => {
  const root = h.tempDir('env-lock');
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const packs = pythonPack(root, `${makeWheel(root, '1.0.0', 'unlocked')}\n`);
  const envs = join(root, 'runtime_envs');
  const dead = spawn('true');
  await new Promise((r) => dead.on('close', r));
  mkdirSync(join(envs, 'testpack', '.python.lock'), { recursive: true });
  writeFileSync(join(envs, 'testpack', '.python.lock', 'owner'), JSON.stringify({ pid: dead.pid, host: (await import('node:os')).hostname(), started_ms: Date.now() }));
  const log = capture();
  const r = await runPython(packs, envs, log.logger);
  assert.equal(r.status, 'completed', JSON.stringify(r.result));
  assert.equal((r.result.data as { value: string }).value, 'unlocked');
  assert.equal(log.ran(/breaking a stale runtime environment lock/), 1);

  // A create_command that never ends, limited to 1 s: failed with the limit named, nothing left behind.
  const slow = h.runtime('python', { execution_config: { ...catalog('core.python'), environment: { env_type: 'virtualenv', create_command: ['sh', '-c', 'sleep 30'], interpreter_path: '{env_dir}/bin/python3' } } });
  const envs2 = join(root, 'runtime_envs_slow');
  const base = h.config();
  const started = Date.now();
  const s = await h.run({
    execution: h.execution(), action: h.action('use_dep.py', { output_format: 'json' }), runtime: slow,
    config: { ...base, packsBaseDir: packs, runtimeEnvsDir: envs2, worker: { ...base.worker, envSetupTimeoutMs: 1000 } },
    detected: h.detected(), baselineEnv: { PATH }, logger: log.logger,
  });
  assert.equal(s.status, 'failed');
  assert.match(String(s.result.error), /pack testpack, runtime python: `sh -c sleep 30` failed \(timed out after 1 s \(worker\.env_setup_timeout\)\)/);
  assert.ok(Date.now() - started < 15_000, 'killed at the limit, not after the sleep');
  assert.deepEqual(readdir(join(envs2, 'testpack')), []);
});

test('a cancel during the environment set-up ends the execution at once (the set-up is not waited for)', async (t) => {
  const root = h.tempDir('env-cancel');
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const packs = pythonPack(root, 'anything==1.0\n');
  const slow = h.runtime('python', { execution_config: { ...catalog('core.python'), environment: { env_type: 'virtualenv', create_command: ['sh', '-c', 'sleep 3'], interpreter_path: null } } });
  const log = capture();
  const ac = new AbortController();
  const started = Date.now();
  const run = h.run({
    execution: h.execution(), action: h.action('use_dep.py', { output_format: 'json' }), runtime: slow,
    config: { ...h.config(), packsBaseDir: packs, runtimeEnvsDir: join(root, 'runtime_envs') }, detected: h.detected(),
    baselineEnv: { PATH }, logger: log.logger, signal: ac.signal,
  });
  while (log.ran(/: running `sh -c sleep 3`/) === 0) await new Promise((r) => setImmediate(r));
  ac.abort();
  const r = await run;
  assert.equal(r.status, 'cancelled');
  assert.equal(r.result.error, 'Execution cancelled by user');
  assert.ok(Date.now() - started < 2500, 'not held until the 3 s create_command ends');
});

test('an environment Attune built in place (no .attune-runtime-ready, deps marker of this manifest) is used as it is', async (t) => {
  const root = h.tempDir('env-attune');
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const packs = pythonPack(root, `${makeWheel(root, '1.0.0', 'attune-built')}\n`);
  const envs = join(root, 'runtime_envs');
  const envDir = join(envs, 'testpack', 'python');
  mkdirSync(join(envs, 'testpack'), { recursive: true });
  // What Attune's ensure_runtime_environment leaves: create_command + install_command run in place, then the checksum marker.
  execFileSync('python3', ['-m', 'venv', '--copies', envDir]);
  execFileSync(join(envDir, 'bin', 'python3'), ['-m', 'pip', 'install', '-q', '-r', join(packs, 'testpack', 'requirements.txt')], { env: { PATH, PIP_CONFIG_FILE: '/dev/null', PIP_DISABLE_PIP_VERSION_CHECK: '1' } });
  const sha = execFileSync('sha256sum', [join(packs, 'testpack', 'requirements.txt')], { encoding: 'utf8' }).split(' ')[0];
  writeFileSync(join(envDir, DEPS_MARKER), sha);
  const log = capture();
  const r = await runPython(packs, envs, log.logger);
  assert.equal(r.status, 'completed', JSON.stringify(r.result));
  assert.deepEqual(r.result.data, { value: 'attune-built', prefix: envDir });
  assert.equal(log.ran(/: running `/), 0, 'no setup command: the environment is reused');
  assert.ok(!existsSync(join(envDir, READY_MARKER)), 'left as Attune made it');
});

/** A pinned release of `testpack` on the packs volume (verified by its ready marker); returns its digest. */
function pinnedRelease(packsDir: string, requirements: string, label: string): string {
  const digest = createHash('sha256').update(label).digest('hex');
  const staging = writeDependencyPack(join(packsDir, '.staging'), label, requirements);
  writeFileSync(join(staging, 'pack.yaml'), 'ref: testpack\n');
  mkdirSync(releaseRoot(packsDir, digest), { recursive: true });
  renameSync(staging, join(releaseRoot(packsDir, digest), 'pack'));
  writeFileSync(join(releaseRoot(packsDir, digest), RELEASE_MARKER), digest);
  return digest;
}

/** The key Attune's worker computes for this release of testpack on this machine (python, no version chosen). */
function keyFor(packsDir: string, digest: string): string {
  const manifest = readFileSync(join(releaseRoot(packsDir, digest), 'pack', 'requirements.txt'));
  const id = thisWorkerIdentity();
  return runtimeCacheKey({ releaseDigest: digest, dependencyDigest: createHash('sha256').update(manifest).digest('hex'), runtimeName: 'python', runtimeVersion: 'default', ...id })!;
}

test('a pinned release: the environment is Attune\'s sha256/{key}, complete before it appears; an Attune-built one is reused', async (t) => {
  const root = h.tempDir('env-key');
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const packs = join(root, 'packs');
  const envs = join(root, 'runtime_envs');
  const digest = pinnedRelease(packs, `${makeWheel(root, '1.0.0', 'keyed')}\n`, 'release-1');
  const key = keyFor(packs, digest);
  const envDir = join(envs, 'sha256', key);
  const log = capture();
  const pinned = (d: string) => h.run({
    execution: h.execution({ pack_release: 1, pack_release_digest: d }), action: h.action('use_dep.py', { output_format: 'json' }), runtime: python(),
    config: { ...h.config(), packsBaseDir: packs, runtimeEnvsDir: envs }, detected: h.detected(), baselineEnv: { PATH }, logger: log.logger,
  });

  const first = await pinned(digest);
  assert.equal(first.status, 'completed', JSON.stringify(first.result));
  assert.deepEqual(first.result.data, { value: 'keyed', prefix: envDir });
  assert.equal(readFileSync(join(envDir, READY_MARKER), 'utf8'), key, 'ready exactly when Attune\'s is_ready says so');
  assert.equal(readFileSync(join(envDir, PACK_REF_MARKER), 'utf8'), 'testpack', 'the owner Attune\'s PackDeleted purge reads');
  assert.ok(existsSync(join(envDir, DEPS_MARKER)), 'installed before the rename');
  assert.ok(!existsSync(join(envs, 'testpack')), 'no legacy directory');
  assert.deepEqual(readdir(join(envs, 'sha256')), [key], 'no temporary or lock left beside it');
  assert.equal(log.ran(/: running `/), 2);

  const second = await pinned(digest);
  assert.equal(second.status, 'completed');
  assert.equal(log.ran(/: running `/), 2, 'warm: no setup command');

  // What Attune's worker publishes for another release: a venv with the deps, the key as ready marker, no pack-ref marker yet.
  const digest2 = pinnedRelease(packs, `${makeWheel(root, '2.0.0', 'attune-keyed')}\n`, 'release-2');
  const key2 = keyFor(packs, digest2);
  const attuneDir = join(envs, 'sha256', key2);
  execFileSync('python3', ['-m', 'venv', '--copies', attuneDir]);
  execFileSync(join(attuneDir, 'bin', 'python3'), ['-m', 'pip', 'install', '-q', '-r', join(releaseRoot(packs, digest2), 'pack', 'requirements.txt')], { env: { PATH, PIP_CONFIG_FILE: '/dev/null', PIP_DISABLE_PIP_VERSION_CHECK: '1' } });
  writeFileSync(join(attuneDir, READY_MARKER), key2);
  const third = await pinned(digest2);
  assert.equal(third.status, 'completed', JSON.stringify(third.result));
  assert.deepEqual(third.result.data, { value: 'attune-keyed', prefix: attuneDir });
  assert.equal(log.ran(/: running `/), 2, 'Attune\'s environment is used as it is');
  assert.equal(readFileSync(join(attuneDir, PACK_REF_MARKER), 'utf8'), 'testpack', 'marked as Attune marks it at each execution');

  // A directory at the key whose ready marker is not the key (half-built by hand, another format): rebuilt.
  writeFileSync(join(envDir, READY_MARKER), 'ready');
  const fourth = await pinned(digest);
  assert.equal(fourth.status, 'completed', JSON.stringify(fourth.result));
  assert.equal(readFileSync(join(envDir, READY_MARKER), 'utf8'), key);
  assert.equal(log.ran(/runtime environment created/), 2);
});

test('what a killed set-up left (temporary sibling, moved-aside directory, stale lock) is removed at the next set-up and at start', async (t) => {
  const root = h.tempDir('env-sweep');
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const packs = pythonPack(root, `${makeWheel(root, '1.0.0', 'swept')}\n`);
  const envs = join(root, 'runtime_envs');
  const dead = spawn('true');
  await new Promise((r) => dead.on('close', r));
  const host = (await import('node:os')).hostname();
  const leave = (dir: string, name: string) => {
    mkdirSync(join(dir, `.${name}.tmp-${dead.pid}-0badc0de`, 'bin'), { recursive: true });
    writeFileSync(join(dir, `.${name}.tmp-${dead.pid}-0badc0de`, 'bin', 'half'), 'x');
    mkdirSync(join(dir, `.${name}.old-${dead.pid}-deadbeef`), { recursive: true });
    mkdirSync(join(dir, `.${name}.lock.stale-12345678`), { recursive: true });
    mkdirSync(join(dir, `.${name}.lock`), { recursive: true });
    writeFileSync(join(dir, `.${name}.lock`, 'owner'), JSON.stringify({ pid: dead.pid, host, started_ms: Date.now() }));
  };
  // A link planted among them is removed as a link, its target untouched; others' names are left alone.
  const outside = join(root, 'outside');
  mkdirSync(outside);
  writeFileSync(join(outside, 'keep'), 'k');
  const { symlinkSync } = await import('node:fs');

  // 1. At the next set-up of that environment (under its lock).
  leave(join(envs, 'testpack'), 'python');
  symlinkSync(outside, join(envs, 'testpack', `.python.tmp-${dead.pid}-aaaaaaaa`));
  writeFileSync(join(envs, 'testpack', '.runtime.1b4e28ba-2fa1-11d2-883f-0016d3cca427.tmp'), 'attune\'s');
  const log = capture();
  const r = await runPython(packs, envs, log.logger);
  assert.equal(r.status, 'completed', JSON.stringify(r.result));
  assert.deepEqual(readdir(join(envs, 'testpack')), ['.runtime.1b4e28ba-2fa1-11d2-883f-0016d3cca427.tmp', 'python']);
  assert.ok(existsSync(join(outside, 'keep')));

  // 2. At start, for an environment that is warm (no set-up would ever look) and in sha256/.
  leave(join(envs, 'testpack'), 'python');
  leave(join(envs, 'sha256'), 'f'.repeat(64));
  mkdirSync(join(envs, 'other', '.python.lock'), { recursive: true }); // a live owner's lock: kept
  writeFileSync(join(envs, 'other', '.python.lock', 'owner'), JSON.stringify({ pid: process.pid, host, started_ms: Date.now() }));
  mkdirSync(join(envs, 'other', `.python.tmp-${process.pid}-abcdef01`));
  const environments = new RuntimeEnvironments({ setupTimeoutMs: 60_000, baselineEnv: { PATH } });
  const removed = await environments.sweep(envs, log.logger);
  assert.equal(removed, 6, 'tmp, old and stale-lock leftovers of both environments');
  assert.deepEqual(readdir(join(envs, 'testpack')), ['.runtime.1b4e28ba-2fa1-11d2-883f-0016d3cca427.tmp', 'python']);
  assert.deepEqual(readdir(join(envs, 'sha256')), []);
  assert.deepEqual(readdir(join(envs, 'other')), ['.python.lock', `.python.tmp-${process.pid}-abcdef01`], 'a set-up in progress is not touched');
  assert.equal((await runPython(packs, envs, log.logger)).status, 'completed');
});

test('an environment that should have its own interpreter but has none: the install fails, never into the image\'s python', async (t) => {
  const root = h.tempDir('env-no-interp');
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const packs = pythonPack(root, `${makeWheel(root, '1.0.0', 'nowhere')}\n`);
  const envs = join(root, 'runtime_envs');
  const core = catalog('core.python');
  // A catalog row with an interpreter_path but no create_command: nothing makes that interpreter.
  const execution_config = { ...core, environment: { env_type: 'virtualenv', dir_name: '.venv', interpreter_path: '{env_dir}/bin/python3' } } as RuntimeExecutionConfig;
  const log = capture();
  const r = await h.run({
    execution: h.execution(), action: h.action('use_dep.py', { output_format: 'json' }), runtime: h.runtime('python', { execution_config }),
    config: { ...h.config(), packsBaseDir: packs, runtimeEnvsDir: envs }, detected: h.detected(),
    baselineEnv: { PATH }, logger: log.logger,
  });
  assert.equal(r.status, 'failed', JSON.stringify(r.result));
  assert.match(JSON.stringify(r.result), /has no interpreter at .*runtime_envs\/testpack\/python\/bin\/python3; dependencies not installed/);
  assert.equal(log.ran(/pip install/), 0, 'no install command ran');
  assert.throws(() => execFileSync('python3', ['-c', 'import attune_fixture_dep'], { stdio: 'ignore' }), 'the image\'s python did not get the dependency');
});
