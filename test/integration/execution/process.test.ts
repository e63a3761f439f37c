/**
 * Real processes through the worker's run (h.run) and runProcess: output formats, failures, timeout and cancel of
 * a SIGTERM-ignoring tree, background children holding the pipes, huge and binary output, the
 * cleared environment, log files. After every run no process carrying the test's marker is left.
 */
import { test, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync, statSync, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { createHash } from 'node:crypto';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { runProcess } from '../../../src/execution/process.ts';
import type { ActionRow, ExecutionRow } from '../../../src/model.ts';
import { createLogger } from '../../../src/observe/logger.ts';
import * as h from '../../helpers/execution.ts';
import { waitFor } from '../../helpers/wait.ts';

const artifactsDir = h.tempDir('proc-artifacts');
const detected = h.detected();
const markers: string[] = [];
after(() => rmSync(artifactsDir, { recursive: true, force: true }));
afterEach(async () => {
  // No process of any action may outlive its run (the runner SIGKILLs the group after exit).
  for (const m of markers.splice(0)) await waitFor(`processes with marker ${m} to be gone`, () => h.processesWithMarker(m).length === 0, { timeoutMs: 3000 });
});

interface RunOpts {
  kind?: string;
  action?: Partial<ActionRow>;
  execution?: Partial<ExecutionRow>;
  cfg?: Parameters<typeof h.config>[0];
  extra?: Partial<h.RunInput>;
}
async function run(entrypoint: string, o: RunOpts = {}) {
  const m = h.marker();
  markers.push(m.value);
  const execution = h.execution({ ...o.execution, env_vars: { ...m.env, ...(o.execution?.env_vars as object | undefined) } });
  const started = performance.now();
  const out = await h.run({
    execution, action: h.action(entrypoint, o.action), runtime: h.runtime(o.kind ?? 'shell'),
    config: h.config({ artifactsDir, ...o.cfg }), detected, baselineEnv: h.baseline(), ...o.extra,
  });
  return { ...out, execution, marker: m.value, elapsedMs: performance.now() - started };
}

test('json output: last line parsed into data, queue_ack copied, result.json written', async () => {
  const r = await run('json_out.sh', { action: { output_format: 'json' } });
  assert.equal(r.status, 'completed');
  assert.deepEqual(r.result.data, { answer: 42, queue_ack: { id: 'q-1' } });
  assert.deepEqual(r.result.queue_ack, { id: 'q-1' });
  assert.equal(r.result.stdout, undefined);
  const resultFile = `${artifactsDir}/execution_${r.execution.id}/result.json`;
  assert.equal(readFileSync(resultFile, 'utf8'), JSON.stringify(r.result.data, null, 2) + '\n');
});

test('yaml and jsonl output', async () => {
  const y = await run('yaml_out.sh', { action: { output_format: 'yaml' } });
  assert.deepEqual(y.result.data, { name: 'demo', items: [1, 'two'] });
  const j = await run('jsonl_out.sh', { action: { output_format: 'jsonl' } });
  assert.deepEqual(j.result.data, [{ n: 1 }, { n: 2 }]);
  const t = await run('jsonl_out.sh', { action: { output_format: 'text' } });
  assert.equal(t.result.stdout, '{"n": 1}\nnot json\n{"n": 2}\n');
  assert.equal(existsSync(`${artifactsDir}/execution_${t.execution.id}/result.json`), false, 'no result.json without parsed output');
});

test('non-zero exit: failed, error from stderr, stderr_log points at the log file (664 in a 2775 dir)', async () => {
  const r = await run('fail.sh', { action: { parameter_format: 'dotenv' }, execution: { config: { lines: 2, code: 4 } } });
  assert.equal(r.status, 'failed');
  assert.equal(r.result.exit_code, 4);
  assert.equal(r.result.succeeded, false);
  assert.equal(r.result.error, 'problem line 1\nproblem line 2\n');
  const dir = `${artifactsDir}/execution_${r.execution.id}`;
  assert.equal(r.result.stderr_log, `${dir}/stderr.log`);
  assert.equal(readFileSync(`${dir}/stderr.log`, 'utf8'), 'problem line 1\nproblem line 2\n');
  assert.equal(readFileSync(`${dir}/stdout.log`, 'utf8'), '');
  assert.equal(statSync(`${dir}/stderr.log`).mode & 0o7777, 0o664);
  assert.equal(statSync(dir).mode & 0o7777, 0o2775);
  const many = await run('fail.sh', { action: { parameter_format: 'dotenv' }, execution: { config: { lines: 7, code: 1 } } });
  assert.equal(many.result.error, 'problem line 7');
});

test('timeout: a tree that ignores SIGTERM is SIGKILLed after the grace period', async () => {
  const r = await run('ignore_term_tree.sh', { execution: { timeout_seconds: 1 }, cfg: { killGracePeriodMs: 300 } });
  assert.equal(r.status, 'timeout');
  assert.equal(r.result.timed_out, true);
  assert.equal(r.result.exit_code, -1);
  assert.equal(r.result.error, 'Execution timed out after 1 seconds');
  assert.equal(r.result.stdout, 'tree started\n');
  assert.ok(r.elapsedMs >= 1000 && r.elapsedMs < 4000, `took ${r.elapsedMs} ms`);
  assert.deepEqual(h.processesWithMarker(r.marker), [], 'the whole group is gone when the run returns');
});

test('cancel while running (user): SIGTERM → grace → SIGKILL of the group', async () => {
  const ac = new AbortController();
  const m = h.marker();
  markers.push(m.value);
  const pending = h.run({
    execution: h.execution({ env_vars: m.env }), action: h.action('ignore_term_tree.sh'), runtime: h.runtime('shell'),
    config: h.config({ artifactsDir, killGracePeriodMs: 300 }), detected, baselineEnv: h.baseline(), signal: ac.signal,
  });
  // bash + two subshells (bash may exec sleep in place of the subshell).
  await waitFor('the process tree to start', () => h.processesWithMarker(m.value).length >= 3);
  const t0 = performance.now();
  ac.abort('cancel');
  const r = await pending;
  assert.equal(r.status, 'cancelled');
  assert.equal(r.result.cancelled, true);
  assert.equal(r.result.cancel_reason, 'user');
  assert.equal(r.result.error, 'Execution cancelled by user');
  assert.equal(r.result.exit_code, -1);
  assert.ok(performance.now() - t0 < 3000);
  assert.deepEqual(h.processesWithMarker(m.value), []);
});

test('cancel for shutdown is recorded as such; an action that exits on SIGTERM stops at once', async () => {
  const ac = new AbortController();
  const m = h.marker();
  markers.push(m.value);
  const pending = h.run({
    execution: h.execution({ env_vars: m.env }), action: h.action('sleep.sh'), runtime: h.runtime('shell'),
    config: h.config({ artifactsDir, killGracePeriodMs: 10_000 }), detected, baselineEnv: h.baseline(), signal: ac.signal,
  });
  await waitFor('sleep to start', () => h.processesWithMarker(m.value).length >= 2);
  ac.abort('shutdown');
  const r = await pending;
  assert.equal(r.status, 'cancelled');
  assert.equal(r.result.cancel_reason, 'shutdown');
  assert.equal(r.result.error, 'Execution cancelled: attune-agent shutting down');
  assert.ok(Number(r.result.duration_ms) < 5000, 'no wait for the 10 s grace period');
});

test('cancelled before it started: nothing is spawned', async () => {
  const ac = new AbortController();
  ac.abort('cancel');
  const r = await run('sleep.sh', { extra: { signal: ac.signal } });
  assert.equal(r.status, 'cancelled');
  assert.deepEqual(r.result, { succeeded: false, cancelled: true, cancel_reason: 'user', exit_code: null, duration_ms: 0, error: 'Execution cancelled by user' });
  assert.equal(r.logsSealed, undefined, 'not even log versions were allocated');
  // A cancel that lands while the process is being prepared: runProcess starts nothing either.
  const p = await runProcess({ argv: ['/bin/true'], env: {}, cwd: null, stdin: null, timeoutMs: 5000, killGracePeriodMs: 100, maxStdoutBytes: 1024, maxStderrBytes: 1024 }, { signal: ac.signal });
  assert.equal(p.kind === 'exited' && p.cancelled, 'cancel');
  assert.equal(p.kind === 'exited' && p.launcher, null);
  assert.equal(p.kind === 'exited' && p.exitCode, -1);
});

test('a background child holding stdout does not hang the run and is killed afterwards', async () => {
  const r = await run('grandchild.sh');
  assert.equal(r.status, 'completed');
  assert.equal(r.result.stdout, 'parent done\n');
  assert.equal(r.result.logs_incomplete, true);
  assert.ok(r.elapsedMs < 3000, `took ${r.elapsedMs} ms`);
  assert.deepEqual(h.processesWithMarker(r.marker), []);
});

test('invalid UTF-8 and binary output do not break capture or the result', async () => {
  const r = await run('binary_out.sh');
  assert.equal(r.status, 'completed');
  assert.equal(r.result.stdout, 'ok \uFFFD\uFFFD\uFFFD mid \uFFFD( end\n', 'lossy UTF-8, NUL replaced for JSONB');
  const log = readFileSync(`${artifactsDir}/execution_${r.execution.id}/stdout.log`);
  assert.deepEqual(log, Buffer.from('ok \xff\xfe\x00 mid \xc3\x28 end\n', 'latin1'), 'the log file keeps the raw bytes');
  assert.equal(JSON.parse(JSON.stringify(r.result)).stdout, r.result.stdout);
});

test('50 MB of output: truncated with the notice, log file capped, agent memory bounded', async (t) => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  gc();
  const base = process.memoryUsage();
  let peakLive = 0;
  let peakRss = 0;
  // Sample the memory the agent actually retains (after GC), not garbage awaiting collection.
  const sampler = setInterval(() => {
    gc();
    const m = process.memoryUsage();
    peakLive = Math.max(peakLive, m.arrayBuffers + m.heapUsed - base.arrayBuffers - base.heapUsed);
    peakRss = Math.max(peakRss, m.rss - base.rss);
  }, 10);
  const cap = 1024 * 1024;
  let r;
  try {
    r = await run('big_output.sh', { action: { output_format: 'json' }, cfg: { maxStdoutBytes: cap } });
  } finally {
    clearInterval(sampler);
  }
  const stdout = r.result.stdout as string;
  assert.equal(r.status, 'completed');
  assert.equal(stdout.length, cap - 128 + '\n\n[OUTPUT TRUNCATED: stdout exceeded size limit]\n'.length);
  assert.ok(stdout.endsWith('\n\n[OUTPUT TRUNCATED: stdout exceeded size limit]\n'));
  assert.equal(r.result.stdout_truncated, undefined, 'no truncation fields on success');
  assert.equal(statSync(`${artifactsDir}/execution_${r.execution.id}/stdout.log`).size, stdout.length);
  t.diagnostic(`peak retained ${(peakLive / 1e6).toFixed(1)} MB, peak rss growth ${(peakRss / 1e6).toFixed(1)} MB`);
  assert.ok(peakLive < 16 * 1024 * 1024, `retained memory peaked at ${(peakLive / 1e6).toFixed(1)} MB`);
  assert.ok(peakRss < 40 * 1024 * 1024, `rss grew by ${(peakRss / 1e6).toFixed(1)} MB`);
});

test('truncation fields are reported when the action fails', async () => {
  const r = await run('fail.sh', {
    action: { parameter_format: 'dotenv' }, execution: { config: { lines: 200, code: 2 } }, cfg: { maxStderrBytes: 1024 },
  });
  assert.equal(r.status, 'failed');
  assert.equal(r.result.stderr_truncated, true);
  const full = Array.from({ length: 200 }, (_, i) => `problem line ${i + 1}\n`).join('');
  assert.equal(r.result.stderr_bytes_truncated, full.length - (1024 - 128));
  assert.equal(r.result.error, '[OUTPUT TRUNCATED: stderr exceeded size limit]');
});

test('environment isolation: the agent\'s secrets never reach the action', async () => {
  process.env.DATABASE_URL = 'postgresql://agent:SECRET@db/attune';
  process.env.ATTUNE__DATABASE__URL = 'postgresql://agent:SECRET@db/attune';
  process.env.AMQP_URL = 'amqp://agent:SECRET@mq';
  try {
    const r = await run('env_json.js', { kind: 'node', action: { output_format: 'json' }, execution: { env_vars: { MINE: 'yes' } } });
    assert.equal(r.status, 'completed', JSON.stringify(r.result));
    const { env, cwd } = r.result.data as { env: Record<string, string>; cwd: string };
    assert.equal(cwd, `${h.PACKS_DIR}/${h.PACK}`);
    assert.ok(!JSON.stringify(env).includes('SECRET'));
    const expected = new Set([
      ...Object.keys(h.baseline()), 'EXEC_TEST_MARKER', 'MINE', 'ATTUNE_EXEC_ID', 'ATTUNE_ACTION', 'ATTUNE_API_URL',
      'ATTUNE_ARTIFACTS_DIR', 'ATTUNE_RUNTIME_ENVS_DIR', 'ATTUNE_PACK_REF', 'ATTUNE_PARAMETER_DELIVERY', 'ATTUNE_PARAMETER_FORMAT',
    ]);
    assert.deepEqual(new Set(Object.keys(env)), expected);
    assert.equal(env.ATTUNE_EXEC_ID, String(r.execution.id));
    assert.equal(env.ATTUNE_PACK_REF, 'testpack');
  } finally {
    delete process.env.DATABASE_URL;
    delete process.env.ATTUNE__DATABASE__URL;
    delete process.env.AMQP_URL;
  }
});

test('native action runs the file itself; a non-executable file fails clearly', async () => {
  const ok = await run('native_hello', { kind: 'native', execution: { config: { a: 1 } } });
  assert.equal(ok.result.stdout, 'native: {"a":1}\n');
  const bad = await run('not_executable', { kind: 'native' });
  assert.equal(bad.status, 'failed');
  assert.match(bad.result.error as string, /^Action execution failed: native action testpack\.not_executable: .* is not an executable file/);
});

test('missing action file fails; the entrypoint is never run as a script', async () => {
  const r = await run('touch /tmp/attune-should-not-exist.sh');
  assert.equal(r.status, 'failed');
  assert.match(r.result.error as string, /^Action execution failed: action testpack\.touch \/tmp\/attune-should-not-exist: action file not found/);
  assert.equal(existsSync('/tmp/attune-should-not-exist.sh'), false);
});

test('adhoc inline code runs (temp_file for shell, -c for python)', async () => {
  const sh = await run('read -r line; echo "got $line from $ATTUNE_ACTION"', {
    action: { is_adhoc: true, pack_ref: 'adhoc', ref: 'adhoc.inline' }, execution: { config: { v: 1 } },
  });
  assert.equal(sh.result.stdout, 'got {"v":1} from testpack.x\n');
  const py = await run('import sys; print(sys.stdin.readline().strip()[::-1])', {
    kind: 'python', action: { is_adhoc: true, pack_ref: 'adhoc', ref: 'adhoc.py' }, execution: { config: { v: 1 } },
  });
  assert.equal(py.result.stdout, '}1:"v"{\n');
});

test('no interpreter for the runtime: failed with the detected list', async () => {
  // An image without ruby: the configured binary is missing and nothing detected can stand in.
  const withoutRuby = detected.filter((d) => d.name !== 'ruby');
  const r = await run('echo_params.rb', { extra: { detected: withoutRuby, runtime: { ...h.runtime('shell'), name: 'Ruby', aliases: ['ruby'], execution_config: { interpreter: { binary: '/nonexistent/ruby' } } } } });
  assert.equal(r.status, 'failed');
  assert.match(r.result.error as string, /^Action execution failed: ruby action testpack\.echo_params: no interpreter 'ruby' in this image; detected: shell/);
});

test('bad execution env_vars: preparation failure, nothing started', async () => {
  const r = await run('json_out.sh', { execution: { env_vars: { A: 1 } as unknown as Record<string, string> } });
  assert.equal(r.status, 'failed');
  assert.match(r.result.error as string, /^Failed to prepare execution context: execution \d+: env_vars\.A must be a string, got a number$/);
});

test('the parameter file is mode 0400 during the run and removed afterwards', async () => {
  const r = await run('stat -c "%a" "$ATTUNE_PARAMETER_FILE"; echo "$ATTUNE_PARAMETER_FILE"', {
    action: { is_adhoc: true, pack_ref: 'adhoc', parameter_delivery: 'file' },
  });
  const [mode, path] = (r.result.stdout as string).trim().split('\n');
  assert.equal(mode, '400');
  assert.equal(existsSync(path), false);
});

test('an action that never reads a large stdin payload still completes (broken pipe ignored)', async () => {
  const r = await run('exit 0', { action: { is_adhoc: true, pack_ref: 'adhoc' }, execution: { config: { big: 'x'.repeat(1024 * 1024) } } });
  assert.equal(r.status, 'completed', JSON.stringify(r.result).slice(0, 300));
});

test('runner: spawn errors are typed failures with a clear message', async () => {
  const r = await runProcess({
    argv: ['/nonexistent/interp', 'x'], env: { PATH: '/usr/bin:/bin' }, cwd: null, stdin: null, timeoutMs: 5000,
    killGracePeriodMs: 100, maxStdoutBytes: 1024, maxStderrBytes: 1024,
  });
  assert.equal(r.kind, 'spawn-error');
  assert.equal(r.kind === 'spawn-error' && r.code, 'ENOENT');
  assert.match(r.kind === 'spawn-error' ? r.message : '', /cannot start '\/nonexistent\/interp': no such file or directory/);
  // Through a whole run: an interpreter that is there and executable, but whose own #! interpreter is not.
  const interp = join(h.tempDir('broken-interp'), 'bash');
  writeFileSync(interp, '#!/nonexistent/interp\n', { mode: 0o755 });
  const viaRun = await run('json_out.sh', {
    extra: { runtime: { ...h.runtime('shell'), execution_config: { interpreter: { binary: interp } } } },
  });
  assert.equal(viaRun.status, 'failed');
  assert.equal(viaRun.result.error, `Action execution failed: cannot start '${interp}': no such file or directory (ENOENT) (or the working directory ${h.PACKS_DIR}/${h.PACK} is missing)`);
});

test('runner: output can be mirrored to the agent\'s streams', async () => {
  const mirror = new PassThrough();
  const chunks: Buffer[] = [];
  mirror.on('data', (c: Buffer) => chunks.push(c));
  const r = await runProcess({
    argv: ['/bin/bash', '-c', 'echo mirrored'], env: { PATH: '/usr/bin:/bin' }, cwd: null, stdin: null, timeoutMs: 5000,
    killGracePeriodMs: 100, maxStdoutBytes: 1024, maxStderrBytes: 1024, mirrorStdout: mirror,
  });
  assert.equal(r.kind, 'exited');
  assert.equal(Buffer.concat(chunks).toString(), 'mirrored\n');
});

test('very long timeouts (beyond setTimeout\'s 24.8 days) do not fire at once; pino logger accepted', async () => {
  const r = await run('json_out.sh', {
    execution: { timeout_seconds: 30 * 86400 }, action: { output_format: 'json' },
    extra: { logger: createLogger('silent') },
  });
  assert.equal(r.status, 'completed');
});

test('runner: log file paths that arrive late (a slow allocation) neither lose output nor count as an undrained pipe', async () => {
  const dir = h.tempDir('late-logs');
  try {
    const files = { root: dir, stdout: `${dir}/out.txt`, stderr: `${dir}/err.txt` };
    const late = new Promise<typeof files>((r) => setTimeout(() => r(files), 600));
    const r = await runProcess({
      argv: ['/bin/sh', '-c', 'echo early; echo oops >&2'], env: { PATH: '/usr/bin:/bin' }, cwd: null, stdin: null, timeoutMs: 10_000,
      killGracePeriodMs: 100, maxStdoutBytes: 1024, maxStderrBytes: 1024, logFinalizationTimeoutMs: 100, logFiles: late,
    });
    assert.equal(r.kind, 'exited');
    if (r.kind !== 'exited') return;
    assert.equal(r.logsIncomplete, false, 'the pipes reached EOF at once; only the files waited');
    assert.equal(readFileSync(files.stdout, 'utf8'), 'early\n');
    assert.equal(readFileSync(files.stderr, 'utf8'), 'oops\n');
    assert.deepEqual(r.stdoutLog, { bytes: 6, sha256: createHash('sha256').update('early\n').digest('hex') }, 'hashed as written, for the seal');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('runner: a child that escaped the group (setsid) and holds stdout cannot hang the run', async () => {
  const m = h.marker();
  const r = await runProcess({
    argv: ['/bin/bash', '-c', 'setsid sleep 60 & echo hi'], env: { PATH: '/usr/bin:/bin', ...m.env }, cwd: null, stdin: null,
    timeoutMs: 10_000, killGracePeriodMs: 100, maxStdoutBytes: 1024, maxStderrBytes: 1024, logFinalizationTimeoutMs: 200,
  });
  try {
    assert.equal(r.kind, 'exited');
    assert.equal(r.kind === 'exited' && r.stdout, 'hi\n');
    assert.equal(r.kind === 'exited' && r.logsIncomplete, true);
  } finally {
    // It left our process group on purpose, so the runner cannot reach it: the test cleans up.
    for (const pid of h.processesWithMarker(m.value)) process.kill(pid, 'SIGKILL');
    await waitFor('the escaped sleep to die', () => h.processesWithMarker(m.value).length === 0);
  }
});

test('log files: a remembered directory removed behind the agent is made again; an existing file is truncated, 664', async () => {
  const { ensureSharedDir, openLogFile } = await import('../../../src/execution/log-files.ts');
  const { chmodSync, writeFileSync } = await import('node:fs');
  const dir = `${artifactsDir}/remembered/stdout/log`;
  await ensureSharedDir(artifactsDir, dir);
  rmSync(`${artifactsDir}/remembered`, { recursive: true, force: true });
  await ensureSharedDir(artifactsDir, dir); // remembered: no mkdir
  const fresh = await openLogFile(artifactsDir, `${dir}/v1.txt`);
  await fresh.write('x');
  await fresh.close();
  assert.equal(statSync(`${dir}/v1.txt`).mode & 0o7777, 0o664);
  assert.equal(statSync(dir).mode & 0o7777, 0o2775);
  writeFileSync(`${dir}/v2.txt`, 'old content');
  chmodSync(`${dir}/v2.txt`, 0o600);
  const existing = await openLogFile(artifactsDir, `${dir}/v2.txt`); // this uid's own leftover: reused
  await existing.close();
  assert.equal(readFileSync(`${dir}/v2.txt`, 'utf8'), '');
  assert.equal(statSync(`${dir}/v2.txt`).mode & 0o7777, 0o664);
});
