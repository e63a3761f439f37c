/**
 * worker/test-executor.ts, the pure parts: Attune's TestConfig as serde reads it, validate_policy,
 * accepts_result, parse_simple_output / extract_number, the runner commands, and the aggregation
 * (with a fake `run` port; the real processes are in test/integration/worker/pack-tests.test.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  acceptsResult, executePackTests, extractNumber, parseSimpleOutput, parseTestConfig, runnerCommand, validatePolicy,
  type CommandOutput, type PackTestResult, type TestConfig,
} from '../../../src/worker/test-executor.ts';
import { hashIntegrationToken, rustIoError } from '../../../src/worker/pack-tests.ts';

const RUNNERS = { shell: { type: 'script', entry_point: 'tests/run.sh' } };

function config(over: Partial<TestConfig> = {}): TestConfig {
  const parsed = parseTestConfig({ enabled: true, discovery: { method: 'directory' }, runners: RUNNERS });
  assert.ok(parsed.ok);
  return { ...parsed.value, ...over };
}

function result(total: number, passed: number, over: Partial<PackTestResult> = {}): PackTestResult {
  return {
    packRef: 'p', packVersion: '1', executionTime: new Date(0).toISOString(), status: 'failed', totalTests: total, passed, failed: total - passed,
    skipped: 0, passRate: total > 0 ? passed / total : 0, durationMs: 1, testSuites: [], ...over,
  };
}

test('TestConfig: enabled, discovery and runners required as in Attune\'s serde; unknown fields ignored; wrong types named', () => {
  const ok = parseTestConfig({ enabled: false, discovery: { method: 'directory', path: 'tests' }, runners: { a: { type: 'pytest', entry_point: 't', timeout: 5, result_format: 'simple' } }, extra: 1, min_pass_rate: 0.5, on_failure: 'warn' });
  assert.deepEqual(ok, {
    ok: true,
    value: {
      enabled: false, discovery: { method: 'directory', path: 'tests' }, runners: [['a', { type: 'pytest', entry_point: 't', timeout: 5, result_format: 'simple' }]],
      result_format: null, result_path: null, min_pass_rate: 0.5, on_failure: 'warn',
    },
  });
  assert.deepEqual(parseTestConfig({ enabled: false }), { ok: false, error: 'missing field `discovery`' });
  assert.deepEqual(parseTestConfig({ discovery: { method: 'x' }, runners: {} }), { ok: false, error: 'missing field `enabled`' });
  assert.deepEqual(parseTestConfig({ enabled: 'yes', discovery: { method: 'x' }, runners: {} }), { ok: false, error: 'enabled: invalid type: string "yes", expected a boolean' });
  assert.deepEqual(parseTestConfig({ enabled: true, discovery: { method: 'x' }, runners: { a: { type: 'script' } } }), { ok: false, error: 'runners.a: missing field `entry_point`' });
  assert.deepEqual(parseTestConfig({ enabled: true, discovery: { method: 'x' }, runners: { a: { type: 'script', entry_point: 'x', timeout: -1 } } }),
    { ok: false, error: 'runners.a.timeout: invalid type: integer `-1`, expected u64' });
  assert.deepEqual(parseTestConfig(null), { ok: false, error: 'invalid type: unit value, expected struct TestConfig' });
});

test('validate_policy: Attune\'s bounds and texts', () => {
  assert.equal(validatePolicy(config()), null);
  assert.equal(validatePolicy(config({ min_pass_rate: 1.1 })), 'Validation error: testing.min_pass_rate must be between 0.0 and 1.0');
  assert.equal(validatePolicy(config({ on_failure: 'continue' })), 'Validation error: testing.on_failure must be block, warn, or ignore');
  const runner = (timeout: number | null) => ({ type: 'script', entry_point: 'x', timeout, result_format: null });
  assert.equal(validatePolicy(config({ runners: [['slow', runner(3601)]] })), 'Validation error: testing runner timeouts must be between 1 and 3600 seconds');
  assert.equal(validatePolicy(config({ runners: [['zero', runner(0)]] })), 'Validation error: testing runner timeouts must be between 1 and 3600 seconds');
  const six = Array.from({ length: 6 }, (_, i) => [`r${i}`, runner(3600)] as [string, ReturnType<typeof runner>]);
  assert.equal(validatePolicy(config({ runners: six })), null, '60 + 6 × 3600 = 21660: the limit itself is allowed');
  assert.equal(validatePolicy(config({ runners: [...six, ['one', runner(1)]] })), 'Validation error: combined testing runner timeout must not exceed 6 hours');
  assert.equal(validatePolicy(config({ runners: Array.from({ length: 72 }, (_, i) => [`d${i}`, runner(null)] as [string, ReturnType<typeof runner>]) })), null, '60 + 72 × 300 default');
});

test('accepts_result: the threshold (default 1.0), no runner error, some tests; warn/ignore accept anything', () => {
  const partial = result(10, 8);
  assert.equal(acceptsResult(config({ min_pass_rate: 0.8, on_failure: 'block' }), partial), true);
  assert.equal(acceptsResult(config({ min_pass_rate: 0.9 }), partial), false);
  assert.equal(acceptsResult(config(), result(3, 3)), true);
  assert.equal(acceptsResult(config(), partial), false, 'default min_pass_rate 1.0');
  assert.equal(acceptsResult(config({ min_pass_rate: 1, on_failure: 'warn' }), partial), true);
  assert.equal(acceptsResult(config({ min_pass_rate: 1, on_failure: 'ignore' }), partial), true);
  assert.equal(acceptsResult(config({ min_pass_rate: 0 }), result(0, 0)), false, 'no tests never passes');
  const errored = result(11, 10, {
    testSuites: [{ name: 'b', runnerType: 'script', total: 1, passed: 0, failed: 1, skipped: 0, durationMs: 0, testCases: [{ name: 'b_execution', status: 'error', durationMs: 0, errorMessage: 'x', stdout: null, stderr: null }] }],
  });
  assert.equal(acceptsResult(config({ min_pass_rate: 0.5 }), errored), false);
  assert.equal(acceptsResult(config({ on_failure: 'warn' }), errored), true);
});

test('extract_number and parse_simple_output: counts from the output, else the exit code; a non-zero exit never reports all passed', () => {
  assert.equal(extractNumber('Total Tests: 36\nPassed: 35\nFailed: 1', 'Total Tests:'), 36);
  assert.equal(extractNumber('Passed:   7 of 9', 'Passed:'), 7);
  assert.equal(extractNumber('Passed: seven', 'Passed:'), null);
  assert.equal(extractNumber('nothing', 'Skipped:'), null);
  assert.equal(extractNumber('Passed: 9999999999', 'Passed:'), null, 'not an i32');
  const out = (exitCode: number, stdout: string, stderr = ''): Extract<CommandOutput, { kind: 'exited' }> => ({ kind: 'exited', exitCode, stdout, stderr, durationMs: 12 });
  const s = parseSimpleOutput(out(0, 'Total Tests: 36\nPassed: 36\nFailed: 0\n'), 'shell', 'script');
  assert.deepEqual([s.total, s.passed, s.failed, s.skipped, s.durationMs], [36, 36, 0, 0, 12]);
  assert.deepEqual(s.testCases, [{ name: 'shell_suite', status: 'passed', durationMs: 12, errorMessage: null, stdout: 'Total Tests: 36\nPassed: 36\nFailed: 0\n', stderr: null }]);
  const f = parseSimpleOutput(out(1, 'Total Tests: 10\nPassed: 8\nFailed: 2\n', 'Some tests failed\n'), 'python', 'unittest');
  assert.deepEqual([f.total, f.passed, f.failed, f.testCases[0].status, f.testCases[0].errorMessage, f.testCases[0].stderr], [10, 8, 2, 'failed', 'Exit code: 1', 'Some tests failed\n']);
  const lie = parseSimpleOutput(out(1, 'Total Tests: 1\nPassed: 1\nFailed: 0\n'), 's', 'script');
  assert.deepEqual([lie.total, lie.passed, lie.failed], [1, 0, 1]);
  assert.deepEqual([parseSimpleOutput(out(0, 'ok'), 's', 'script').passed, parseSimpleOutput(out(2, ''), 's', 'script').failed], [1, 1]);
  assert.equal(parseSimpleOutput(out(0, 'Total Tests: 0\nPassed: 0'), 's', 'script').total, 1, 'at least one');
});

test('runner commands: script → /bin/sh for .sh else bash, unittest/pytest → python -m; entry point must exist inside the pack', () => {
  const interp = { sh: '/bin/sh', bash: '/bin/bash', python: '/envs/p/python/bin/python3' };
  const exists = (p: string) => !p.includes('missing');
  const cmd = (type: string, entry_point: string) => runnerCommand('/packs/p', 'r', { type, entry_point, timeout: null, result_format: null }, interp, '/envs/p/python/bin', exists);
  assert.deepEqual(cmd('script', 'tests/run.sh'), { ok: true, cmd: { runnerName: 'r', runnerType: 'script', timeoutS: 300, command: '/bin/sh', args: ['tests/run.sh'], binDir: null } });
  assert.equal((cmd('script', 'tests/run') as { cmd: { command: string } }).cmd.command, '/bin/bash');
  assert.deepEqual((cmd('unittest', 'tests/test_x.py') as { cmd: { args: string[]; binDir: string } }).cmd.args, ['-m', 'unittest', 'tests/test_x.py']);
  assert.deepEqual((cmd('pytest', 'tests') as { cmd: { args: string[] } }).cmd.args, ['-m', 'pytest', 'tests', '-v']);
  assert.deepEqual(cmd('script', 'tests/missing.sh'), { ok: false, error: 'Not found: test_entry_point with path=/packs/p/tests/missing.sh' });
  assert.deepEqual(cmd('jest', 'tests'), { ok: false, error: 'Validation error: Unsupported runner type: jest' });
  assert.match((cmd('script', '../other/run.sh') as { error: string }).error, /outside the pack directory/);
  assert.match((cmd('script', '/etc/passwd') as { error: string }).error, /outside the pack directory/);
});

test('execute: runners in order; a timeout, a spawn failure and json format are errored suites; totals, rate and status aggregated', async () => {
  const answers: Record<string, CommandOutput> = {
    a: { kind: 'exited', exitCode: 0, stdout: 'Total Tests: 3\nPassed: 3\n', stderr: '', durationMs: 5 },
    b: { kind: 'timeout', timeoutS: 7 },
    c: { kind: 'spawn-error', message: 'No such file or directory (os error 2)' },
    d: { kind: 'exited', exitCode: 0, stdout: '{}', stderr: '', durationMs: 1 },
  };
  let clock = 0;
  const ran: string[] = [];
  const cfg = config({
    runners: ['a', 'b', 'c', 'd'].map((n) => [n, { type: 'script', entry_point: `${n}.sh`, timeout: n === 'b' ? 7 : null, result_format: n === 'd' ? 'json' : null }]),
  });
  const r = await executePackTests(
    { packDir: '/p', packRef: 'p', packVersion: '1.0.0', config: cfg, interpreters: { sh: '/bin/sh', bash: '/bin/bash', python: 'python3' }, pythonBinDir: null },
    { exists: () => true, run: async (c) => { ran.push(c.runnerName); clock += 10; return answers[c.runnerName]; }, now: () => new Date(0), monotonicMs: () => clock },
  );
  assert.ok(r.ok);
  assert.deepEqual(ran, ['a', 'b', 'c', 'd']);
  const res = r.result;
  assert.deepEqual([res.totalTests, res.passed, res.failed, res.skipped, res.status, res.durationMs, res.executionTime], [6, 3, 3, 0, 'failed', 40, '1970-01-01T00:00:00.000Z']);
  assert.equal(res.passRate, 0.5);
  assert.deepEqual(res.testSuites.map((s) => s.testCases[0].errorMessage), [
    null,
    'Operation timed out: Test execution timed out after 7s',
    "Internal error: Failed to spawn command '/bin/sh': No such file or directory (os error 2)",
    'Validation error: JSON result format not yet implemented',
  ]);
  assert.deepEqual(res.testSuites.slice(1).map((s) => [s.name, s.total, s.failed, s.testCases[0].name, s.testCases[0].status]),
    [['b', 1, 1, 'b_execution', 'error'], ['c', 1, 1, 'c_execution', 'error'], ['d', 1, 1, 'd_execution', 'error']]);
  const disabled = await executePackTests({ packDir: '/p', packRef: 'p', packVersion: '1', config: config({ enabled: false }), interpreters: { sh: '', bash: '', python: '' }, pythonBinDir: null },
    { exists: () => true, run: async () => answers.a, now: () => new Date(), monotonicMs: () => 0 });
  assert.deepEqual(disabled, { ok: false, error: 'Validation error: Testing is not enabled for this pack' });
});

test('candidate token hash as Attune\'s hash_integration_token; io errors as Rust prints them', () => {
  // sha256("attempt-secret"), base64url without padding (computed with Python's hashlib)
  assert.equal(hashIntegrationToken('attempt-secret'), 'zrzGs9ITqxLiTgCruZ28sAGCPGQ2cP6yKpnR_uqWlUw');
  assert.notEqual(hashIntegrationToken('attempt-secret'), hashIntegrationToken('different-secret'));
  assert.equal(rustIoError(Object.assign(new Error('x'), { code: 'ENOENT' })), 'No such file or directory (os error 2)');
  assert.equal(rustIoError(Object.assign(new Error('odd'), { code: 'EWHATEVER' })), 'odd');
});

test('the testing section of Attune\'s own core pack (packs/core/pack.yaml 1.0.3) parses and passes the policy, runners in file order', async () => {
  const { parse } = await import('yaml');
  // Verbatim from attune-system/attune packs/core/pack.yaml (the real catalog, not our reading of it).
  const testing = (parse(`testing:
  enabled: true
  discovery:
    method: "directory"
    path: "tests"
  runners:
    shell:
      type: "script"
      entry_point: "tests/run_tests.sh"
      timeout: 60
      result_format: "simple"
    python:
      type: "unittest"
      entry_point: "tests/test_actions.py"
      timeout: 120
      result_format: "simple"
  result_path: "tests/results/"
  min_pass_rate: 1.0
  on_failure: "block"
`) as { testing: unknown }).testing;
  const parsed = parseTestConfig(testing);
  assert.ok(parsed.ok, JSON.stringify(parsed));
  assert.deepEqual(parsed.value.runners.map(([name, r]) => [name, r.type, r.entry_point, r.timeout]), [
    ['shell', 'script', 'tests/run_tests.sh', 60],
    ['python', 'unittest', 'tests/test_actions.py', 120],
  ]);
  assert.equal(parsed.value.min_pass_rate, 1);
  assert.equal(parsed.value.on_failure, 'block');
  assert.equal(validatePolicy(parsed.value), null);
});
