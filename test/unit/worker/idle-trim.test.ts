/** When the idle trimmer (worker/idle-trim.ts) gives memory back: its timers on a mocked clock, so nothing waits. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { IdleTrimmer } from '../../../src/worker/idle-trim.ts';

test('the trimmer fires once per idle period (file pages only the first time), never while an execution runs, and not after stop', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  let idle = true;
  const filePages: boolean[] = [];
  const trimmer = new IdleTrimmer({ isIdle: () => idle, trim: (f) => (filePages.push(f), 0), idleMs: 30 });
  trimmer.touch();
  t.mock.timers.tick(20);
  trimmer.touch(); // a burst: the timer starts over
  t.mock.timers.tick(29);
  assert.deepEqual(filePages, [], 'not before idleMs after the last activity');
  t.mock.timers.tick(1);
  assert.deepEqual(filePages, [true], 'start-up pages the first time');
  t.mock.timers.tick(10_000);
  assert.deepEqual(filePages, [true], 'once per idle period, not periodically');
  idle = false;
  trimmer.touch();
  t.mock.timers.tick(30);
  assert.deepEqual(filePages, [true], 'an execution still runs: nothing is trimmed');
  idle = true;
  trimmer.touch(); // its end
  t.mock.timers.tick(30);
  assert.deepEqual(filePages, [true, false], 'later idle periods: only the heaps');
  trimmer.stop();
  trimmer.touch();
  t.mock.timers.tick(10_000);
  assert.deepEqual(filePages, [true, false], 'stopped: touches are ignored');
});
