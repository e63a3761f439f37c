import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DEFAULT_MAX_MESSAGE_BYTES, encodeCompletedWithin, jsonBytes, jsonPrefix, jsonStringBytes, shortenResult,
} from '../../../src/protocol/message-size.ts';

const utf8Json = (v: unknown) => Buffer.byteLength(JSON.stringify(v), 'utf8');
const MiB = 1024 * 1024;

describe('JSON sizes', () => {
  const samples = [
    '', 'plain ascii', 'quote " backslash \\ slash /', '\x00\x01\x1f\x7f', '\b\t\n\f\r', 'é ü ß', '€ 中文', '😀 pairs 𝄞',
    'lone \ud800 high', 'lone \udc00 low', 'reversed \udc00\ud800', '\u2028\u2029', 'end high \ud83d',
    Array.from({ length: 512 }, (_, i) => String.fromCharCode(i * 131 % 0xffff)).join(''),
  ];
  test('jsonStringBytes is what JSON.stringify writes, in UTF-8 bytes', () => {
    for (const s of samples) assert.equal(jsonStringBytes(s), utf8Json(s), JSON.stringify(s));
    assert.equal(jsonBytes({ a: [1, 'x\x01'] }), utf8Json({ a: [1, 'x\x01'] }));
  });
  test('jsonPrefix: the longest prefix within the budget, never half a surrogate pair', () => {
    for (const s of samples) {
      for (let max = 0; max <= jsonStringBytes(s); max++) {
        const p = jsonPrefix(s, max);
        assert.ok(s.startsWith(p));
        assert.ok(jsonStringBytes(p) - 2 <= max, `${JSON.stringify(s)} @ ${max}`);
        if (p.length < s.length) {
          const next = s.slice(0, p.length + (/[\ud800-\udbff]/.test(s[p.length]) && /[\udc00-\udfff]/.test(s[p.length + 1] ?? '') ? 2 : 1));
          assert.ok(jsonStringBytes(next) - 2 > max, `not the longest: ${JSON.stringify(s)} @ ${max}`);
        }
        const last = p.charCodeAt(p.length - 1);
        if (last >= 0xd800 && last <= 0xdbff) assert.ok(!(s.charCodeAt(p.length) >= 0xdc00 && s.charCodeAt(p.length) <= 0xdfff), 'pair split');
      }
    }
  });
});

describe('shortenResult', () => {
  test('a result that fits is left alone (null)', () => {
    assert.equal(shortenResult({ succeeded: true, exit_code: 0, stdout: 'hi' }, 1000), null);
  });
  test('10 MiB of control bytes: within budget, the start kept, a notice at the end, the small fields whole', () => {
    const stdout = '\x01'.repeat(10 * MiB);
    const result = { exit_code: 0, duration_ms: 12, succeeded: true, stdout };
    assert.ok(utf8Json(result) > 60 * MiB, 'escaped 6x');
    const budget = 4 * MiB - 1024;
    const out = shortenResult(result, budget)!;
    assert.ok(utf8Json(out) <= budget, `${utf8Json(out)} > ${budget}`);
    assert.ok(utf8Json(out) > budget - 8 * 1024, 'the budget is used, not wasted');
    assert.deepEqual(Object.keys(out), Object.keys(result), 'same keys, same order');
    assert.equal(out.exit_code, 0);
    assert.equal(out.succeeded, true);
    const text = out.stdout as string;
    const kept = text.length - text.slice(text.indexOf('\n[attune-agent:')).length;
    assert.ok(/^\x01+\n\[attune-agent: \d+ characters left out of this message .*full value is in execution\.result\]$/.test(text));
    assert.equal(Number(/: (\d+) characters/.exec(text)![1]), stdout.length - kept, 'the notice counts what is left out');
  });
  test('two long strings share the budget; short ones stay whole', () => {
    const result = { stdout: 'a'.repeat(3 * MiB), error: 'e'.repeat(MiB), stderr_log: '/x/stderr.log' };
    const out = shortenResult(result, MiB)!;
    assert.ok(utf8Json(out) <= MiB);
    assert.equal(out.stderr_log, '/x/stderr.log');
    const a = (out.stdout as string).indexOf('\n['), e = (out.error as string).indexOf('\n[');
    assert.ok(Math.abs(a - e) < 8, `fair shares: ${a} vs ${e}`);
  });
  test('a big parsed value (data) is replaced by a notice when the texts alone cannot make room', () => {
    const data = Array.from({ length: 200_000 }, (_, i) => ({ i, v: 'xxxxxxxx' }));
    const out = shortenResult({ succeeded: true, exit_code: 0, data }, 256 * 1024)!;
    assert.ok(utf8Json(out) <= 256 * 1024);
    assert.match(out.data as string, /^\[attune-agent: value of \d+ bytes left out of this message/);
    assert.equal(out.succeeded, true);
  });
});

describe('encodeCompletedWithin', () => {
  const base = { execution_id: 9, action_id: 3, action_ref: 'p.a', status: 'Completed', completed_at: '2026-03-01T00:00:00Z' };
  test('a normal completion goes out whole, without result_truncated', () => {
    const r = encodeCompletedWithin({ ...base, result: { succeeded: true, stdout: 'ok\n' } }, DEFAULT_MAX_MESSAGE_BYTES);
    assert.equal(r.truncated, false);
    const payload = JSON.parse(r.msg.body.toString('utf8')).payload;
    assert.deepEqual(payload, { ...base, result: { succeeded: true, stdout: 'ok\n' } });
  });
  test('10 MiB of \\x01 on stdout: under the cap, result_truncated: true, valid JSON', () => {
    const r = encodeCompletedWithin({ ...base, result: { exit_code: 0, succeeded: true, stdout: '\x01'.repeat(10 * MiB) } }, DEFAULT_MAX_MESSAGE_BYTES);
    assert.equal(r.truncated, true);
    assert.ok(r.msg.body.length <= DEFAULT_MAX_MESSAGE_BYTES, `${r.msg.body.length}`);
    const env = JSON.parse(r.msg.body.toString('utf8'));
    assert.equal(env.message_type, 'ExecutionCompleted');
    assert.equal(env.payload.result_truncated, true);
    assert.deepEqual(Object.keys(env.payload), ['execution_id', 'action_id', 'action_ref', 'status', 'result', 'completed_at', 'result_truncated']);
    assert.match(env.payload.result.stdout, /left out of this message/);
    assert.ok(r.truncated && r.fullBytes > 60 * MiB);
  });
  test('a result that is no object (a huge string) is shortened too; tiny caps still give a message within the cap', () => {
    const r = encodeCompletedWithin({ ...base, result: 'z'.repeat(MiB) }, 64 * 1024);
    assert.ok(r.msg.body.length <= 64 * 1024);
    assert.match(JSON.parse(r.msg.body.toString('utf8')).payload.result, /^z+\n\[attune-agent:/);
    const tiny = encodeCompletedWithin({ ...base, result: { stdout: 'q'.repeat(MiB), error: 'w'.repeat(MiB) } }, 2048);
    assert.ok(tiny.msg.body.length <= 2048, `${tiny.msg.body.length}`);
    assert.equal(JSON.parse(tiny.msg.body.toString('utf8')).payload.result_truncated, true);
  });
});

test('jsonBytes measures nested values, arrays, dates and left-out fields as JSON.stringify writes them', () => {
  const values: unknown[] = [
    { a: 1, b: undefined, c: [1, undefined, () => 1, 'x\x02'], d: { e: null, f: new Date(0) }, g: true },
    [], {}, [[]], { '': '' }, { 'k"\x01': 'é' }, Object.create(null), 1.5e300, -0, null,
  ];
  for (const v of values) assert.equal(jsonBytes(v), utf8Json(v), JSON.stringify(v));
});
