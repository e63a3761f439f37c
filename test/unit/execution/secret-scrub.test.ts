/** Secret scrubbing of action output (src/execution/secret-scrub.ts): forms, overlaps, chunk boundaries. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { REDACTED_TEXT as R, SecretScrubber, StreamScrubber, secretPatterns } from '../../../src/execution/secret-scrub.ts';

test('patterns: the text, its JSON-escaped forms (JS and Python json.dumps), leaves and compact JSON of objects', () => {
  assert.deepEqual(secretPatterns(['pw"x\\y']), ['pw\\"x\\\\y', 'pw"x\\y']);
  assert.deepEqual(secretPatterns(['pässwörd']), ['p\\u00e4ssw\\u00f6rd', 'pässwörd']);
  const obj = secretPatterns([{ user: 'admin-user', pin: 123456, nested: ['deep-secret'] }]);
  for (const p of ['admin-user', '123456', 'deep-secret', '{"user":"admin-user","pin":123456,"nested":["deep-secret"]}']) assert.ok(obj.includes(p), p);
  assert.ok(obj.includes('{\\"user\\":\\"admin-user\\",\\"pin\\":123456,\\"nested\\":[\\"deep-secret\\"]}'), 'the compact JSON as a JSON string');
});

test('patterns: too short to hide (every "1" of the output would go), booleans and null are never patterns', () => {
  assert.deepEqual(secretPatterns(['abc', 12, true, false, null, '']), []);
  assert.deepEqual(secretPatterns(['abcd']), ['abcd']);
});

test('text: every occurrence replaced; overlapping secrets replaced as one span (no part survives)', () => {
  const s = new SecretScrubber(secretPatterns(['xxab', 'abyyyy', 'hunter2']));
  assert.equal(s.text('a hunter2 b hunter2'), `a ${R} b ${R}`);
  assert.equal(s.text('<xxabyyyy>'), `<${R}>`, 'the union of both occurrences, not xxab then "yyyy" in clear');
  assert.equal(s.text('nothing here'), 'nothing here');
  assert.equal(new SecretScrubber([]).text('hunter2'), 'hunter2');
});

test('deep: every string of a JSON value, keys and non-strings untouched; __proto__ stays data', () => {
  const s = new SecretScrubber(secretPatterns(['hunter2']));
  const v = JSON.parse('{"a":"x hunter2","b":[1,"hunter2",{"hunter2":true}],"__proto__":{"c":"hunter2"}}');
  const out = s.deep(v) as Record<string, unknown>;
  assert.deepEqual(JSON.parse(JSON.stringify(out)), JSON.parse(`{"a":"x ${R}","b":[1,"${R}",{"hunter2":true}],"__proto__":{"c":"${R}"}}`));
  assert.equal(Object.getPrototypeOf(out), Object.prototype);
});

/** Feed `input` to a stream scrubber cut at the given offsets; what comes out, concatenated. */
function streamed(patterns: string[], input: Buffer, cuts: number[]): string {
  const s = new StreamScrubber(patterns);
  const out: Buffer[] = [];
  let prev = 0;
  for (const c of [...cuts, input.length]) {
    out.push(s.write(input.subarray(prev, c)));
    prev = c;
  }
  out.push(s.end());
  return Buffer.concat(out).toString('utf8');
}

test('stream: a secret split across reads at every possible point is caught (multi-byte UTF-8 too)', () => {
  const patterns = secretPatterns(['hunter2-pässwörd', 'tok']);
  const input = Buffer.from('start hunter2-pässwörd middle "hunter2-p\\u00e4ssw\\u00f6rd" end hunter2-pässwörd');
  const expected = `start ${R} middle "${R}" end ${R}`;
  for (let a = 0; a <= input.length; a++) {
    assert.equal(streamed(patterns, input, [a]), expected, `one cut at ${a}`);
    for (let b = a; b <= Math.min(input.length, a + 20); b++) assert.equal(streamed(patterns, input, [a, b]), expected, `cuts at ${a}, ${b}`);
  }
});

test('stream: byte by byte, overlapping and adjacent secrets, a secret at the very end, and no secrets at all', () => {
  const patterns = secretPatterns(['xxab', 'abyyyy']);
  const input = Buffer.from('1 xxabyyyy 2 xxabxxab 3 abyyyy');
  const every = Array.from({ length: input.length - 1 }, (_, i) => i + 1);
  assert.equal(streamed(patterns, input, every), `1 ${R} 2 ${R} 3 ${R}`);
  assert.equal(streamed(patterns, input, []), `1 ${R} 2 ${R} 3 ${R}`);
  assert.equal(streamed([], input, [5]), input.toString(), 'no patterns: bytes pass through');
});

test('stream: the caller may reuse its chunk buffer right after write()', () => {
  const s = new StreamScrubber(secretPatterns(['hunter2']));
  const buf = Buffer.from('abc hunte');
  const first = s.write(buf);
  buf.fill(0x41);
  const rest = Buffer.concat([first, s.write(Buffer.from('r2 def')), s.end()]).toString();
  assert.equal(rest, `abc ${R} def`);
});
