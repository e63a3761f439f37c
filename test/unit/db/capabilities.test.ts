import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { loadConfig } from '../../../src/config/index.ts';
import { loadRawConfig } from '../../../src/config/load.ts';
import { compileConfig } from '../../../src/config/compile.ts';
import { buildCapabilities, resolveWorkerName, runtimeVersions } from '../../../src/db/capabilities.ts';
import { capitalise, cloneExecutionConfig, findPresent, minimalRuntimeRow } from '../../../src/db/runtimes.ts';
import type { DetectedRuntime } from '../../../src/detect/detect.ts';
import { AGENT_VERSION } from '../../../src/version.ts';

const config = (env: Record<string, string> = {}) => loadConfig({ env, cwd: '/nonexistent-attune-test', flags: {}, implicitFiles: false });
const yamlConfig = (yaml: string) =>
  compileConfig(loadRawConfig({ env: {}, cwd: '/nonexistent-attune-test', flags: {}, readFile: (p) => (p.endsWith('/config.yaml') ? yaml : undefined) }));

const AGENT_ENV = { ATTUNE_AGENT_MODE: 'true', ATTUNE_AGENT_BINARY_NAME: 'attune-agent', ATTUNE_AGENT_BINARY_VERSION: AGENT_VERSION };
const rt = (name: string, path: string, version: string | null): DetectedRuntime => ({ name, path, version, binary: path.split('/').pop()! });

function loadFixture(file: string): Record<string, unknown> {
  const raw = JSON.parse(readFileSync(new URL(`../../fixtures/${file}`, import.meta.url), 'utf8'), (_k, v) => (v === '<AGENT_VERSION>' ? AGENT_VERSION : v));
  for (const k of Object.keys(raw)) if (k.startsWith('_')) delete raw[k];
  return raw;
}

function assertFieldByField(actual: Record<string, unknown>, expected: Record<string, unknown>): void {
  for (const [k, v] of Object.entries(expected)) assert.deepEqual(actual[k], v, `capabilities.${k}`);
  assert.deepEqual(Object.keys(actual).sort(), Object.keys(expected).sort(), 'no missing or extra capability keys');
}

test('capabilities match the docs/attune-compat.md §3.2 example (fixture capabilities.json)', () => {
  const detected = [rt('shell', '/bin/bash', '5.2.15'), rt('python', '/usr/local/bin/python3', '3.12.1')];
  const expected = loadFixture('capabilities.json');
  // The agent sets ATTUNE_WORKER_RUNTIMES to the detected names when it is unset (docs/attune-compat.md §1.4 step 5)…
  assertFieldByField(buildCapabilities(config(), { detected, workerVersion: AGENT_VERSION }, { ...AGENT_ENV, ATTUNE_WORKER_RUNTIMES: 'shell,python' }), expected);
  // …and without it the detected names are the fallback, with the same result.
  assertFieldByField(buildCapabilities(config(), { detected, workerVersion: AGENT_VERSION }, AGENT_ENV), expected);
});

test('operator overrides: runtimes as given, labels, taints, extra keys (fixture capabilities-labels-taints.json)', () => {
  const cfg = config({
    ATTUNE_WORKER_RUNTIMES: 'Python3, bash ,,native',
    ATTUNE__WORKER__MAX_CONCURRENT_TASKS: '4',
    ATTUNE__WORKER__LABELS__ZONE: 'eu-1',
    ATTUNE__WORKER__LABELS__TIER: 'gpu',
    ATTUNE__WORKER__TAINTS: '[{"key":"dedicated","value":"ml","effect":"no_schedule"}]',
    ATTUNE__WORKER__CAPABILITIES__GPU: 'nvidia-a10',
    ATTUNE__WORKER__CAPABILITIES__RUNTIMES: 'ruby',
  });
  const detected = [rt('shell', '/bin/bash', '5.2.15'), rt('python', '/usr/bin/python3', '3.11.2')];
  const caps = buildCapabilities(cfg, { detected, workerVersion: AGENT_VERSION }, { ...AGENT_ENV, ATTUNE_WORKER_RUNTIMES: 'Python3, bash ,,native' });
  assertFieldByField(caps, loadFixture('capabilities-labels-taints.json'));
});

test('runtimes fall back to worker.capabilities.runtimes, then detection; native appended once', () => {
  const cfg = yamlConfig('worker:\n  capabilities:\n    runtimes: [Ruby, " node "]\n    region: x\n');
  assert.deepEqual(buildCapabilities(cfg, { detected: [rt('shell', '/bin/sh', null)], workerVersion: '1' }, {}).runtimes, ['ruby', 'node', 'native']);
  assert.equal(buildCapabilities(cfg, { detected: [], workerVersion: '1' }, {}).region, 'x');
  // An alias of native counts as native.
  assert.deepEqual(buildCapabilities(config({ ATTUNE_WORKER_RUNTIMES: 'shell,builtin' }), { detected: [], workerVersion: '1' }, {}).runtimes, ['shell', 'builtin']);
  // Nothing anywhere: native only, and no detection keys.
  const bare = buildCapabilities(config(), { detected: [], workerVersion: '1' }, {});
  assert.deepEqual(bare.runtimes, ['native']);
  assert.equal('detected_interpreters' in bare, false);
  assert.equal('runtime_versions' in bare, false);
  assert.equal('labels' in bare, false);
  assert.equal('taints' in bare, false);
});

test('agent_* keys come from the ATTUNE_AGENT_* environment', () => {
  const caps = (env: Record<string, string>) => buildCapabilities(config(), { detected: [], workerVersion: '1' }, env);
  assert.equal(caps({ ATTUNE_AGENT_MODE: '1' }).agent_mode, true);
  assert.equal(caps({ ATTUNE_AGENT_MODE: 'TRUE' }).agent_mode, true);
  assert.equal('agent_mode' in caps({ ATTUNE_AGENT_MODE: 'false' }), false);
  assert.equal('agent_mode' in caps({}), false);
  assert.equal('agent_binary_name' in caps({}), false);
});

test('unknown versions stay in detected_interpreters but not in runtime_versions', () => {
  const caps = buildCapabilities(config(), { detected: [rt('node', '/usr/bin/node', null), rt('shell', '/bin/bash', '5.2')], workerVersion: '1' }, {});
  assert.deepEqual(caps.detected_interpreters, [{ name: 'node', path: '/usr/bin/node', version: null }, { name: 'shell', path: '/bin/bash', version: '5.2' }]);
  assert.deepEqual(caps.runtime_versions, { shell: ['5.2'] });
});

test('runtimeVersions normalises names, sorts keys, de-duplicates and orders versions newest first', () => {
  const v = runtimeVersions([rt('python', '/a', '3.9.1'), rt('python3', '/b', '3.11.0'), rt('python', '/c', '3.9.1'), rt('python', '/d', '3.10'), rt('bash', '/bin/bash', '5.1')]);
  assert.deepEqual(Object.keys(v), ['python', 'shell']);
  assert.deepEqual(v, { python: ['3.11.0', '3.10', '3.9.1'], shell: ['5.1'] }, 'newest first by semver, not by string');
});

test('resolveWorkerName: configured (incl. --name/ATTUNE_WORKER_NAME via config) > env > worker-<hostname>', () => {
  assert.equal(resolveWorkerName(config({ ATTUNE__WORKER__NAME: 'from-config', ATTUNE_WORKER_NAME: 'from-env' }), 'h'), 'from-config');
  assert.equal(resolveWorkerName(config({ ATTUNE_WORKER_NAME: 'from-env' }), 'h'), 'from-env');
  assert.equal(resolveWorkerName(config(), 'h', { ATTUNE_WORKER_NAME: ' late ' }), 'late');
  assert.equal(resolveWorkerName(config({ ATTUNE__WORKER__NAME: '   ' }), 'box-1'), 'worker-box-1');
  const flagged = loadConfig({ env: { ATTUNE__WORKER__NAME: 'cfg' }, cwd: '/nonexistent-attune-test', flags: { name: 'flag' }, implicitFiles: false });
  assert.equal(resolveWorkerName(flagged, 'h'), 'flag');
});

test('runtime auto-registration helpers (docs/attune-compat.md §2.4)', () => {
  const rows = [{ ref: 'core.python', aliases: ['python', 'python3'] }, { ref: 'mypack.shell', aliases: [] }, { ref: 'x.y', aliases: ['ruby'] }];
  assert.equal(findPresent(rows, 'python')?.ref, 'core.python');
  assert.equal(findPresent(rows, 'shell')?.ref, 'mypack.shell');
  assert.equal(findPresent(rows, 'ruby')?.ref, 'x.y');
  assert.equal(findPresent(rows, 'node'), undefined);
  assert.equal(findPresent([{ ref: 'core.nodejs', aliases: ['nodejs'] }], 'node'), undefined, 'exact alias, not normalised');

  assert.equal(capitalise('r'), 'R');
  const m = minimalRuntimeRow(rt('r', '/usr/bin/Rscript', '4.2.2'), 'r');
  assert.deepEqual(m, {
    ref: 'auto.r',
    name: 'R',
    description: 'R interpreter detected by attune-agent',
    aliases: ['r', 'rscript'],
    distributions: { verification: { commands: [{ binary: '/usr/bin/Rscript', args: ['--version'], exit_code: 0, priority: 1 }] } },
    execution_config: { interpreter: { binary: '/usr/bin/Rscript', args: [], file_extension: '.R' } },
    detection_config: { detected_path: '/usr/bin/Rscript', detected_name: 'r', detected_version: '4.2.2' },
  });
  assert.equal('detected_version' in minimalRuntimeRow(rt('perl', '/usr/bin/perl', null), 'perl').detection_config, false);

  const template = { interpreter: { binary: 'python3', args: ['-u'], file_extension: '.py' }, environment: { env_type: 'virtualenv', interpreter_path: '{env_dir}/bin/python3' } };
  const cloned = cloneExecutionConfig(template, '/opt/py/bin/python3');
  assert.deepEqual(cloned.interpreter, { binary: '/opt/py/bin/python3', args: ['-u'], file_extension: '.py' });
  assert.equal((cloned.environment as { interpreter_path: string }).interpreter_path, '{env_dir}/bin/python3', 'templated path kept');
  assert.equal(template.interpreter.binary, 'python3', 'template not mutated');
  const literal = cloneExecutionConfig({ environment: { interpreter_path: '/usr/bin/python3' } }, '/opt/py/bin/python3');
  assert.equal((literal.environment as { interpreter_path: string }).interpreter_path, '/opt/py/bin/python3', 'literal path replaced');
});
