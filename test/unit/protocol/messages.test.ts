import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  completedPayload,
  completionStatusName,
  decodeExecutionCancelRequested,
  decodeExecutionRequested,
  statusChangedPayload,
} from '../../../src/protocol/messages.ts';

describe('payload decoders', () => {
  test('ExecutionRequested: required ints/strings, optional release fields default to null', () => {
    assert.deepEqual(decodeExecutionRequested({ execution_id: 1, action_ref: 'a.b', worker_id: 2 }), {
      ok: true,
      value: { execution_id: 1, action_ref: 'a.b', worker_id: 2, release_id: null, release_digest: null },
    });
    const r = decodeExecutionRequested({ execution_id: 1, action_ref: 'a.b', worker_id: 2, release_id: 3, release_digest: 'd', config: { x: 1 }, action_id: null });
    assert.ok(r.ok);
    assert.deepEqual(r.value, { execution_id: 1, action_ref: 'a.b', worker_id: 2, release_id: 3, release_digest: 'd' });
  });

  test('ExecutionRequested: wrong types and unsafe integers are errors', () => {
    const bad: Array<[unknown, RegExp]> = [
      [{ execution_id: 2 ** 53, action_ref: 'a', worker_id: 1 }, /execution_id/],
      [{ execution_id: -(2 ** 53), action_ref: 'a', worker_id: 1 }, /execution_id/],
      [{ execution_id: 1, action_ref: null, worker_id: 1 }, /"action_ref" is null/],
      [{ execution_id: 1, action_ref: 'a', worker_id: true }, /"worker_id" must be an integer id, got true/],
      [{ execution_id: NaN, action_ref: 'a', worker_id: 1 }, /execution_id/],
      ['x', /payload must be an object/],
    ];
    for (const [p, re] of bad) {
      const r = decodeExecutionRequested(p);
      assert.equal(r.ok, false, JSON.stringify(p));
      assert.match(!r.ok ? r.error : '', re);
    }
  });

  test('ExecutionCancelRequested', () => {
    assert.deepEqual(decodeExecutionCancelRequested({ execution_id: 5, worker_id: 6, extra: 1 }), { ok: true, value: { execution_id: 5, worker_id: 6 } });
    assert.equal(decodeExecutionCancelRequested({ execution_id: 5 }).ok, false);
    assert.equal(decodeExecutionCancelRequested({ execution_id: '5', worker_id: 6 }).ok, false);
  });

  test('inherited properties are not fields', () => {
    const proto = { execution_id: 1, action_ref: 'a', worker_id: 2 };
    assert.equal(decodeExecutionRequested(Object.create(proto)).ok, false);
  });
});

describe('payload builders', () => {
  test('ExecutionStatusChanged: Attune field order, unknown statuses become "unknown"', () => {
    const p = statusChangedPayload({ execution_id: 1, action_ref: 'core.echo', previous_status: 'scheduled', new_status: 'running', changed_at: new Date('2026-03-01T00:00:00Z') });
    assert.equal(JSON.stringify(p), '{"execution_id":1,"action_ref":"core.echo","previous_status":"scheduled","new_status":"running","changed_at":"2026-03-01T00:00:00Z"}');
    for (const s of ['running', 'completed', 'failed', 'canceling', 'cancelled', 'timeout']) {
      assert.equal(statusChangedPayload({ execution_id: 1, action_ref: 'a', previous_status: 'running', new_status: s }).new_status, s);
    }
    assert.equal(statusChangedPayload({ execution_id: 1, action_ref: 'a', previous_status: 'running', new_status: 'abandoned' }).new_status, 'unknown');
  });

  test('changed_at strings: RFC 3339 kept, .000Z shortened like chrono; junk refused', () => {
    assert.equal(statusChangedPayload({ execution_id: 1, action_ref: 'a', previous_status: 'x', new_status: 'running', changed_at: '2026-03-01T00:00:00.000Z' }).changed_at, '2026-03-01T00:00:00Z');
    assert.equal(statusChangedPayload({ execution_id: 1, action_ref: 'a', previous_status: 'x', new_status: 'running', changed_at: '2026-03-01T00:00:00.250Z' }).changed_at, '2026-03-01T00:00:00.250Z');
    assert.throws(() => statusChangedPayload({ execution_id: 1, action_ref: 'a', previous_status: 'x', new_status: 'running', changed_at: 'yesterday' }), /RFC 3339/);
  });

  test('ExecutionCompleted: capitalised status (the real outcome), result null when absent', () => {
    const p = completedPayload({ execution_id: 1, action_id: 2, action_ref: 'core.echo', status: 'timeout', result: undefined, completed_at: new Date('2026-03-01T00:00:01.5Z') });
    assert.equal(JSON.stringify(p), '{"execution_id":1,"action_id":2,"action_ref":"core.echo","status":"Timeout","result":null,"completed_at":"2026-03-01T00:00:01.500Z"}');
    assert.equal(completionStatusName('completed'), 'Completed');
    assert.equal(completionStatusName('failed'), 'Failed');
    assert.equal(completionStatusName('cancelled'), 'Cancelled');
    assert.equal(completionStatusName('Completed'), 'Completed');
    const withResult = completedPayload({ execution_id: 1, action_id: 2, action_ref: 'a', status: 'failed', result: { succeeded: false, error: 'x' } });
    assert.deepEqual(withResult.result, { succeeded: false, error: 'x' });
  });
});
