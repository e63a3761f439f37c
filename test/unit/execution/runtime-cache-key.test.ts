import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { attunePlatform, runtimeCacheKey, SHA256_OF_NOTHING, usizeBytesOf, workerImageFormat } from '../../../src/execution/runtime-cache-key.ts';

/*
 * Expected keys derived by hand from Attune's RuntimeCacheKey::new (attune_common runtime_cache.rs):
 * for each of ["1", release, dependency, runtime, version, platform, image_format] in that order,
 * feed SHA-256 the value's UTF-8 byte length as 8 bytes little-endian (usize::to_le_bytes on a
 * 64-bit target; 4 bytes on a 32-bit one), then the bytes; the key is the lowercase hex digest.
 * E.g. "1" → 01 00 00 00 00 00 00 00 31, a 64-hex digest → 40 00 00 00 00 00 00 00 + 64 bytes.
 * Computed outside this code base twice, with the same results:
 *   python3: h=sha256(); for v in vals: h.update(struct.pack('<Q', len(v.encode()))); h.update(v.encode())
 *   shell:   for v in …; do printf "\x$(printf %02x ${#v})\x00\x00\x00\x00\x00\x00\x00"; printf %s "$v"; done | sha256sum
 */
const A = 'a'.repeat(64);
const B = 'b'.repeat(64);

test('runtimeCacheKey: the hand-derived keys of Attune\'s algorithm', () => {
  const base = { releaseDigest: A, dependencyDigest: B, runtimeName: 'python', runtimeVersion: '3.12', workerImageFormat: '0.6.0' };
  assert.equal(runtimeCacheKey({ ...base, platform: 'linux:x86_64:musl' }), '452f835c061cea142176420740632de6806b0c469886e59268610015c55afcdc');
  assert.equal(runtimeCacheKey({ ...base, platform: 'linux:aarch64:musl' }), '8a772edb0b6157dc82732299d5526d32e8ef47d80c26ef9ebf1ea6ca6f18669d');
  // Upstream's own test inputs (image format "worker-v1"), a glibc build.
  assert.equal(runtimeCacheKey({ ...base, platform: 'linux:x86_64:gnu', workerImageFormat: 'worker-v1' }), '62593c8858f03daa0a617f885feb7161af36d9c0f2212f38d75996e5d1390ca1');
  // A 32-bit target: 4-byte length prefixes (struct.pack('<I', …)).
  assert.equal(runtimeCacheKey({ ...base, platform: 'linux:arm:musl', usizeBytes: 4 }), '21c6f15e1379558b35debaa6ac8a83f42b5eb789a711617167c9d7d35d62012e');
  // A real manifest: requirements.txt "requests==2.31.0\n" (sha256 1d277ef3…883f), no version chosen.
  const req = createHash('sha256').update('requests==2.31.0\n').digest('hex');
  assert.equal(req, '1d277ef3981a3e49b02912a0f03fe1ab563539d7e4e1b5c1e6404a57b19d883f');
  assert.equal(runtimeCacheKey({ releaseDigest: '0123456789abcdef'.repeat(4), dependencyDigest: req, runtimeName: 'python', runtimeVersion: 'default', platform: 'linux:x86_64:musl', workerImageFormat: '0.6.0' }),
    'bfbae73f094823477edbcb043f4cd7a18769bf0c3913f41507e28064f233454b');
  assert.equal(SHA256_OF_NOTHING, createHash('sha256').update('').digest('hex'));
});

test('runtimeCacheKey: a digest that is not lowercase SHA-256 hex gives no key (Attune falls back to the legacy layout)', () => {
  const ok = { releaseDigest: A, dependencyDigest: B, runtimeName: 'python', runtimeVersion: 'default', platform: 'linux:x86_64:musl', workerImageFormat: '0.6.0' };
  assert.ok(runtimeCacheKey(ok));
  assert.equal(runtimeCacheKey({ ...ok, releaseDigest: A.toUpperCase() }), null);
  assert.equal(runtimeCacheKey({ ...ok, releaseDigest: `sha256:${A}` }), null);
  assert.equal(runtimeCacheKey({ ...ok, dependencyDigest: B.slice(1) }), null);
});

test('platform and image format as Attune\'s shipped worker computes them', () => {
  assert.equal(attunePlatform('linux', 'x64'), 'linux:x86_64:musl');
  assert.equal(attunePlatform('linux', 'arm64'), 'linux:aarch64:musl');
  assert.equal(attunePlatform('linux', 'x64', 'gnu'), 'linux:x86_64:gnu');
  assert.equal(usizeBytesOf('x64'), 8);
  assert.equal(usizeBytesOf('arm64'), 8);
  assert.equal(workerImageFormat({}), '0.6.0');
  assert.equal(workerImageFormat({ ATTUNE_WORKER_IMAGE_FORMAT_VERSION: 'img-7' }), 'img-7');
  assert.equal(workerImageFormat({ ATTUNE_WORKER_IMAGE_FORMAT_VERSION: '' }), '', 'set but empty is used as it is, as std::env::var');
});
