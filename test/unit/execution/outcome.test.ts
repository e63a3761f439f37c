import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decideOutcome, parseOutput, preparationFailure, executionFailure, jsonbSafe } from '../../../src/execution/outcome.ts';

const base = {
  exitCode: 0, timedOut: false, cancelled: null, durationMs: 12, stdout: '', stderr: '', stdoutTruncated: false,
  stdoutBytesTruncated: 0, stderrTruncated: false, stderrBytesTruncated: 0, logsIncomplete: false, stdinError: null, launcher: 'posix_spawn',
} as const;
const opts = { outputFormat: 'text' as const, stderrLogPath: '/art/execution_1/stderr.log', timeoutMs: 30_000 };

test('completed text: stdout kept, no data, no truncation fields, stderr_log only when stderr non-blank', () => {
  const o = decideOutcome({ ...base, stdout: 'hello\n', stderr: '  \n', stdoutTruncated: true, stdoutBytesTruncated: 5 }, opts);
  assert.equal(o.status, 'completed');
  assert.deepEqual(o.result, { exit_code: 0, duration_ms: 12, succeeded: true, stdout: 'hello\n' });
  const w = decideOutcome({ ...base, stdout: 'x', stderr: 'warning\n' }, opts);
  assert.equal(w.result.stderr_log, '/art/execution_1/stderr.log');
  assert.equal(decideOutcome({ ...base, stderr: 'warning' }, { ...opts, stderrLogPath: null }).result.stderr_log, undefined);
});

test('completed json: parsed into data, stdout blanked, queue_ack copied', () => {
  const o = decideOutcome({ ...base, stdout: 'log line\n{"a": 1, "queue_ack": {"id": 7}}\n' }, { ...opts, outputFormat: 'json' });
  assert.deepEqual(o.result, { exit_code: 0, duration_ms: 12, succeeded: true, data: { a: 1, queue_ack: { id: 7 } }, queue_ack: { id: 7 } });
  assert.deepEqual(o.data, { a: 1, queue_ack: { id: 7 } });
});

test('unparseable json output stays in stdout without data', () => {
  const o = decideOutcome({ ...base, stdout: 'not json\n' }, { ...opts, outputFormat: 'json' });
  assert.equal(o.status, 'completed');
  assert.equal(o.result.stdout, 'not json\n');
  assert.equal('data' in o.result, false);
});

test('parsing rules per format', () => {
  assert.deepEqual(parseOutput('  {"a":\n 1}\n', 'json'), { a: 1 });
  assert.deepEqual(parseOutput('x\ny\n[1,2]', 'json'), [1, 2]);
  assert.equal(parseOutput('x\n{"a":1}\ny', 'json'), undefined, 'only the last line is tried');
  assert.deepEqual(parseOutput('a: 1\nb: [x, y]\n', 'yaml'), { a: 1, b: ['x', 'y'] });
  assert.equal(parseOutput('a: [unclosed\n', 'yaml'), undefined);
  assert.deepEqual(parseOutput('{"n":1}\nnoise\n\n{"n":2}\r\n', 'jsonl'), [{ n: 1 }, { n: 2 }]);
  assert.equal(parseOutput('noise\nmore noise', 'jsonl'), undefined);
  assert.equal(parseOutput('{"a":1}', 'text'), undefined);
  assert.equal(parseOutput('   \n', 'json'), undefined);
  assert.equal(parseOutput('null', 'json'), null, 'JSON null is a parsed value');
});

test('no parsing when the exit code is not 0', () => {
  const o = decideOutcome({ ...base, exitCode: 1, stdout: '{"a":1}' }, { ...opts, outputFormat: 'json' });
  assert.equal(o.status, 'failed');
  assert.equal(o.result.stdout, '{"a":1}');
  assert.equal('data' in o.result, false);
});

test('failed: error text from the exit code or stderr (≤ 5 lines whole, else last line)', () => {
  assert.equal(decideOutcome({ ...base, exitCode: 2 }, opts).result.error, 'Command exited with code 2');
  assert.equal(decideOutcome({ ...base, exitCode: 2, stderr: 'a\nb\n' }, opts).result.error, 'a\nb\n');
  assert.equal(decideOutcome({ ...base, exitCode: 2, stderr: '1\n2\n3\n4\n5\n6\n' }, opts).result.error, '6');
  assert.equal(decideOutcome({ ...base, exitCode: 2, stderr: '1\n2\n3\n4\n5\n' }, opts).result.error, '1\n2\n3\n4\n5\n');
});

test('failed result carries truncation fields and exact shape', () => {
  const o = decideOutcome({
    ...base, exitCode: 1, stdout: 'out', stderr: 'boom\n', stdoutTruncated: true, stdoutBytesTruncated: 100,
    stderrTruncated: true, stderrBytesTruncated: 3, logsIncomplete: true,
  }, opts);
  assert.deepEqual(o.result, {
    succeeded: false, exit_code: 1, duration_ms: 12, error: 'boom\n', stdout: 'out',
    stderr_log: '/art/execution_1/stderr.log', stdout_truncated: true, stdout_bytes_truncated: 100,
    stderr_truncated: true, stderr_bytes_truncated: 3, logs_incomplete: true,
  });
});

test('timeout: exit_code -1, timed_out, error in seconds, no parsing', () => {
  const o = decideOutcome({ ...base, exitCode: -1, timedOut: true, stdout: '{"a":1}' }, { ...opts, outputFormat: 'json', timeoutMs: 5000 });
  assert.equal(o.status, 'timeout');
  assert.deepEqual(o.result, {
    succeeded: false, timed_out: true, exit_code: -1, duration_ms: 12, error: 'Execution timed out after 5 seconds', stdout: '{"a":1}',
  });
});

test('cancelled by user and by shutdown', () => {
  const u = decideOutcome({ ...base, exitCode: -1, cancelled: 'cancel' }, opts);
  assert.equal(u.status, 'cancelled');
  assert.deepEqual(u.result, { succeeded: false, cancelled: true, cancel_reason: 'user', exit_code: -1, duration_ms: 12, error: 'Execution cancelled by user' });
  const s = decideOutcome({ ...base, exitCode: 0, cancelled: 'shutdown' }, opts);
  assert.equal(s.status, 'cancelled');
  assert.equal(s.result.cancel_reason, 'shutdown');
  assert.equal(s.result.error, 'Execution cancelled: attune-agent shutting down');
  assert.equal(s.result.exit_code, 0, 'the exit code from wait is kept (action exited cleanly on SIGTERM)');
});

test('stderr mentioning "cancelled" does not make a failure a cancellation', () => {
  assert.equal(decideOutcome({ ...base, exitCode: 1, stderr: 'job cancelled upstream' }, opts).status, 'failed');
});

test('stdin broken pipe: ignored for a fast successful exit, an error otherwise', () => {
  const epipe = { code: 'EPIPE', message: 'Broken pipe (os error 32)' };
  assert.equal(decideOutcome({ ...base, stdinError: epipe, durationMs: 20 }, opts).status, 'completed');
  const slow = decideOutcome({ ...base, stdinError: epipe, durationMs: 900 }, opts);
  assert.equal(slow.status, 'failed');
  assert.equal(slow.result.error, 'Failed to write parameters to stdin: Broken pipe (os error 32)');
  assert.equal(decideOutcome({ ...base, exitCode: 3, stdinError: epipe }, opts).result.error, 'Failed to write parameters to stdin: Broken pipe (os error 32)');
});

test('NUL characters never reach the JSONB result', () => {
  const o = decideOutcome({ ...base, stdout: 'a\u0000b' }, opts);
  assert.equal(o.result.stdout, 'a\uFFFDb');
  assert.deepEqual(jsonbSafe({ 'k\u0000': ['\u0000'] }), { 'k\uFFFD': ['\uFFFD'] });
  const proto = jsonbSafe(JSON.parse('{"__proto__": {"x": 1}}')) as Record<string, unknown>;
  assert.deepEqual(Object.keys(proto), ['__proto__']);
});

test('lone surrogates (valid in JS, rejected by PostgreSQL JSONB) become U+FFFD', () => {
  const data = JSON.parse('{"s": "a\\ud800b", "ok": "\\ud83d\\ude00"}') as unknown;
  const o = decideOutcome({ ...base, stdout: JSON.stringify(data) }, { ...opts, outputFormat: 'json' });
  assert.deepEqual(o.result.data, { s: 'a\uFFFDb', ok: '\u{1F600}' });
});

test('preparation and execution failure helpers', () => {
  assert.deepEqual(preparationFailure('env_vars must be an object').result, {
    succeeded: false, error: 'Failed to prepare execution context: env_vars must be an object',
  });
  const e = executionFailure('no interpreter');
  assert.equal(e.status, 'failed');
  assert.deepEqual(e.result, { succeeded: false, error: 'Action execution failed: no interpreter' });
});
