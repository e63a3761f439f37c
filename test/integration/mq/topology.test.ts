/**
 * Topology against a real RabbitMQ: our declarations and Attune's (lapin field types) must accept
 * each other in either order — a mismatch is a 406 PRECONDITION_FAILED that stops a worker.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChannelModel } from 'amqplib';
import { assertCommonTopology, assertWorkerQueues, TopologyError, workerTopologySetup } from '../../../src/mq/topology.ts';
import { MqConnection, MqConnectError } from '../../../src/mq/connection.ts';
import { AMQP_URL, attuneEnvelope, brokerQueueArguments, captureLogger, connectTest, declareWorkerQueuesLikeAttune, deleteWorkerQueues, publishExecutionRequested, publishLikeAttune, queueDepth, randomWorkerId, withChannel } from '../../helpers/amqp.ts';
import { waitFor } from '../../helpers/wait.ts';

let model: ChannelModel;
const used: number[] = [];
const workerId = (): number => {
  const id = randomWorkerId();
  used.push(id);
  return id;
};

before(async () => {
  model = await connectTest('mq-topology-test');
});
after(async () => {
  for (const id of used) await deleteWorkerQueues(model, id);
  await model.close();
});

describe('per-worker queues', () => {
  test('Attune declared them first (lapin types) → ours redeclare without 406', async () => {
    const id = workerId();
    await declareWorkerQueuesLikeAttune(model, id);
    const { logger } = captureLogger();
    await assertWorkerQueues(model, id, logger);
    await assertWorkerQueues(model, id, logger, { includePackQueues: true });
    const args = await brokerQueueArguments(`worker.${id}.executions`);
    assert.match(args!, /x-dead-letter-exchange.*attune\.dlx/);
    assert.match(args!, /x-message-ttl.*300000/);
  });

  test('ours first → Attune redeclares without 406, and the binding routes dispatches', async () => {
    const id = workerId();
    const { logger } = captureLogger();
    await assertCommonTopology(model, logger);
    await assertWorkerQueues(model, id, logger);
    await declareWorkerQueuesLikeAttune(model, id);
    await publishExecutionRequested(model, id, { execution_id: 1, action_ref: 'core.noop' });
    await waitFor('the dispatch to land in worker.{id}.executions', async () => (await queueDepth(model, `worker.${id}.executions`)) === 1);
  });

  test('broker finding: x-message-ttl is compared by integer class (long/uint32 ≡ int), not by wire type', async () => {
    for (const t of [{ '!': 'long', value: 300000 }, { '!': 'uint32', value: 300000 }]) {
      const id = workerId();
      await declareWorkerQueuesLikeAttune(model, id, { ttl: t });
      await assertWorkerQueues(model, id, captureLogger().logger);
    }
  });

  test('another TTL value → TopologyError naming the queue and the fix', async () => {
    const id = workerId();
    await declareWorkerQueuesLikeAttune(model, id, { ttl: { '!': 'int', value: 60000 } });
    await assert.rejects(assertWorkerQueues(model, id, captureLogger().logger), (e: Error) => {
      assert.ok(e instanceof TopologyError);
      assert.match(e.message, new RegExp(`queue worker\\.${id}\\.executions already exists with different settings`));
      assert.match(e.message, /PRECONDITION_FAILED - inequivalent arg 'x-message-ttl'.*received '300000' but current is '60000'/);
      assert.match(e.message, new RegExp(`rabbitmqctl delete_queue worker\\.${id}\\.executions`));
      return true;
    });
  });

  test('broker finding: a non-integer TTL is refused outright (so no declarer can leave one behind)', async () => {
    const q = `attune-agent-test.ttl-double.${randomWorkerId()}`;
    await assert.rejects(
      withChannel(model, (ch) => ch.assertQueue(q, { durable: false, autoDelete: true, arguments: { 'x-message-ttl': { '!': 'double', value: 300000 } } })),
      /406.*invalid arg 'x-message-ttl'.*expected integer, got double/,
    );
  });

  test('a queue without the dead-letter argument → TopologyError', async () => {
    const id = workerId();
    await withChannel(model, (ch) => ch.assertQueue(`worker.${id}.cancel`, { durable: true }));
    await assert.rejects(assertWorkerQueues(model, id, captureLogger().logger), /worker\.\d+\.cancel already exists with different settings.*x-dead-letter-exchange/);
  });

  test('pack queues: ours first → Attune redeclares all four without 406, and pack events and pack test dispatches route to them', async () => {
    const id = workerId();
    const { logger } = captureLogger();
    await assertCommonTopology(model, logger);
    await assertWorkerQueues(model, id, logger, { includePackQueues: true });
    await declareWorkerQueuesLikeAttune(model, id);
    for (const q of ['packs', 'packtests']) assert.match((await brokerQueueArguments(`worker.${id}.${q}`))!, /x-dead-letter-exchange.*attune\.dlx/);
    for (const key of ['pack.registered', 'pack.deleted']) {
      const { body, messageId } = attuneEnvelope('PackRegistered', { pack_id: 1, pack_ref: 'p' }, 'api');
      await publishLikeAttune(model, 'attune.events', key, body, messageId);
    }
    const t = attuneEnvelope('PackTestRequested', { pack_install_id: 1, pack_ref: 'p' }, 'executor');
    await publishLikeAttune(model, 'attune.executions', `pack.test.dispatch.worker.${id}`, t.body, t.messageId);
    await waitFor('both pack events in worker.{id}.packs', async () => (await queueDepth(model, `worker.${id}.packs`)) === 2);
    await waitFor('the pack test dispatch in worker.{id}.packtests', async () => (await queueDepth(model, `worker.${id}.packtests`)) === 1);
  });

  test('pack queues are left alone unless asked for', async () => {
    const id = workerId();
    await assertWorkerQueues(model, id, captureLogger().logger);
    await assert.rejects(withChannel(model, (ch) => ch.checkQueue(`worker.${id}.packs`)), /404/);
  });
});

describe('common topology', () => {
  test('five exchanges with their types, and attune.dlx.queue', async () => {
    await assertCommonTopology(model, captureLogger().logger);
    await withChannel(model, async (ch) => {
      for (const [name, type] of [
        ['attune.events', 'topic'],
        ['attune.executions', 'topic'],
        ['attune.notifications', 'fanout'],
        ['attune.metadata', 'topic'],
        ['attune.dlx', 'direct'],
      ]) {
        await ch.assertExchange(name, type, { durable: true, autoDelete: false }); // equivalent → no 406
      }
      await ch.checkQueue('attune.dlx.queue');
    });
  });
});

describe('connection setup hook', () => {
  test('a 406 during the first setup fails start() with MqConnectError (fatal), without the password', async () => {
    const id = workerId();
    await declareWorkerQueuesLikeAttune(model, id, { ttl: { '!': 'int', value: 1000 } });
    const { logger, lines } = captureLogger();
    const conn = new MqConnection({ url: AMQP_URL, logger, connectionName: 'mq-topology-406' });
    conn.addSetup(workerTopologySetup(id, logger));
    await assert.rejects(conn.start(), (e: Error) => {
      assert.ok(e instanceof MqConnectError);
      assert.match(e.message, /RabbitMQ topology setup failed at amqp:\/\/guest:\*\*\*@127\.0\.0\.1:5672/);
      assert.match(e.message, /already exists with different settings/);
      return true;
    });
    assert.equal(conn.state, 'closed');
    await conn.close();
    assert.ok(!JSON.stringify(lines).includes('guest:guest'), 'no credentials in logs');
  });

  test('unreachable broker: start() fails with the fix, credentials redacted', async () => {
    const { logger, lines } = captureLogger();
    const conn = new MqConnection({ url: 'amqp://agent:s3cret-pw@127.0.0.1:1/%2f', logger });
    await assert.rejects(conn.start({ retryWindowMs: 300 }), (e: Error) => {
      assert.match(e.message, /cannot connect to RabbitMQ at amqp:\/\/agent:\*\*\*@127\.0\.0\.1:1\/%2f: .*ECONNREFUSED.*ATTUNE__MESSAGE_QUEUE__URL/);
      assert.ok(!e.message.includes('s3cret-pw'));
      return true;
    });
    assert.ok(!JSON.stringify(lines).includes('s3cret-pw'));
    assert.ok(lines.some((l) => l.msg.startsWith('RabbitMQ not reachable yet')), 'retried within the window');
    await conn.close();
  });
});
