/** Topology ordering and failure policy, with a fake amqplib connection (the broker side is in test/integration/mq/topology.test.ts). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type { ChannelModel } from 'amqplib';
import { assertCommonTopology, assertWorkerQueues, TopologyError, workerQueueSpecs } from '../../../src/mq/topology.ts';
import { captureLogger } from '../../helpers/amqp.ts';

function fakeModel(failOn: (op: string) => boolean) {
  const calls: string[] = [];
  let channels = 0;
  const model = {
    async createChannel() {
      const n = ++channels;
      const ch = Object.assign(new EventEmitter(), {
        async assertExchange(name: string, type: string) {
          calls.push(`#${n} exchange ${name} ${type}`);
          if (failOn(`exchange ${name}`)) throw Object.assign(new Error(`406 for ${name}`), { code: 406 });
        },
        async assertQueue(name: string, opts: { arguments?: Record<string, { value: unknown }> }) {
          calls.push(`#${n} queue ${name} ${JSON.stringify(opts.arguments ?? {})}`);
          if (failOn(`queue ${name}`)) throw Object.assign(new Error(`PRECONDITION_FAILED for ${name}`), { code: 406 });
        },
        async bindQueue(q: string, x: string, key: string) {
          calls.push(`#${n} bind ${q} ${x} ${key}`);
        },
        async close() {},
      });
      return ch;
    },
  };
  return { model: model as unknown as ChannelModel, calls, channels: () => channels };
}

test('common topology: a failed step is logged and skipped, the rest runs on a fresh channel', async () => {
  const { model, calls, channels } = fakeModel((op) => op === 'exchange attune.metadata');
  const { logger, lines } = captureLogger();
  await assertCommonTopology(model, logger);
  assert.deepEqual(
    calls.map((c) => c.replace(/^#\d+ /, '').replace(/ \{.*$/, '')),
    [
      'exchange attune.events topic',
      'exchange attune.executions topic',
      'exchange attune.notifications fanout',
      'exchange attune.metadata topic',
      'exchange attune.dlx direct',
      'queue attune.dlx.queue',
      'bind attune.dlx.queue attune.dlx #',
    ],
  );
  assert.equal(channels(), 2, 'a new channel after the failure');
  assert.ok(lines.some((l) => l.level === 'warn' && /could not declare exchange attune\.metadata \(topic\): 406 for attune\.metadata — continuing/.test(l.msg)));
});

test('worker queues: failure is fatal and names the queue; executions carries the TTL', async () => {
  const { model, calls } = fakeModel((op) => op === 'queue worker.9.cancel');
  await assert.rejects(assertWorkerQueues(model, 9, captureLogger().logger), (e: Error) => e instanceof TopologyError && /worker\.9\.cancel already exists with different settings/.test(e.message));
  assert.equal(calls[0], '#1 queue worker.9.executions {"x-dead-letter-exchange":{"!":"string","value":"attune.dlx"},"x-message-ttl":{"!":"int","value":300000}}');
  assert.equal(calls[1], '#1 bind worker.9.executions attune.executions execution.dispatch.worker.9');
  assert.equal(calls[2], '#1 queue worker.9.cancel {"x-dead-letter-exchange":{"!":"string","value":"attune.dlx"}}');
});

test('pack queues only on request, bound like Attune binds them', () => {
  assert.deepEqual(workerQueueSpecs(3).map((s) => s.name), ['worker.3.executions', 'worker.3.cancel']);
  const all = workerQueueSpecs(3, { includePackQueues: true });
  assert.deepEqual(all.map((s) => s.name), ['worker.3.executions', 'worker.3.cancel', 'worker.3.packs', 'worker.3.packtests']);
  assert.deepEqual(all[2].bindings, [
    { exchange: 'attune.events', key: 'pack.registered' },
    { exchange: 'attune.events', key: 'pack.deleted' },
  ]);
  assert.deepEqual(all[3].bindings, [{ exchange: 'attune.executions', key: 'pack.test.dispatch.worker.3' }]);
});
