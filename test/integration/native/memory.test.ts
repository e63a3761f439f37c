/**
 * The idle memory release (src/native/memory.ts through the addon's releaseMemory()): it really
 * gives pages back while the process goes on working (a separate Node process, so this test
 * runner's own memory does not blur the figures). When it runs: test/unit/worker/idle-trim.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { releaseIdleMemory } from '../../../src/native/memory.ts';

test('releaseMemory (the addon) drops clean file pages and freed heap; the process keeps working', () => {
  const script = `
    import { releaseIdleMemory } from ${JSON.stringify(new URL('../../../src/native/memory.ts', import.meta.url).pathname)};
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
  const first = releaseIdleMemory(true);
  assert.ok(first > 1048576, `the test runner's own clean file pages were dropped (${first} bytes; the addon in dist/lib: npm run build makes it)`);
  for (let i = 0; i < 3; i++) {
    releaseIdleMemory(true);
    // Code and data dropped from this process fault back in from the page cache: it keeps working.
    assert.equal(createHash('sha256').update(`run ${i}`).digest('hex').length, 64);
    assert.equal(JSON.stringify({ a: [i] }), `{"a":[${i}]}`);
  }
  assert.equal(releaseIdleMemory(false), 0, 'without file pages nothing is dropped from mappings');
});
