/**
 * Losing the broker connection in the middle of work: the consumer resumes, messages published
 * by the agent during the outage are delivered after the reconnect, and an ack that could not be
 * sent leads to a redelivery (redelivered=true). Only this test's own connections are killed —
 * other test files share the broker.
 */
import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChannelModel } from 'amqplib';
import { MqConnection } from '../../../src/mq/connection.ts';
import { ConfirmPublisher } from '../../../src/mq/publisher.ts';
import { createStatusPublisher } from '../../../src/mq/status-publisher.ts';
import { workerTopologySetup } from '../../../src/mq/topology.ts';
import { createExecutionsConsumer } from '../../../src/mq/worker-consumers.ts';
import type { Disposition } from '../../../src/mq/consumer.ts';
import { AMQP_URL, captureLogger, closeConnectionFromBroker, collectExecutionMessages, connectTest, deleteWorkerQueues, destroySocket, publishExecutionRequested, randomWorkerId, withChannel, type Collector } from '../../helpers/amqp.ts';
import { waitFor } from '../../helpers/wait.ts';

let model: ChannelModel;
let collector: Collector;
const cleanups: Array<() => Promise<void>> = [];

before(async () => {
  model = await connectTest('mq-reconnect-test');
  collector = await collectExecutionMessages(model);
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
after(async () => {
  await collector.close();
  await model.close();
});

/** An agent's broker side: connection + topology, executions consumer, publisher. */
async function startAgent(workerId: number, handler: Parameters<typeof createExecutionsConsumer>[3]) {
  const { logger, lines } = captureLogger();
  // Short backoff ceilings keep the test quick; the schedule itself is unit-tested.
  const backoff = { initialMs: 50, maxMs: 200 };
  const conn = new MqConnection({ url: AMQP_URL, logger, connectionName: `mq-reconnect-${workerId}`, backoff });
  conn.addSetup(workerTopologySetup(workerId, logger));
  await conn.start();
  const consumer = createExecutionsConsumer(conn, workerId, 4, handler, logger);
  const publisher = new ConfirmPublisher({ connection: conn, logger, backoff });
  await consumer.start();
  const events: string[] = [];
  conn.on('connected', () => events.push('connected'));
  conn.on('disconnected', () => events.push('disconnected'));
  cleanups.push(async () => {
    await consumer.close();
    await publisher.close();
    await conn.close();
    await deleteWorkerQueues(model, workerId);
  });
  return { conn, consumer, publisher, status: createStatusPublisher(publisher, logger), lines, events };
}

const running = (executionId: number) => ({ execution_id: executionId, action_ref: 'core.echo', previous_status: 'scheduled', new_status: 'running', changed_at: new Date().toISOString() });

for (const [how, kill] of [
  ['the TCP connection is reset (no close frame)', async (m: ChannelModel) => destroySocket(m)],
  ['the broker closes the connection (320 CONNECTION_FORCED)', (m: ChannelModel) => closeConnectionFromBroker(m, 'mq-reconnect test')],
] as const) {
  describe(`reconnect when ${how}`, () => {
    test('consumer resumes; messages published during the outage arrive after the reconnect', async () => {
      const id = randomWorkerId();
      const handled: number[] = [];
      const agent = await startAgent(id, (p) => {
        handled.push(p.execution_id);
        return 'ack';
      });
      await publishExecutionRequested(model, id, { execution_id: 1, action_ref: 'core.echo' });
      await waitFor('dispatch 1 before the outage', () => handled.includes(1));

      const lost = agent.conn.model!;
      await kill(lost);
      await waitFor('the loss to be noticed', () => agent.events.includes('disconnected'));
      // While the agent is away: it finishes work (publishes) and Attune dispatches more.
      const outageIds = [id * 10 + 1, id * 10 + 2]; // execution ids unique to this test
      for (const e of outageIds) agent.status.statusChanged(running(e));
      await publishExecutionRequested(model, id, { execution_id: 2, action_ref: 'core.echo' });

      await waitFor('the reconnect', () => agent.events.includes('connected'), { timeoutMs: 15_000 });
      await waitFor('dispatch 2 after the reconnect', () => handled.includes(2), { timeoutMs: 15_000 });
      assert.equal(agent.consumer.consuming, true);
      assert.equal(await agent.publisher.flush(10_000), true, 'outbox flushed');
      for (const e of outageIds) await collector.waitFor(`the outage message for ${e}`, () => collector.forExecution(e).length === 1);
      assert.ok(agent.lines.some((l) => l.level === 'warn' && /lost the RabbitMQ connection/.test(l.msg)));
      assert.ok(agent.lines.some((l) => l.msg === 'reconnected to RabbitMQ'));
      assert.ok(!JSON.stringify(agent.lines).includes('guest:guest'), 'no credentials in logs');
    });
  });
}

describe('acks across a reconnect', () => {
  test('an ack for a delivery on a dead channel is not sent; RabbitMQ redelivers it (redelivered=true)', async () => {
    const id = randomWorkerId();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const seen: Array<{ id: number; redelivered: boolean }> = [];
    const agent = await startAgent(id, async (p, _env, d): Promise<Disposition> => {
      seen.push({ id: p.execution_id, redelivered: d.redelivered });
      if (!d.redelivered) await gate; // still handling when the connection drops
      return 'ack';
    });
    await publishExecutionRequested(model, id, { execution_id: 7, action_ref: 'core.echo' });
    await publishExecutionRequested(model, id, { execution_id: 8, action_ref: 'core.echo' });
    await waitFor('dispatch 7 in the handler, 8 buffered', () => seen.length === 1 && agent.consumer.stats.delivered === 2);
    destroySocket(agent.conn.model!);
    await waitFor('the loss', () => agent.events.includes('disconnected'));
    release();
    await waitFor('the lost ack', () => agent.consumer.stats.lostSettlements === 1);
    assert.ok(agent.lines.some((l) => /cannot ack a message from worker\.\d+\.executions: its channel is gone; RabbitMQ will redeliver it/.test(l.msg)));
    await waitFor('both redelivered on the new channel', () => seen.filter((s) => s.redelivered).length === 2, { timeoutMs: 15_000 });
    assert.deepEqual(seen, [
      { id: 7, redelivered: false },
      { id: 7, redelivered: true },
      { id: 8, redelivered: true },
    ]);
    assert.equal(agent.consumer.stats.discarded, 1, 'the buffered 8 was not handled on the dead channel');
    await waitFor('acked on the new channel', () => agent.consumer.stats.acked === 2);
  });
});

describe('queue deleted under a running consumer', () => {
  test('the broker cancels the subscription; the consumer re-declares the queue and resumes', async () => {
    const id = randomWorkerId();
    const handled: number[] = [];
    const agent = await startAgent(id, (p) => {
      handled.push(p.execution_id);
      return 'ack';
    });
    await withChannel(model, (ch) => ch.deleteQueue(`worker.${id}.executions`));
    await waitFor('the broker cancel', () => agent.lines.some((l) => /cancelled the subscription/.test(l.msg)));
    await waitFor('the re-subscription', () => agent.consumer.consuming);
    await publishExecutionRequested(model, id, { execution_id: 3, action_ref: 'core.echo' });
    await waitFor('a dispatch through the re-declared queue and binding', () => handled.includes(3));
  });
});
