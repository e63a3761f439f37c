/** The runtime table (src/runtimes.ts): one row per runtime, and the lookups built on it. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NATIVE, RUNTIMES, normalizeRuntimeName, runtimeOfExtension, runtimeSpec } from '../../src/runtimes.ts';

test('alias normalisation like Attune', () => {
  for (const [a, b] of [['python3', 'python'], ['NodeJS', 'node'], ['node.js', 'node'], ['bash', 'shell'], ['sh', 'shell'], ['Rscript', 'r'], ['golang', 'go'], ['openjdk', 'java'], ['perl5', 'perl'], ['rb', 'ruby'], ['builtin', 'native'], ['standalone', 'native'], [' Ruby ', 'ruby'], ['lua', 'lua']]) {
    assert.equal(normalizeRuntimeName(a), b, a);
  }
});

test('the eight runtimes in probe order; each row names itself first and owns its aliases', () => {
  assert.deepEqual(RUNTIMES.map((r) => r.name), ['shell', 'python', 'node', 'ruby', 'go', 'java', 'r', 'perl']);
  for (const r of RUNTIMES) {
    assert.equal(r.aliases[0], r.name);
    for (const a of r.aliases) assert.equal(normalizeRuntimeName(a), r.name, a);
    assert.equal(runtimeSpec(r.name), r);
    assert.ok(r.binaries.length > 0 && r.fileExtension.startsWith('.'), r.name);
  }
  assert.equal(runtimeSpec(NATIVE), undefined, 'native runs the file itself: no row');
});

test('an action file without a runtime row: its runtime by extension, any case', () => {
  for (const [ext, name] of [['.sh', 'shell'], ['.bash', 'shell'], ['.py', 'python'], ['.mjs', 'node'], ['.cjs', 'node'], ['.js', 'node'], ['.rb', 'ruby'], ['.go', 'go'], ['.java', 'java'], ['.R', 'r'], ['.r', 'r'], ['.pl', 'perl'], ['.PY', 'python']]) {
    assert.equal(runtimeOfExtension(ext)?.name, name, ext);
  }
  assert.equal(runtimeOfExtension('.exe'), undefined);
  assert.equal(runtimeOfExtension(''), undefined);
});
