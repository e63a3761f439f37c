/**
 * Attune's cleanup_stale_pack_test_attempts, at start (worker/pack-tests.ts): numeric attempt
 * directories older than an install may live (7 h) are removed; anything else stays. Real files.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, lutimesSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { cleanupStalePackTestAttempts, PACK_INSTALL_ACTIVE_TTL_MS } from '../../../src/worker/pack-tests.ts';

test('stale numeric attempt directories go; fresh ones, other names, files and links stay', () => {
  const root = mkdtempSync(join(tmpdir(), 'attune-attempts-'));
  try {
    const now = Date.now();
    const old = new Date(now - PACK_INSTALL_ACTIVE_TTL_MS - 60_000);
    const target = mkdtempSync(join(tmpdir(), 'attune-attempts-target-'));
    for (const d of ['12', '13', 'notanumber']) mkdirSync(join(root, d, 'python'), { recursive: true });
    writeFileSync(join(root, '14'), 'a file');
    symlinkSync(target, join(root, '15'));
    for (const name of ['12', 'notanumber', '14']) utimesSync(join(root, name), old, old);
    lutimesSync(join(root, '15'), old, old);
    const removed = cleanupStalePackTestAttempts(root, now, pino({ level: 'silent' }));
    assert.deepEqual(removed, [join(root, '12')]);
    assert.deepEqual(['12', '13', 'notanumber', '14', '15'].map((n) => existsSync(join(root, n))), [false, true, true, true, true]);
    assert.ok(existsSync(target), 'a link is never followed');
    rmSync(target, { recursive: true, force: true });
    assert.deepEqual(cleanupStalePackTestAttempts(join(root, 'missing'), now, pino({ level: 'silent' })), [], 'no directory: nothing to do');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
