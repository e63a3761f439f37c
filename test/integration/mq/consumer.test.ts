/**
 * The consumer against a real RabbitMQ: decoding failures are dropped (not requeued) without
 * stalling the queue, dispositions reach the broker, cancel() stops deliveries but keeps acks
 * possible, and prefetch bounds what is handed over.
 */
import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChannelModel } from 'amqplib';
import { MqConnection } from '../../../src/mq/connection.ts';
import { QueueConsumer, type Disposition } from '../../../src/mq/consumer.ts';
import { workerTopologySetup } from '../../../src/mq/topology.ts';
import { createCancelConsumer, createExecutionsConsumer } from '../../../src/mq/worker-consumers.ts';
import { decodeExecutionRequested, type ExecutionRequested } from '../../../src/protocol/messages.ts';
import { AMQP_URL, attuneEnvelope, captureLogger, connectTest, deleteWorkerQueues, publishExecutionCancelRequested, publishExecutionRequested, publishRaw, queueDepth, randomWorkerId } from '../../helpers/amqp.ts';
import { waitFor } from '../../helpers/wait.ts';

let model: ChannelModel;
const cleanups: Array<() => Promise<void>> = [];

before(async () => {
  model = await connectTest('mq-consumer-test');
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
after(async () => {
  await model.close();
});

/** An agent-side connection with the worker topology, closed and cleaned after the test. */
async function agent(workerId: number) {
  const log = captureLogger();
  const conn = new MqConnection({ url: AMQP_URL, logger: log.logger, connectionName: `mq-consumer-${workerId}` });
  conn.addSetup(workerTopologySetup(workerId, log.logger));
  await conn.start();
  cleanups.push(async () => {
    await conn.close();
    await deleteWorkerQueues(model, workerId);
  });
  return { conn, ...log };
}

describe('executions consumer', () => {
  test('a malformed message followed by a good one: the good one is handled, the bad one dropped (not requeued)', async () => {
    const id = randomWorkerId();
    const { conn, logger, lines } = await agent(id);
    const handled: ExecutionRequested[] = [];
    const consumer = createExecutionsConsumer(conn, id, 10, (p) => {
      handled.push(p);
      return 'ack';
    }, logger);
    cleanups.push(() => consumer.close());
    await consumer.start();

    await publishRaw(model, `execution.dispatch.worker.${id}`, Buffer.from('{"message_type":"ExecutionRequested", this is not json'));
    await publishRaw(model, `execution.dispatch.worker.${id}`, Buffer.from([0xff, 0xfe, 0x00]));
    await publishExecutionRequested(model, id, { execution_id: 77, action_ref: 'core.echo', release_id: 3, release_digest: 'abc' });

    await waitFor('the good dispatch to be handled', () => handled.length === 1);
    assert.deepEqual(handled[0], { execution_id: 77, action_ref: 'core.echo', worker_id: id, release_id: 3, release_digest: 'abc' });
    await waitFor('settlements', () => consumer.stats.acked === 1 && consumer.stats.dropped === 2);
    assert.equal(consumer.stats.undecodable, 2);
    const warnings = lines.filter((l) => l.level === 'warn' && l.msg.startsWith('dropping undecodable message'));
    assert.equal(warnings.length, 2);
    assert.match(warnings[0].msg, /not JSON/);
    assert.match(warnings[1].msg, /not valid UTF-8/);
    assert.equal(warnings[0].queue, `worker.${id}.executions`);

    await consumer.close();
    assert.equal(await queueDepth(model, `worker.${id}.executions`), 0, 'nothing requeued');
    assert.equal(consumer.stats.delivered, 3, 'no redelivery of the dropped ones');
  });

  test('nack-requeue brings the message back with redelivered=true; a throwing handler drops it', async () => {
    const id = randomWorkerId();
    const { conn, logger, lines } = await agent(id);
    const seen: Array<{ id: number; redelivered: boolean }> = [];
    const consumer = createExecutionsConsumer(conn, id, 1, (p, _env, d) => {
      seen.push({ id: p.execution_id, redelivered: d.redelivered });
      if (p.execution_id === 1 && !d.redelivered) return 'nack-requeue';
      if (p.execution_id === 2) throw new Error('handler bug');
      return 'ack';
    }, logger);
    cleanups.push(() => consumer.close());
    await consumer.start();
    await publishExecutionRequested(model, id, { execution_id: 1, action_ref: 'a.b' });
    await waitFor('the requeued dispatch to come back', () => seen.some((s) => s.id === 1 && s.redelivered));
    await publishExecutionRequested(model, id, { execution_id: 2, action_ref: 'a.b' });
    await waitFor('the throwing handler to drop its message', () => consumer.stats.dropped === 1);
    assert.ok(lines.some((l) => l.level === 'error' && /handler failed/.test(l.msg)));
    assert.deepEqual(consumer.stats, { delivered: 3, acked: 1, requeued: 1, dropped: 1, undecodable: 0, lostSettlements: 0, discarded: 0 });
  });

  test('handled one at a time, in order; prefetch (max_concurrent_tasks + 2) bounds the deliveries', async () => {
    const id = randomWorkerId();
    const { conn, logger } = await agent(id);
    const order: number[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let active = 0;
    let maxActive = 0;
    const consumer = createExecutionsConsumer(conn, id, 1, async (p): Promise<Disposition> => {
      active++;
      maxActive = Math.max(maxActive, active);
      order.push(p.execution_id);
      if (p.execution_id === 1) await gate; // like waiting for an execution permit
      active--;
      return 'ack';
    }, logger);
    cleanups.push(() => consumer.close());
    await consumer.start();
    for (let i = 1; i <= 6; i++) await publishExecutionRequested(model, id, { execution_id: i, action_ref: 'a.b' });
    // prefetch = 1 + 2 = 3: three delivered, three still in the queue while the first handler waits.
    await waitFor('three deliveries', () => consumer.stats.delivered === 3);
    await waitFor('three left in the queue', async () => (await queueDepth(model, `worker.${id}.executions`)) === 3);
    assert.deepEqual(order, [1]);
    release();
    await waitFor('all six acked', () => consumer.stats.acked === 6);
    assert.deepEqual(order, [1, 2, 3, 4, 5, 6]);
    assert.equal(maxActive, 1);
  });

  test('cancel(): no new deliveries, but messages already delivered can still be acked', async () => {
    const id = randomWorkerId();
    const { conn, logger } = await agent(id);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const handled: number[] = [];
    const consumer = createExecutionsConsumer(conn, id, 10, async (p): Promise<Disposition> => {
      if (p.execution_id === 1) await gate;
      handled.push(p.execution_id);
      return 'ack';
    }, logger);
    cleanups.push(() => consumer.close());
    await consumer.start();
    await publishExecutionRequested(model, id, { execution_id: 1, action_ref: 'a.b' });
    await publishExecutionRequested(model, id, { execution_id: 2, action_ref: 'a.b' });
    await waitFor('both delivered (one waiting in the buffer)', () => consumer.stats.delivered === 2);
    await consumer.cancel();
    assert.equal(consumer.consuming, false);
    await publishExecutionRequested(model, id, { execution_id: 3, action_ref: 'a.b' });
    release();
    await consumer.idle();
    assert.deepEqual(handled, [1, 2]);
    assert.equal(consumer.stats.acked, 2, 'acks after cancel still reach the broker');
    assert.equal(await queueDepth(model, `worker.${id}.executions`), 1, 'the third stays queued for later');
    await consumer.close();
    assert.equal(await queueDepth(model, `worker.${id}.executions`), 1);
  });

  test('a payload the decoder refuses is dropped like a malformed body', async () => {
    const id = randomWorkerId();
    const { conn, logger, lines } = await agent(id);
    const consumer = new QueueConsumer({
      connection: conn,
      queue: `worker.${id}.executions`,
      consumerTag: `worker-${id}`,
      prefetch: 3,
      decodePayload: decodeExecutionRequested,
      handler: (): Disposition => 'ack',
      logger,
    });
    cleanups.push(() => consumer.close());
    await consumer.start();
    // A cancel envelope on the dispatch key: the payload has no action_ref.
    await publishRaw(model, `execution.dispatch.worker.${id}`, attuneEnvelope('ExecutionCancelRequested', { execution_id: 5, worker_id: id }, 'api').body);
    await publishRaw(model, `execution.dispatch.worker.${id}`, Buffer.from(JSON.stringify({ message_type: 'ExecutionRequested', timestamp: '2026-01-01T00:00:00Z', payload: { execution_id: 12345678901234567890, action_ref: 'x', worker_id: id } })));
    await waitFor('both dropped', () => consumer.stats.dropped === 2);
    assert.ok(lines.some((l) => /invalid ExecutionCancelRequested payload .*"action_ref" is missing/.test(l.msg)));
    assert.ok(lines.some((l) => /"execution_id" must be an integer id/.test(l.msg)));
  });

  test('the consumer tag is worker-{id}, and start() fails loudly when the queue is missing', async () => {
    const id = randomWorkerId();
    const { conn, logger } = await agent(id);
    const consumer = createExecutionsConsumer(conn, id, 10, () => 'ack', logger);
    cleanups.push(() => consumer.close());
    await consumer.start();
    const { execFile } = await import('node:child_process');
    const out = await new Promise<string>((res, rej) => execFile('rabbitmqctl', ['list_consumers', '-q', '--no-table-headers'], (e, so) => (e ? rej(e) : res(so))));
    assert.match(out, new RegExp(`worker\\.${id}\\.executions\\t.*\\tworker-${id}\\t`));

    const missing = new QueueConsumer({ connection: conn, queue: `attune-agent-test.missing.${id}`, consumerTag: 'x', prefetch: 1, decodePayload: decodeExecutionRequested, handler: () => 'ack' as const, logger });
    await assert.rejects(missing.start(), /404.*NOT_FOUND/);
  });
});

describe('cancel consumer', () => {
  test('worker.{id}.cancel delivers ExecutionCancelRequested payloads (tag worker-{id}-cancel)', async () => {
    const id = randomWorkerId();
    const { conn, logger } = await agent(id);
    const got: number[] = [];
    const consumer = createCancelConsumer(conn, id, (p, env) => {
      assert.equal(env.message_type, 'ExecutionCancelRequested');
      assert.equal(p.worker_id, id);
      got.push(p.execution_id);
      return 'ack';
    }, logger);
    cleanups.push(() => consumer.close());
    await consumer.start();
    await publishExecutionCancelRequested(model, id, 901);
    await publishExecutionCancelRequested(model, id, 902);
    await waitFor('two cancels', () => got.length === 2);
    assert.deepEqual(got, [901, 902]);
  });
});
