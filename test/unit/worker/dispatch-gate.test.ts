import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { databaseGate, dispatchHoldMs, MAX_DISPATCH_HOLD_MS } from '../../../src/worker/dispatch-gate.ts';
import type { DbAvailability } from '../../../src/db/pool.ts';

/** An availability that stays down and records how long each hold may last. */
function downForever() {
  const holds: number[] = [];
  const a = { down: true, waitUp: async (ms: number) => (holds.push(ms), false) } as unknown as DbAvailability;
  return { a, holds };
}

test('the hold is min(max(window, 1 s), 240 s): requeued before the 300 s queue TTL', () => {
  assert.equal(dispatchHoldMs(300_000), MAX_DISPATCH_HOLD_MS);
  assert.equal(MAX_DISPATCH_HOLD_MS, 240_000);
  assert.equal(dispatchHoldMs(0), 1_000);
  assert.equal(dispatchHoldMs(60_000), 60_000);
});

test('the hold counts from the delivery: a prefetched dispatch that already waited behind another is requeued at once', async () => {
  const { a, holds } = downForever();
  const gate = databaseGate(a, 300_000, () => true, pino({ level: 'silent' }));
  const now = Date.now();
  assert.equal(await gate(1, now), false);
  assert.ok(holds[0] > 239_000 && holds[0] <= 240_000, `fresh delivery held up to 240 s (${holds[0]})`);
  assert.equal(await gate(2, now - 200_000), false);
  assert.ok(holds[1] > 39_000 && holds[1] <= 40_000, `held only what is left of its 240 s (${holds[1]})`);
  assert.equal(await gate(3, now - 400_000), false);
  assert.equal(holds[2], 0, 'past its 240 s: not held');
});

test('a database that is up admits at once', async () => {
  const gate = databaseGate({ down: false } as unknown as DbAvailability, 300_000, () => true, pino({ level: 'silent' }));
  assert.equal(await gate(1, Date.now() - 1_000_000), true);
});
