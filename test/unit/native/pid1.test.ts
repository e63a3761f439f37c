/** The PID 1 plan (native/pid1.ts), pure: re-exec under tini, or say why not. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { planPid1, INIT_MARKER_ENV, TINI_PATH_ENV } from '../../../src/native/pid1.ts';

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
