import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import {
  ALL_EXCHANGES,
  DLX_ONLY_QUEUE_ARGUMENTS,
  DLX_QUEUE,
  DLX_QUEUE_BINDING_KEY,
  EXECUTIONS_QUEUE_ARGUMENTS,
  MESSAGE_ROUTES,
  cancelBindingKey,
  cancelConsumerTag,
  cancelQueue,
  dispatchBindingKey,
  executionsConsumerTag,
  executionsPrefetch,
  executionsQueue,
  isMessageType,
  packTestBindingKey,
  packTestsQueue,
  packsQueue,
  routeFor,
} from '../../../src/protocol/names.ts';

// amqplib's field-table encoder (not in its export map, so loaded by path) — what goes on the wire.
const require = createRequire(import.meta.url);
const codec = require(join(dirname(require.resolve('amqplib')), 'lib/codec.js')) as { encodeTable(buf: Buffer, val: object, offset: number): number };
function wire(table: object): Buffer {
  const buf = Buffer.alloc(1024);
  // amqplib builds queue arguments as Object.create(options.arguments): encode the same shape.
  const n = codec.encodeTable(buf, Object.create(table), 0);
  return buf.subarray(0, n);
}

/** The bytes lapin writes for a FieldTable (BTreeMap: keys sorted), built by hand from the AMQP 0-9-1 errata. */
function lapinTable(entries: Array<[string, 'S', string] | [string, 'I', number]>): Buffer {
  const parts: Buffer[] = [];
  for (const [key, tag, value] of [...entries].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
    parts.push(Buffer.from([Buffer.byteLength(key)]), Buffer.from(key), Buffer.from(tag));
    if (tag === 'S') {
      const len = Buffer.alloc(4);
      len.writeUInt32BE(Buffer.byteLength(value as string));
      parts.push(len, Buffer.from(value as string));
    } else {
      const v = Buffer.alloc(4);
      v.writeInt32BE(value as number);
      parts.push(v);
    }
  }
  const body = Buffer.concat(parts);
  const size = Buffer.alloc(4);
  size.writeUInt32BE(body.length);
  return Buffer.concat([size, body]);
}

describe('queue arguments are byte-identical to lapin', () => {
  test('worker.{id}.executions: x-dead-letter-exchange longstr + x-message-ttl signed 32-bit', () => {
    const expected = lapinTable([
      ['x-dead-letter-exchange', 'S', 'attune.dlx'],
      ['x-message-ttl', 'I', 300000],
    ]);
    assert.deepEqual(wire(EXECUTIONS_QUEUE_ARGUMENTS), expected);
    assert.equal(wire(EXECUTIONS_QUEUE_ARGUMENTS).toString('hex'), expected.toString('hex'));
  });

  test('worker.{id}.cancel/.packs/.packtests: x-dead-letter-exchange only', () => {
    assert.deepEqual(wire(DLX_ONLY_QUEUE_ARGUMENTS), lapinTable([['x-dead-letter-exchange', 'S', 'attune.dlx']]));
  });

  test('the TTL keeps its 32-bit type even if the value were small (amqplib would guess a byte)', () => {
    // A plain JS number 100 would be encoded as tag `b`; the pinned type makes it `I`.
    const small = wire({ x: { '!': 'int', value: 100 } });
    assert.equal(String.fromCharCode(small[4 + 1 + 1]), 'I');
  });

  test('frozen, so nothing can change them at run time', () => {
    assert.ok(Object.isFrozen(EXECUTIONS_QUEUE_ARGUMENTS));
    assert.ok(Object.isFrozen(DLX_ONLY_QUEUE_ARGUMENTS));
  });
});

describe('names', () => {
  test('per-worker queues, binding keys and consumer tags', () => {
    assert.equal(executionsQueue(17), 'worker.17.executions');
    assert.equal(cancelQueue(17), 'worker.17.cancel');
    assert.equal(packsQueue(17), 'worker.17.packs');
    assert.equal(packTestsQueue(17), 'worker.17.packtests');
    assert.equal(dispatchBindingKey(17), 'execution.dispatch.worker.17');
    assert.equal(cancelBindingKey(17), 'execution.cancel.worker.17');
    assert.equal(packTestBindingKey(17), 'pack.test.dispatch.worker.17');
    assert.equal(executionsConsumerTag(17), 'worker-17');
    assert.equal(cancelConsumerTag(17), 'worker-17-cancel');
  });

  test('prefetch: max_concurrent_tasks + 2, as a u16', () => {
    assert.equal(executionsPrefetch(10), 12);
    assert.equal(executionsPrefetch(1), 3);
    assert.equal(executionsPrefetch(70000), 65535);
  });

  test('exchanges and the dead-letter queue', () => {
    assert.deepEqual(
      ALL_EXCHANGES.map((e) => `${e.name}:${e.type}`),
      ['attune.events:topic', 'attune.executions:topic', 'attune.notifications:fanout', 'attune.metadata:topic', 'attune.dlx:direct'],
    );
    assert.equal(DLX_QUEUE, 'attune.dlx.queue');
    assert.equal(DLX_QUEUE_BINDING_KEY, '#');
  });

  test('routes from message_type (docs/attune-compat.md §4.6 table)', () => {
    assert.deepEqual(routeFor('ExecutionStatusChanged'), { exchange: 'attune.executions', routingKey: 'execution.status.changed' });
    assert.deepEqual(routeFor('ExecutionCompleted'), { exchange: 'attune.executions', routingKey: 'execution.completed' });
    assert.deepEqual(routeFor('ExecutionRequested'), { exchange: 'attune.executions', routingKey: 'execution.requested' });
    assert.deepEqual(routeFor('ExecutionCancelRequested'), { exchange: 'attune.executions', routingKey: 'execution.cancel' });
    assert.deepEqual(routeFor('NotificationCreated'), { exchange: 'attune.notifications', routingKey: 'notification.created' });
    assert.deepEqual(routeFor('PackRegistered'), { exchange: 'attune.events', routingKey: 'pack.registered' });
    assert.deepEqual(routeFor('IdentityAuthorizationChanged'), { exchange: 'attune.metadata', routingKey: 'metadata.identity_authorization.changed' });
    assert.equal(Object.keys(MESSAGE_ROUTES).length, 22);
  });

  test('message types are case-sensitive and prototype names are not types', () => {
    assert.equal(isMessageType('ExecutionRequested'), true);
    assert.equal(isMessageType('executionRequested'), false);
    assert.equal(isMessageType('toString'), false);
    assert.equal(isMessageType('__proto__'), false);
    assert.equal(isMessageType(1), false);
  });
});
