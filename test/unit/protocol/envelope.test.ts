import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  createEnvelope,
  decodeEnvelope,
  decodeMessage,
  encodeEnvelope,
  formatTimestamp,
  isRfc3339,
  parseUuid,
  serializeEnvelope,
  type Decoded,
} from '../../../src/protocol/envelope.ts';
import { decodeExecutionCancelRequested, decodeExecutionRequested } from '../../../src/protocol/messages.ts';

const FIXTURES = join(import.meta.dirname, '../../fixtures/messages');
const fixture = (f: string): Buffer => readFileSync(join(FIXTURES, f));
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

const DECODERS: Record<string, (p: unknown) => Decoded<unknown>> = {
  'execution-requested': decodeExecutionRequested,
  cancel: decodeExecutionCancelRequested,
};

describe('fixtures (test/fixtures/messages/cases.json)', () => {
  const { cases } = JSON.parse(fixture('cases.json').toString()) as { cases: Array<{ file: string; decoder: string; ok: boolean; error?: string }> };
  for (const c of cases) {
    test(`${c.file} as ${c.decoder} → ${c.ok ? 'ok' : `error "${c.error}"`}`, () => {
      const r = decodeMessage(fixture(c.file), DECODERS[c.decoder]);
      if (c.ok) {
        assert.equal(r.ok, true, r.ok ? '' : r.error);
      } else {
        assert.equal(r.ok, false, 'expected an error');
        if (!r.ok) assert.ok(r.error.includes(c.error!), `error "${r.error}" should contain "${c.error}"`);
      }
    });
  }
});

describe('decodeEnvelope', () => {
  test('the executor dispatch: fields, extra headers kept, unknown payload fields ignored', () => {
    const r = decodeMessage(fixture('execution-requested.json'), decodeExecutionRequested);
    assert.ok(r.ok);
    const e = r.value;
    assert.equal(e.message_id, '6f1c2f8e-3c1a-4c55-9d2b-8f0e5b7a9c01');
    assert.equal(e.correlation_id, e.message_id);
    assert.equal(e.message_type, 'ExecutionRequested');
    assert.equal(e.version, '1.0');
    assert.equal(e.timestamp, '2026-03-01T12:34:56.789012345Z');
    assert.deepEqual(e.headers, { retry_count: 0, source_service: 'executor', trace_id: '0b5f7a1e-8d44-4f6e-a1c2-3d4e5f607182', tenant: 'acme' });
    assert.deepEqual(e.payload, {
      execution_id: 4242,
      action_ref: 'core.echo',
      worker_id: 17,
      release_id: 9,
      release_digest: '3b4c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c',
    });
  });

  test('missing/null ids get fresh UUIDs (each its own); defaults for version and headers', () => {
    let n = 0;
    const newId = () => `00000000-0000-4000-8000-00000000000${++n}`;
    const r = decodeEnvelope(fixture('execution-requested-minimal.json'), { newId });
    assert.ok(r.ok);
    assert.equal(r.value.message_id, '00000000-0000-4000-8000-000000000001');
    assert.equal(r.value.correlation_id, '00000000-0000-4000-8000-000000000002');
    assert.equal(r.value.version, '1.0');
    assert.deepEqual(r.value.headers, { retry_count: 0 });

    const nulls = decodeMessage(fixture('execution-requested-null-ids.json'), decodeExecutionRequested);
    assert.ok(nulls.ok);
    assert.match(nulls.value.message_id, UUID);
    assert.match(nulls.value.correlation_id, UUID);
    assert.notEqual(nulls.value.message_id, nulls.value.correlation_id);
    assert.equal(nulls.value.payload.release_id, null);
    assert.equal(nulls.value.payload.release_digest, null);
  });

  test('UUID forms the Rust uuid crate accepts are normalised', () => {
    const r = decodeEnvelope(fixture('execution-requested-uuid-forms.json'));
    assert.ok(r.ok);
    assert.equal(r.value.message_id, '6f1c2f8e-3c1a-4c55-9d2b-8f0e5b7a9c01');
    assert.equal(r.value.correlation_id, '6f1c2f8e-3c1a-4c55-9d2b-8f0e5b7a9c02');
    assert.equal(r.value.headers.trace_id, '0b5f7a1e-8d44-4f6e-a1c2-3d4e5f607182');
    assert.equal(parseUuid('6f1c2f8e-3c1a-4c55-9d2b-8f0e5b7a9c0'), null);
    assert.equal(parseUuid('6f1c2f8e-3c1a-4c55-9d2b-8f0e5b7a9c0g'), null);
    assert.equal(parseUuid(''), null);
  });

  test('__proto__ keys are dropped everywhere and nothing is polluted', () => {
    const r = decodeMessage(fixture('hostile/proto-pollution.json'), decodeExecutionRequested);
    assert.ok(r.ok, r.ok ? '' : r.error);
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    assert.equal(Object.getPrototypeOf(r.value.headers), Object.prototype);
    assert.equal(Object.hasOwn(r.value.headers, '__proto__'), false);
    assert.equal((r.value.headers as Record<string, unknown>).polluted, undefined);
    assert.equal(r.value.headers.hasOwnProperty, 'shadow'); // kept as data, harmless
    assert.equal(r.value.payload.execution_id, 1);
    const env = decodeEnvelope(fixture('hostile/proto-pollution.json'));
    assert.ok(env.ok);
    assert.equal(Object.hasOwn(env.value.payload as object, '__proto__'), false);
    assert.equal(Object.getPrototypeOf(env.value.payload), Object.prototype);
  });

  test('bodies over maxBytes are refused before parsing', () => {
    const big = Buffer.alloc(40 * 1024 * 1024, 0x20);
    const r = decodeEnvelope(big);
    assert.equal(r.ok, false);
    assert.match(!r.ok ? r.error : '', /more than the 33554432 accepted/);
    const small = decodeEnvelope(fixture('execution-requested.json'), { maxBytes: 100 });
    assert.equal(small.ok, false);
  });

  test('nesting limit: 127 levels accepted, 128 refused (serde_json recursion limit)', () => {
    const nest = (levels: number) => `{"message_type":"ExecutionRequested","timestamp":"2026-03-01T12:34:56Z","payload":${'['.repeat(levels - 1)}${']'.repeat(levels - 1)}}`;
    assert.equal(decodeEnvelope(nest(127)).ok, true);
    assert.equal(decodeEnvelope(nest(128)).ok, false);
    // Brackets inside strings do not count.
    const inString = `{"message_type":"ExecutionRequested","timestamp":"2026-03-01T12:34:56Z","payload":{"s":"${'[{'.repeat(5000)}\\"]"}}`;
    assert.equal(decodeEnvelope(inString).ok, true);
  });

  test('accepts string input and Uint8Array; rejects other types without throwing', () => {
    const text = fixture('cancel-requested.json').toString();
    assert.equal(decodeEnvelope(text).ok, true);
    assert.equal(decodeEnvelope(new Uint8Array(fixture('cancel-requested.json'))).ok, true);
    assert.equal(decodeEnvelope(42 as unknown as string).ok, false);
    assert.equal(decodeEnvelope(null as unknown as string).ok, false);
  });

  test('a payload decoder that throws becomes an error result', () => {
    const r = decodeMessage(fixture('cancel-requested.json'), () => {
      throw new Error('boom');
    });
    assert.equal(r.ok, false);
    assert.match(!r.ok ? r.error : '', /payload decoder failed: boom/);
  });

  test('errors name the message type and id once the envelope is readable', () => {
    const r = decodeMessage(fixture('cancel-requested.json'), decodeExecutionRequested);
    assert.equal(r.ok, false);
    assert.match(!r.ok ? r.error : '', /invalid ExecutionCancelRequested payload \(message_id 9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d\): field "action_ref" is missing/);
  });
});

describe('timestamps', () => {
  test('RFC 3339 validation', () => {
    for (const ok of ['2026-03-01T12:34:56Z', '2026-03-01T12:34:56.123456789Z', '2026-03-01 12:34:56+02:00', '2024-02-29T00:00:00-05:30', '2026-03-01t12:34:56z']) {
      assert.equal(isRfc3339(ok), true, ok);
    }
    for (const bad of ['2026-03-01', '2026-03-01T12:34:56', '2025-02-29T00:00:00Z', '2026-03-01T24:00:00Z', '2026-03-01T12:34:56.1234567890Z', '2026-03-01T12:34:56+25:00', 'x', 20260301]) {
      assert.equal(isRfc3339(bad), false, String(bad));
    }
  });

  test('formatTimestamp writes what chrono writes (no .000)', () => {
    assert.equal(formatTimestamp(new Date('2026-03-01T12:34:56.000Z')), '2026-03-01T12:34:56Z');
    assert.equal(formatTimestamp(new Date('2026-03-01T12:34:56.120Z')), '2026-03-01T12:34:56.120Z');
  });
});

describe('encode', () => {
  const now = new Date('2026-03-01T12:34:56.789Z');
  const newId = () => '11111111-2222-4333-8444-555555555555';

  test('new envelope: correlation_id = message_id, version 1.0, source_service, serde field order', () => {
    const msg = encodeEnvelope('ExecutionStatusChanged', { execution_id: 1, action_ref: 'core.echo', previous_status: 'scheduled', new_status: 'running', changed_at: '2026-03-01T12:34:56.789Z' }, { sourceService: 'worker', now, newId });
    assert.equal(
      msg.body.toString(),
      '{"message_id":"11111111-2222-4333-8444-555555555555","correlation_id":"11111111-2222-4333-8444-555555555555",' +
        '"message_type":"ExecutionStatusChanged","version":"1.0","timestamp":"2026-03-01T12:34:56.789Z",' +
        '"headers":{"retry_count":0,"source_service":"worker"},' +
        '"payload":{"execution_id":1,"action_ref":"core.echo","previous_status":"scheduled","new_status":"running","changed_at":"2026-03-01T12:34:56.789Z"}}',
    );
    assert.equal(msg.exchange, 'attune.executions');
    assert.equal(msg.routingKey, 'execution.status.changed');
    assert.equal(msg.messageId, '11111111-2222-4333-8444-555555555555');
    assert.equal(msg.correlationId, msg.messageId);
    assert.equal(msg.timestampSec, Math.floor(now.getTime() / 1000));
  });

  test('headers: no source_service/trace_id keys when unset; extra headers after the named ones', () => {
    const env = createEnvelope('ExecutionCompleted', {}, { now, newId });
    assert.equal(JSON.parse(serializeEnvelope(env).toString()).headers.source_service, undefined);
    env.headers = { extra: 1, retry_count: 2, trace_id: 'abc' };
    assert.equal(JSON.stringify(JSON.parse(serializeEnvelope(env).toString()).headers), '{"retry_count":2,"trace_id":"abc","extra":1}');
  });

  test('an explicit correlation id is kept', () => {
    const msg = encodeEnvelope('ExecutionCompleted', {}, { correlationId: 'c0ffee00-0000-4000-8000-000000000000' });
    assert.equal(msg.correlationId, 'c0ffee00-0000-4000-8000-000000000000');
    assert.notEqual(msg.messageId, msg.correlationId);
  });

  test('round trip: what we encode, we decode', () => {
    const msg = encodeEnvelope('ExecutionCancelRequested', { execution_id: 5, worker_id: 6 }, { sourceService: 'worker' });
    const r = decodeMessage(msg.body, decodeExecutionCancelRequested);
    assert.ok(r.ok);
    assert.equal(r.value.message_id, msg.messageId);
    assert.deepEqual(r.value.payload, { execution_id: 5, worker_id: 6 });
    assert.equal(r.value.headers.source_service, 'worker');
  });
});

describe('fuzz: the decoder never throws', () => {
  // Small deterministic PRNG (mulberry32) so a failure is reproducible.
  function prng(seed: number): () => number {
    let a = seed >>> 0;
    return () => {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }
  const seeds = ['execution-requested.json', 'cancel-requested.json', 'execution-requested-null-ids.json', 'hostile/proto-pollution.json'].map(fixture);
  const TOKENS = ['{', '}', '[', ']', '"', ':', ',', '\\', '\\u0000', '__proto__', 'null', '1e999', '-0', '9007199254740993', '\u2028', '\xff', '"payload"', '"timestamp"'];

  test('5000 mutated bodies (bit flips, truncation, splices, token insertion)', () => {
    const rnd = prng(0xa77e);
    let okCount = 0;
    for (let i = 0; i < 5000; i++) {
      const base = Buffer.from(seeds[i % seeds.length]);
      const mutated = mutate(base, rnd);
      let r: Decoded<unknown> | undefined;
      assert.doesNotThrow(() => {
        r = decodeMessage(mutated, i % 2 ? decodeExecutionRequested : decodeExecutionCancelRequested);
      }, `iteration ${i}: ${mutated.toString('hex').slice(0, 200)}`);
      assert.ok(r && typeof r.ok === 'boolean');
      if (r!.ok) okCount++;
      else assert.equal(typeof (r as { error: string }).error, 'string');
    }
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    assert.ok(okCount > 0 && okCount < 5000, `some mutations should still decode (${okCount})`);
  });

  test('random JSON values as envelopes and payloads', () => {
    const rnd = prng(7);
    for (let i = 0; i < 2000; i++) {
      const v = randomJson(rnd, 0);
      const env = { message_type: 'ExecutionRequested', timestamp: '2026-03-01T12:34:56Z', payload: v };
      assert.doesNotThrow(() => decodeMessage(JSON.stringify(env), decodeExecutionRequested));
      assert.doesNotThrow(() => decodeMessage(JSON.stringify(v) ?? 'null', decodeExecutionCancelRequested));
    }
  });

  function mutate(b: Buffer, rnd: () => number): Buffer {
    let out = b;
    const ops = 1 + Math.floor(rnd() * 4);
    for (let k = 0; k < ops; k++) {
      const pos = Math.floor(rnd() * Math.max(out.length, 1));
      switch (Math.floor(rnd() * 5)) {
        case 0: // flip a bit
          out = Buffer.from(out);
          if (out.length) out[pos] ^= 1 << Math.floor(rnd() * 8);
          break;
        case 1: // truncate
          out = out.subarray(0, pos);
          break;
        case 2: // insert a token
          out = Buffer.concat([out.subarray(0, pos), Buffer.from(TOKENS[Math.floor(rnd() * TOKENS.length)], 'latin1'), out.subarray(pos)]);
          break;
        case 3: // delete a span
          out = Buffer.concat([out.subarray(0, pos), out.subarray(pos + 1 + Math.floor(rnd() * 8))]);
          break;
        default: // duplicate a span
          out = Buffer.concat([out.subarray(0, pos), out.subarray(pos, pos + 16), out.subarray(pos)]);
      }
    }
    return out;
  }

  function randomJson(rnd: () => number, depth: number): unknown {
    const r = rnd();
    if (depth > 4 || r < 0.3) {
      const leaves = [null, true, false, 0, -1, 1.5, 2 ** 53, -(2 ** 63), 1e308, '', 'x', '__proto__', '2026-03-01T12:34:56Z'];
      return leaves[Math.floor(rnd() * leaves.length)];
    }
    if (r < 0.6) return Array.from({ length: Math.floor(rnd() * 4) }, () => randomJson(rnd, depth + 1));
    const keys = ['execution_id', 'action_ref', 'worker_id', 'release_id', 'release_digest', '__proto__', 'constructor', 'k'];
    const o: Record<string, unknown> = {};
    for (let i = 0; i < Math.floor(rnd() * 6); i++) Object.defineProperty(o, keys[Math.floor(rnd() * keys.length)], { value: randomJson(rnd, depth + 1), enumerable: true, configurable: true, writable: true });
    return o;
  }
});
