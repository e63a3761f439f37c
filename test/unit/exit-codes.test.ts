import { test } from 'node:test';
import assert from 'node:assert/strict';
import { exitCodeForSignal } from '../../src/exit-codes.ts';

test('exit codes for signals are 128+n', () => {
  assert.equal(exitCodeForSignal('SIGTERM'), 143);
  assert.equal(exitCodeForSignal('SIGINT'), 130);
});
