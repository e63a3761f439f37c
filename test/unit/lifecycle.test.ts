/** Pure lifecycle logic: the PID 1 plan (native/pid1.ts) and RUST_LOG-style log levels from any source. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { planPid1, INIT_MARKER_ENV, TINI_PATH_ENV } from '../../src/native/pid1.ts';
import { loadRawConfig } from '../../src/config/load.ts';
import { compileConfig } from '../../src/config/compile.ts';
import { exitCodeForSignal } from '../../src/exit-codes.ts';

const EXE = '/opt/attune/agent/attune-agent';
const facts = (o: Partial<Parameters<typeof planPid1>[0]> = {}) => ({
  pid: 1, execPath: EXE, argv: ['--name', 'w1'], env: { PATH: '/bin' }, exists: (p: string) => p === '/opt/attune/agent/tini-static', ...o,
});

test('PID 1 with tini-static beside the executable: re-exec under tini -s -g with the marker', () => {
  const p = planPid1(facts());
  assert.equal(p.kind, 'exec');
  if (p.kind !== 'exec') return;
  assert.equal(p.file, '/opt/attune/agent/tini-static');
  assert.deepEqual(p.args, ['/opt/attune/agent/tini-static', '-s', '-g', '--', EXE, '--name', 'w1']);
  assert.equal(p.env[INIT_MARKER_ENV], 'tini');
  assert.equal(p.env.PATH, '/bin', 'the rest of the environment is kept');
});

test('not PID 1: nothing to do; marker present: no loop, a warning', () => {
  assert.deepEqual(planPid1(facts({ pid: 7 })), { kind: 'none' });
  const p = planPid1(facts({ env: { [INIT_MARKER_ENV]: 'tini' } }));
  assert.equal(p.kind, 'warn');
});

test('tini missing, explicit path, or disabled', () => {
  const missing = planPid1(facts({ exists: () => false }));
  assert.equal(missing.kind, 'warn');
  assert.match(missing.kind === 'warn' ? missing.message : '', /zombies/);
  const explicit = planPid1(facts({ env: { [TINI_PATH_ENV]: '/usr/bin/tini-static' }, exists: (p) => p === '/usr/bin/tini-static' }));
  assert.equal(explicit.kind === 'exec' && explicit.file, '/usr/bin/tini-static');
  assert.equal(planPid1(facts({ env: { [TINI_PATH_ENV]: 'off' } })).kind, 'warn');
});

test('log.level accepts RUST_LOG-style values from ATTUNE__LOG__LEVEL too', () => {
  const level = (env: Record<string, string>) => compileConfig(loadRawConfig({ env, cwd: '/cfg', flags: {}, readFile: () => undefined })).log.level;
  assert.equal(level({ ATTUNE__LOG__LEVEL: 'attune_worker=debug,info' }), 'info');
  assert.equal(level({ ATTUNE__LOG__LEVEL: 'attune_worker=debug' }), 'debug');
  assert.equal(level({ ATTUNE__LOG__LEVEL: 'WARN' }), 'warn');
  assert.equal(level({ RUST_LOG: 'info,attune=trace' }), 'info');
});

test('exit codes for signals are 128+n', () => {
  assert.equal(exitCodeForSignal('SIGTERM'), 143);
  assert.equal(exitCodeForSignal('SIGINT'), 130);
});

test('metrics: counters, histogram and scrape-time gauges in Prometheus text', async () => {
  const { createMetrics } = await import('../../src/observe/metrics.ts');
  const m = await createMetrics();
  m.watch({ running: () => 2, permitsTotal: () => 10, draining: () => false, heartbeatAgeSeconds: () => undefined });
  m.executionFinished({ status: 'completed', runtime: 'shell', durationMs: 30, stdoutTruncated: true });
  m.executionFinished({ status: 'failed', runtime: 'shell', durationMs: 2000 });
  m.executionFinished({ status: 'skipped' });
  m.brokerReconnected();
  const { body, contentType } = await m.render();
  assert.match(contentType, /^text\/plain/);
  for (const line of [
    'attune_agent_executions_total{runtime="shell",status="completed"} 1',
    'attune_agent_executions_total{runtime="shell",status="failed"} 1',
    'attune_agent_executions_total{runtime="unknown",status="skipped"} 1',
    'attune_agent_execution_duration_seconds_bucket{le="0.05",runtime="shell",status="completed"} 1',
    'attune_agent_execution_duration_seconds_count{runtime="shell",status="failed"} 1',
    'attune_agent_output_truncations_total{stream="stdout"} 1',
    'attune_agent_output_truncations_total{stream="stderr"} 0',
    'attune_agent_broker_reconnects_total 1',
    'attune_agent_executions_running 2',
    'attune_agent_permits_total 10',
    'attune_agent_draining 0',
  ]) assert.ok(body.split('\n').includes(line), `missing: ${line}`);
  assert.ok(body.split('\n').includes('attune_agent_heartbeat_age_seconds 0'), 'unknown values are 0');
});

test('output mirror: one log line per output line, split across chunks, long lines cut, tail flushed', async () => {
  const { outputMirror } = await import('../../src/observe/logger.ts');
  const lines: { obj: object; msg?: string }[] = [];
  const w = outputMirror({ info: (obj, msg) => lines.push({ obj, msg }) }, 'stderr', { maxLine: 8, idleMs: 20 });
  const buf = Buffer.from('héllo\r\nwor');
  w.write(buf.subarray(0, 2)); // splits the é
  w.write(buf.subarray(2));
  buf.fill(0); // the runner reuses its buffer: already consumed
  w.write(Buffer.from('ld\n0123456789ab'));
  assert.deepEqual(lines.map((l) => l.msg), ['héllo', 'world', '01234567']);
  await new Promise((r) => setTimeout(r, 60));
  assert.deepEqual(lines.map((l) => l.msg), ['héllo', 'world', '01234567', '89ab']);
  assert.deepEqual(lines[0].obj, { stream: 'stderr' });
});
