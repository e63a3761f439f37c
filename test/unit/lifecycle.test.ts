/** Pure lifecycle logic: the PID 1 plan (pid1.ts) and RUST_LOG-style log levels from any source. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { planPid1, INIT_MARKER_ENV, TINI_PATH_ENV } from '../../src/pid1.ts';
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
