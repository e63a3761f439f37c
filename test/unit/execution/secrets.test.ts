/** Secret values: Attune's AES-256-GCM JSON format, key hash, schema paths, redaction and restore. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createDecipheriv, createHash } from 'node:crypto';
import {
  decryptJson, encryptJson, hashEncryptionKey, prepareSecretValues, redactPaths, redactionMarker, restoreSecretValues, secretPathsFromSchema,
} from '../../../src/execution/secrets.ts';

const KEY = 'this_is_a_test_key_that_is_32_chars_long!!!!';

test('ciphertext layout is BASE64(nonce(12) ‖ ciphertext ‖ tag(16)) of the compact JSON, key = SHA-256(key string)', () => {
  const value = { user: 'admin', password: 's3cret', port: 5432 };
  const enc = encryptJson(value, KEY);
  const raw = Buffer.from(enc, 'base64');
  const plaintext = JSON.stringify(value);
  assert.equal(raw.length, 12 + Buffer.byteLength(plaintext) + 16);
  // Opened by hand, without decryptJson: proves the layout, not just a round trip.
  const d = createDecipheriv('aes-256-gcm', createHash('sha256').update(KEY).digest(), raw.subarray(0, 12));
  d.setAuthTag(raw.subarray(raw.length - 16));
  assert.equal(Buffer.concat([d.update(raw.subarray(12, raw.length - 16)), d.final()]).toString('utf8'), plaintext);
  assert.deepEqual(decryptJson(enc, KEY), value);
  assert.notEqual(encryptJson(value, KEY), enc, 'random nonce per encryption');
});

test('decrypt refuses a wrong key, a short key, a non-string and damaged data', () => {
  const enc = encryptJson('secret', KEY);
  assert.throws(() => decryptJson(enc, 'wrong_key_that_is_also_32_chars_long!!!'), /Decryption failed/);
  assert.throws(() => decryptJson(enc, 'short'), /at least 32 characters/);
  assert.throws(() => decryptJson(42, KEY), /must be a string/);
  assert.throws(() => decryptJson(Buffer.from('short').toString('base64'), KEY), /too short/);
});

test('key hash is the hex SHA-256 of the key string', () => {
  assert.equal(hashEncryptionKey(KEY), createHash('sha256').update(KEY).digest('hex'));
  assert.equal(hashEncryptionKey(KEY).length, 64);
});

test('secret paths: flat Attune schemas and JSON-Schema properties, nested, escaped', () => {
  assert.deepEqual(secretPathsFromSchema({ username: { type: 'string' }, password: { type: 'string', secret: true } }), ['/password']);
  assert.deepEqual(secretPathsFromSchema({
    type: 'object',
    properties: { token: { type: 'string', secret: true }, nested: { type: 'object', properties: { 'a/b': { secret: true }, plain: {} } } },
  }), ['/nested/a~1b', '/token']);
  assert.deepEqual(secretPathsFromSchema(null), []);
  assert.deepEqual(secretPathsFromSchema({ secret: true, properties: {} }), [], 'the root itself is never a path');
});

test('redact takes present values only and leaves the input untouched; restore puts them back', () => {
  const data = { token: 'abc', nested: { 'a/b': [1, 2] }, keep: 1 };
  const { redacted, taken } = redactPaths(data, ['/token', '/nested/a~1b', '/missing']);
  assert.deepEqual(redacted, { token: redactionMarker(), nested: { 'a/b': redactionMarker() }, keep: 1 });
  assert.deepEqual(taken, [{ json_path: '/token', value: 'abc' }, { json_path: '/nested/a~1b', value: [1, 2] }]);
  assert.equal(data.token, 'abc', 'input not mutated');
  const prepared = prepareSecretValues(taken, KEY, 'parameter_schema');
  assert.equal(prepared[0].encryption_key_hash, hashEncryptionKey(KEY));
  assert.equal(prepared[0].source_ref, '/token');
  const stored = prepared.map((p) => ({ json_path: p.json_path, encrypted_value: p.encrypted_value, encryption_key_hash: p.encryption_key_hash }));
  assert.deepEqual(restoreSecretValues(redacted, stored, KEY), data);
});

test('restore: missing objects are created like Attune does; a stored key hash that differs is refused', () => {
  const stored = [{ json_path: '/auth/password', encrypted_value: encryptJson('pw', KEY), encryption_key_hash: null }];
  assert.deepEqual(restoreSecretValues({ user: 'u' }, stored, KEY), { user: 'u', auth: { password: 'pw' } });
  const foreign = [{ json_path: '/p', encrypted_value: encryptJson('x', KEY), encryption_key_hash: 'f'.repeat(64) }];
  assert.throws(() => restoreSecretValues({}, foreign, KEY), /key hash mismatch for secret path '\/p'/);
});
