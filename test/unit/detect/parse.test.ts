import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseVersion } from '../../../src/detect/parse.ts';

test('semver-like versions from real interpreter outputs', () => {
  assert.equal(parseVersion('Python 3.12.1\n', 'semver'), '3.12.1');
  assert.equal(parseVersion('v20.11.0\n', 'semver'), '20.11.0');
  assert.equal(parseVersion('go version go1.22.0 linux/amd64\n', 'semver'), '1.22.0');
  assert.equal(parseVersion('ruby 3.3.0 (2023-12-25 revision 5124f9ac75) [x86_64-linux]\n', 'semver'), '3.3.0');
  assert.equal(parseVersion('GNU bash, version 5.2.15(1)-release (x86_64-pc-linux-gnu)\n', 'semver'), '5.2.15');
  assert.equal(parseVersion('\nThis is perl 5, version 36, subversion 0 (v5.36.0) built for x86_64-linux-gnu-thread-multi\n', 'semver'), '5.36.0');
  assert.equal(parseVersion('Rscript (R) version 4.2.2 (2022-10-31)\n', 'semver'), '4.2.2');
  assert.equal(parseVersion('Python 3.12\n', 'semver'), '3.12');
  assert.equal(parseVersion('no digits here', 'semver'), null);
  assert.equal(parseVersion('', 'semver'), null);
});

test('java-style versions, falling back to semver-like', () => {
  assert.equal(parseVersion('openjdk version "17.0.15" 2025-04-15\nOpenJDK Runtime Environment', 'java'), '17.0.15');
  assert.equal(parseVersion('java version "1.8.0_392"\n', 'java'), '1.8.0_392');
  assert.equal(parseVersion('openjdk 21.0.2 2024-01-16\n', 'java'), '21.0.2');
});
