/**
 * Idle memory trimming (src/worker/idle-trim.ts): when it fires, and that the addon's
 * releaseMemory() really gives pages back while the process goes on working (a separate Node
 * process, so this test runner's own memory does not blur the figures).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { IdleTrimmer } from '../../src/worker/idle-trim.ts';
import { releaseIdleMemory } from '../../src/native/memory.ts';

test('the trimmer fires once per idle period (file pages only the first time), never while an execution runs, and not after stop', async () => {
  let idle = true;
  let trims = 0;
  const filePages: boolean[] = [];
  const t = new IdleTrimmer({ isIdle: () => idle, trim: (f) => (trims++, filePages.push(f), 0), idleMs: 30 });
  t.touch();
  t.touch(); // a burst: one timer
  await sleep(80);
  assert.equal(trims, 1);
  await sleep(60);
  assert.equal(trims, 1, 'once per idle period, not periodically');
  idle = false;
  t.touch();
  await sleep(80);
  assert.equal(trims, 1, 'an execution still runs: nothing is trimmed');
  idle = true;
  t.touch(); // its end
  await sleep(80);
  assert.equal(trims, 2);
  t.stop();
  t.touch();
  await sleep(80);
  assert.equal(trims, 2, 'stopped: touches are ignored');
  assert.deepEqual(filePages, [true, false], 'start-up pages once; later only the heaps');
});

test('releaseMemory (the addon) drops clean file pages and freed heap; the process keeps working', () => {
  const script = `
    import { releaseIdleMemory } from ${JSON.stringify(new URL('../../src/native/memory.ts', import.meta.url).pathname)};
    import { createHash } from 'node:crypto';
    import { execFileSync } from 'node:child_process';
    const rss = () => process.memoryUsage().rss;
    const junk = []; for (let i = 0; i < 200_000; i++) junk.push({ i, s: 'x'.repeat(50) }); junk.length = 0;
    new Intl.DateTimeFormat('de').format(new Date());
    const before = rss();
    const released = releaseIdleMemory(true);
    const after = rss();
    const works = createHash('sha256').update('abc').digest('hex').slice(0, 8) + ' ' + execFileSync('/bin/echo', ['ok']).toString().trim() + ' ' + new Intl.DateTimeFormat('fr').format(new Date(0));
    console.log(JSON.stringify({ before, after, released, works }));`;
  const out = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' })) as { before: number; after: number; released: number; works: string };
  const mb = (b: number) => (b / 1048576).toFixed(1);
  assert.ok(out.released > 10 * 1048576, `released ${mb(out.released)} MB of file pages (the addon in dist/lib; npm run build makes it)`);
  assert.ok(out.after < out.before - 10 * 1048576, `RSS ${mb(out.before)} → ${mb(out.after)} MB`);
  assert.equal(out.works, 'ba7816bf ok 01/01/1970');
});

test('releaseIdleMemory is safe to call in this very process, again and again', () => {
  for (let i = 0; i < 3; i++) assert.ok(releaseIdleMemory(i === 0) >= 0);
  assert.equal(releaseIdleMemory(false), 0, 'without file pages nothing is dropped from mappings');
  assert.equal(JSON.stringify({ a: [1, 2] }), '{"a":[1,2]}');
});
