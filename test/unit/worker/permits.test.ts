import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Permits } from '../../../src/worker/permits.ts';
import { Cancellations } from '../../../src/worker/cancellations.ts';

test('permits: FIFO hand-over, never more than size in use', async () => {
  const p = new Permits(2);
  await p.acquire();
  await p.acquire();
  assert.equal(p.inUse, 2);
  const order: number[] = [];
  const a = p.acquire().then(() => order.push(1));
  const b = p.acquire().then(() => order.push(2));
  assert.equal(p.waiting, 2);
  p.release();
  await a;
  assert.deepEqual(order, [1]);
  assert.equal(p.inUse, 2);
  p.release();
  await b;
  assert.deepEqual(order, [1, 2]);
  p.release();
  p.release();
  assert.equal(p.inUse, 0);
});

test('permits: an aborted waiter leaves the queue and does not take a permit', async () => {
  const p = new Permits(1);
  await p.acquire();
  const ac = new AbortController();
  const waiting = p.acquire(ac.signal);
  ac.abort('cancel');
  await assert.rejects(waiting, (e) => e === 'cancel');
  assert.equal(p.waiting, 0);
  p.release();
  assert.equal(p.inUse, 0);
});

test('cancellations: a cancel before the dispatch aborts the registration at once', () => {
  const c = new Cancellations();
  assert.equal(c.cancel(7), false);
  assert.equal(c.pendingCount, 1);
  const ac = c.register(7);
  assert.equal(ac.signal.aborted, true);
  assert.equal(ac.signal.reason, 'cancel');
  assert.equal(c.pendingCount, 0);
  const other = c.register(8);
  assert.equal(other.signal.aborted, false);
  assert.equal(c.cancel(8, 'shutdown'), true);
  assert.equal(other.signal.reason, 'shutdown');
});

test('cancellations: pending cancels are bounded by count and age', () => {
  let now = 0;
  const c = new Cancellations({ maxPending: 3, pendingTtlMs: 1000, now: () => now });
  for (let i = 1; i <= 5; i++) c.cancel(i);
  assert.equal(c.pendingCount, 3);
  assert.equal(c.register(1).signal.aborted, false, 'oldest evicted');
  assert.equal(c.register(5).signal.aborted, true);
  now = 5000;
  c.cancel(99);
  assert.equal(c.pendingCount, 1, 'expired entries dropped');
});
