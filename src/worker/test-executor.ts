/**
 * Pack tests as Attune's `attune_common::test_executor` runs them (docs/attune-compat.md "Pack
 * tests"): the `testing` section of pack.yaml (TestConfig), its policy checks, the runners
 * (`script` → /bin/sh for `*.sh`, else /bin/bash; `unittest` / `pytest` → `{python} -m …`), the
 * "simple" result parsing (`Total Tests:` / `Passed:` / `Failed:` / `Skipped:` lines, else the exit
 * code), the aggregation into a PackTestResult and whether the policy accepts it. Same fields (camelCase
 * JSON, as Attune's serde writes them), statuses and error texts (Attune's `Error` Display: "Validation
 * error: …", "Not found: …", "Operation timed out: …", "Internal error: …").
 *
 * Pure except `executePackTests`, which runs each runner through the `run` port (real processes:
 * worker/pack-tests.ts hands it execution/process.ts). Runners run in pack.yaml order (Attune's
 * HashMap order is arbitrary).
 */
import { isAbsolute, normalize } from 'node:path';

export interface RunnerConfig {
  type: string;
  entry_point: string;
  /** Seconds; Attune's default 300. */
  timeout: number | null;
  result_format: string | null;
}

export interface TestConfig {
  enabled: boolean;
  discovery: { method: string; path: string | null };
  runners: Array<[name: string, runner: RunnerConfig]>;
  result_format: string | null;
  result_path: string | null;
  min_pass_rate: number | null;
  on_failure: string | null;
}

export type TestStatus = 'passed' | 'failed' | 'skipped' | 'error';

export interface TestCaseResult {
  name: string;
  status: TestStatus;
  durationMs: number;
  errorMessage: string | null;
  stdout: string | null;
  stderr: string | null;
}

export interface TestSuiteResult {
  name: string;
  runnerType: string;
  total: number;
  passed: number;
  failed: number;
  skipped: number;
  durationMs: number;
  testCases: TestCaseResult[];
}

/** Attune's PackTestResult, field for field (its serde is `rename_all = "camelCase"`). */
export interface PackTestResult {
  packRef: string;
  packVersion: string;
  /** RFC 3339, as chrono serializes a DateTime<Utc>. */
  executionTime: string;
  status: string;
  totalTests: number;
  passed: number;
  failed: number;
  skipped: number;
  passRate: number;
  durationMs: number;
  testSuites: TestSuiteResult[];
}

export const DEFAULT_RUNNER_TIMEOUT_S = 300;
/** Bytes of each stream a runner's output keeps (Attune's MAX_TEST_OUTPUT_BYTES). */
export const MAX_TEST_OUTPUT_BYTES = 1024 * 1024;

type Parsed<T> = { ok: true; value: T } | { ok: false; error: string };

const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
const u64 = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

function kind(v: unknown): string {
  if (v === null || v === undefined) return 'unit value';
  if (Array.isArray(v)) return 'sequence';
  if (typeof v === 'object') return 'map';
  if (typeof v === 'number') return Number.isInteger(v) ? `integer \`${v}\`` : `floating point \`${v}\``;
  if (typeof v === 'boolean') return `boolean \`${v}\``;
  return `string ${JSON.stringify(v)}`;
}

/**
 * pack.yaml's `testing` value as serde reads Attune's TestConfig: `enabled` (bool), `discovery`
 * (`method`, optional `path`) and `runners` (a map of `type`, `entry_point`, optional `timeout`
 * seconds and `result_format`) are required; unknown fields are ignored. The error says which field.
 */
export function parseTestConfig(testing: unknown): Parsed<TestConfig> {
  if (!isObj(testing)) return { ok: false, error: `invalid type: ${kind(testing)}, expected struct TestConfig` };
  const missing = (f: string, where = '') => ({ ok: false as const, error: `${where}missing field \`${f}\`` });
  const wrong = (f: string, v: unknown, want: string) => ({ ok: false as const, error: `${f}: invalid type: ${kind(v)}, expected ${want}` });
  const optStr = (o: Record<string, unknown>, f: string, at: string): Parsed<string | null> => {
    const v = o[f];
    if (v === undefined || v === null) return { ok: true, value: null };
    return typeof v === 'string' ? { ok: true, value: v } : wrong(`${at}${f}`, v, 'a string');
  };
  if (testing.enabled === undefined) return missing('enabled');
  if (typeof testing.enabled !== 'boolean') return wrong('enabled', testing.enabled, 'a boolean');
  if (testing.discovery === undefined) return missing('discovery');
  if (!isObj(testing.discovery)) return wrong('discovery', testing.discovery, 'struct DiscoveryConfig');
  if (testing.discovery.method === undefined) return missing('method', 'discovery: ');
  if (typeof testing.discovery.method !== 'string') return wrong('discovery.method', testing.discovery.method, 'a string');
  const discoveryPath = optStr(testing.discovery, 'path', 'discovery.');
  if (!discoveryPath.ok) return discoveryPath;
  if (testing.runners === undefined) return missing('runners');
  if (!isObj(testing.runners)) return wrong('runners', testing.runners, 'a map');
  const runners: Array<[string, RunnerConfig]> = [];
  for (const [name, r] of Object.entries(testing.runners)) {
    const at = `runners.${name}.`;
    if (!isObj(r)) return wrong(`runners.${name}`, r, 'struct RunnerConfig');
    if (r.type === undefined) return missing('type', `runners.${name}: `);
    if (typeof r.type !== 'string') return wrong(`${at}type`, r.type, 'a string');
    if (r.entry_point === undefined) return missing('entry_point', `runners.${name}: `);
    if (typeof r.entry_point !== 'string') return wrong(`${at}entry_point`, r.entry_point, 'a string');
    if (r.timeout !== undefined && r.timeout !== null && !u64(r.timeout)) return wrong(`${at}timeout`, r.timeout, 'u64');
    const format = optStr(r, 'result_format', at);
    if (!format.ok) return format;
    runners.push([name, { type: r.type, entry_point: r.entry_point, timeout: (r.timeout as number | null | undefined) ?? null, result_format: format.value }]);
  }
  const resultFormat = optStr(testing, 'result_format', '');
  if (!resultFormat.ok) return resultFormat;
  const resultPath = optStr(testing, 'result_path', '');
  if (!resultPath.ok) return resultPath;
  const onFailure = optStr(testing, 'on_failure', '');
  if (!onFailure.ok) return onFailure;
  const rate = testing.min_pass_rate;
  if (rate !== undefined && rate !== null && typeof rate !== 'number') return wrong('min_pass_rate', rate, 'f64');
  return {
    ok: true,
    value: {
      enabled: testing.enabled, discovery: { method: testing.discovery.method, path: discoveryPath.value }, runners,
      result_format: resultFormat.value, result_path: resultPath.value, min_pass_rate: (rate as number | null | undefined) ?? null, on_failure: onFailure.value,
    },
  };
}

/** Attune's TestConfig::validate_policy; the error as its `Error::Validation` prints. */
export function validatePolicy(c: TestConfig): string | null {
  if (c.min_pass_rate !== null && !(c.min_pass_rate >= 0 && c.min_pass_rate <= 1)) return 'Validation error: testing.min_pass_rate must be between 0.0 and 1.0';
  if (c.on_failure !== null && !['block', 'warn', 'ignore'].includes(c.on_failure)) return 'Validation error: testing.on_failure must be block, warn, or ignore';
  let total = 60;
  for (const [, r] of c.runners) {
    const t = r.timeout ?? DEFAULT_RUNNER_TIMEOUT_S;
    if (t < 1 || t > 3600) return 'Validation error: testing runner timeouts must be between 1 and 3600 seconds';
    total += t;
  }
  if (total > 21_660) return 'Validation error: combined testing runner timeout must not exceed 6 hours';
  return null;
}

/** Attune's TestConfig::accepts_result: tests ran, none errored, the pass rate is met — or on_failure is warn/ignore. */
export function acceptsResult(c: TestConfig, r: PackTestResult): boolean {
  const executionError = r.testSuites.some((s) => s.testCases.some((t) => t.status === 'error'));
  const meets = r.totalTests > 0 && !executionError && r.passRate >= (c.min_pass_rate ?? 1.0);
  return meets || c.on_failure === 'warn' || c.on_failure === 'ignore';
}

/** What one runner's process did (the port's answer). */
export type CommandOutput =
  | { kind: 'exited'; exitCode: number; stdout: string; stderr: string; durationMs: number }
  | { kind: 'timeout'; timeoutS: number }
  /** Could not start: the text after Attune's "Failed to spawn command '…': ". */
  | { kind: 'spawn-error'; message: string };

/** The command of one runner: the interpreter to start and its arguments, relative to the pack dir. */
export interface RunnerCommand {
  runnerName: string;
  runnerType: string;
  command: string;
  args: string[];
  timeoutS: number;
  /** For a python runner: the interpreter's directory, first on PATH (Attune: the venv's bin). */
  binDir: string | null;
}

/** The runner's interpreters, as worker/pack-tests.ts resolved them on this image. */
export interface RunnerInterpreters {
  sh: string;
  bash: string;
  python: string;
}

export interface ExecutePorts {
  /** Whether a path exists (after links), as Rust's Path::exists. */
  exists(path: string): boolean;
  run(cmd: RunnerCommand): Promise<CommandOutput>;
  now(): Date;
  monotonicMs(): number;
}

/** Extract `label`'s number: the first line containing it, the first word after it, as an i32. */
export function extractNumber(text: string, label: string): number | null {
  const line = text.split('\n').find((l) => l.includes(label));
  if (line === undefined) return null;
  const word = line.split(label)[1]?.trim().split(/\s+/)[0] ?? '';
  if (!/^[+-]?\d+$/.test(word)) return null;
  const n = Number(word);
  return n >= -(2 ** 31) && n < 2 ** 31 ? n : null;
}

/** Attune's parse_simple_output: counts from the output, else from the exit code; a non-zero exit never reports all passed. */
export function parseSimpleOutput(out: Extract<CommandOutput, { kind: 'exited' }>, runnerName: string, runnerType: string): TestSuiteResult {
  const text = `${out.stdout}\n${out.stderr}`;
  const t = extractNumber(text, 'Total Tests:');
  const p = extractNumber(text, 'Passed:');
  const f = extractNumber(text, 'Failed:');
  const s = extractNumber(text, 'Skipped:') ?? 0;
  let [total, passed, failed, skipped] = t === null || p === null
    ? (out.exitCode === 0 ? [1, 1, 0, 0] : [1, 0, 1, 0])
    : [t, p, f ?? 0, s];
  total = Math.max(total, 1);
  passed = Math.max(passed, 0);
  failed = Math.max(failed, 0);
  skipped = Math.max(skipped, 0);
  if (out.exitCode !== 0 && failed === 0) {
    failed = 1;
    total = Math.max(total, failed + skipped);
    passed = Math.min(passed, Math.max(0, total - (failed + skipped)));
  }
  return {
    name: runnerName, runnerType, total, passed, failed, skipped, durationMs: out.durationMs,
    testCases: [{
      name: `${runnerName}_suite`,
      status: out.exitCode === 0 ? 'passed' : 'failed',
      durationMs: out.durationMs,
      errorMessage: out.exitCode !== 0 ? `Exit code: ${out.exitCode}` : null,
      stdout: out.stdout !== '' ? out.stdout : null,
      stderr: out.stderr !== '' ? out.stderr : null,
    }],
  };
}

/** A runner that could not run: one errored case, counted as one failed test (Attune ≥ the policy fix). */
function errorSuite(name: string, type: string, message: string): TestSuiteResult {
  return {
    name, runnerType: type, total: 1, passed: 0, failed: 1, skipped: 0, durationMs: 0,
    testCases: [{ name: `${name}_execution`, status: 'error', durationMs: 0, errorMessage: message, stdout: null, stderr: null }],
  };
}

/**
 * The command of a runner, or Attune's error text. The entry point is joined to the pack dir and
 * must exist; unlike Attune (whose join lets an absolute path replace the pack dir) it must stay
 * inside the pack dir.
 */
export function runnerCommand(packDir: string, name: string, r: RunnerConfig, interp: RunnerInterpreters, pythonBinDir: string | null, exists: (p: string) => boolean): { ok: true; cmd: RunnerCommand } | { ok: false; error: string } {
  const rel = normalize(r.entry_point);
  const entry = `${packDir}/${rel}`;
  if (isAbsolute(r.entry_point) || rel === '..' || rel.startsWith('../')) {
    return { ok: false, error: `Validation error: test entry point ${JSON.stringify(r.entry_point)} is outside the pack directory` };
  }
  if (!exists(entry)) return { ok: false, error: `Not found: test_entry_point with path=${packDir}/${r.entry_point}` };
  const base = { runnerName: name, runnerType: r.type, timeoutS: r.timeout ?? DEFAULT_RUNNER_TIMEOUT_S };
  switch (r.type) {
    case 'script':
      return { ok: true, cmd: { ...base, command: rel.endsWith('.sh') ? interp.sh : interp.bash, args: [rel], binDir: null } };
    case 'unittest':
      return { ok: true, cmd: { ...base, command: interp.python, args: ['-m', 'unittest', rel], binDir: pythonBinDir } };
    case 'pytest':
      return { ok: true, cmd: { ...base, command: interp.python, args: ['-m', 'pytest', rel, '-v'], binDir: pythonBinDir } };
    default:
      return { ok: false, error: `Validation error: Unsupported runner type: ${r.type}` };
  }
}

/** Attune's execute_pack_tests_at_with_python_interpreter, runner by runner. */
export async function executePackTests(
  input: { packDir: string; packRef: string; packVersion: string; config: TestConfig; interpreters: RunnerInterpreters; pythonBinDir: string | null },
  ports: ExecutePorts,
): Promise<{ ok: true; result: PackTestResult } | { ok: false; error: string }> {
  const { config } = input;
  if (!config.enabled) return { ok: false, error: 'Validation error: Testing is not enabled for this pack' };
  const policy = validatePolicy(config);
  if (policy) return { ok: false, error: policy };
  if (!ports.exists(input.packDir)) return { ok: false, error: `Not found: pack_directory with path=${input.packDir}` };
  const started = ports.monotonicMs();
  const executionTime = ports.now().toISOString();
  const suites: TestSuiteResult[] = [];
  for (const [name, r] of config.runners) {
    const suiteStarted = ports.monotonicMs();
    const planned = runnerCommand(input.packDir, name, r, input.interpreters, input.pythonBinDir, ports.exists);
    if (!planned.ok) {
      suites.push(errorSuite(name, r.type, planned.error));
      continue;
    }
    const out = await ports.run(planned.cmd);
    if (out.kind === 'timeout') {
      suites.push(errorSuite(name, r.type, `Operation timed out: Test execution timed out after ${out.timeoutS}s`));
      continue;
    }
    if (out.kind === 'spawn-error') {
      suites.push(errorSuite(name, r.type, `Internal error: Failed to spawn command '${planned.cmd.command}': ${out.message}`));
      continue;
    }
    const format = r.result_format ?? 'simple';
    if (format === 'json') {
      suites.push(errorSuite(name, r.type, 'Validation error: JSON result format not yet implemented'));
      continue;
    }
    const suite = parseSimpleOutput(out, name, r.type);
    suite.durationMs = Math.round(ports.monotonicMs() - suiteStarted);
    suites.push(suite);
  }
  const sum = (k: 'total' | 'passed' | 'failed' | 'skipped') => suites.reduce((a, s) => a + s[k], 0);
  const [totalTests, passed, failed, skipped] = [sum('total'), sum('passed'), sum('failed'), sum('skipped')];
  const status = failed > 0 ? 'failed' : passed === totalTests ? 'passed' : skipped === totalTests ? 'skipped' : 'partial';
  return {
    ok: true,
    result: {
      packRef: input.packRef, packVersion: input.packVersion, executionTime, status, totalTests, passed, failed, skipped,
      passRate: totalTests > 0 ? passed / totalTests : 0, durationMs: Math.round(ports.monotonicMs() - started), testSuites: suites,
    },
  };
}
