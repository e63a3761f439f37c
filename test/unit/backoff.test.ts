import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Backoff } from '../../src/backoff.ts';

test('ceiling starts at 250 ms, doubles, caps at 30 s; reset starts over', () => {
  const b = new Backoff({ random: () => 0.999999 });
  const delays = Array.from({ length: 10 }, () => Math.round(b.next()));
  assert.deepEqual(delays, [250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
  b.reset();
  assert.equal(Math.round(b.next()), 250);
});

test('full jitter: every delay is within [0, ceiling]', () => {
  const b = new Backoff();
  for (let i = 0; i < 200; i++) {
    const ceiling = b.ceilingMs;
    const d = b.next();
    assert.ok(d >= 0 && d <= ceiling, `${d} within [0, ${ceiling}]`);
  }
});

test('without jitter every delay is the ceiling (the database retries)', () => {
  const b = new Backoff({ initialMs: 1000, maxMs: 5000, jitter: false });
  assert.deepEqual(Array.from({ length: 5 }, () => b.next()), [1000, 2000, 4000, 5000, 5000]);
  b.reset();
  assert.equal(b.next(), 1000);
});
