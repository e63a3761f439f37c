/**
 * The confirm publisher against a real RabbitMQ: properties and body as Attune's publisher writes
 * them, confirms, the outbox while the broker is unreachable, and the one retry after a channel error.
 */
import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import type { ChannelModel } from 'amqplib';
import { MqConnection } from '../../../src/mq/connection.ts';
import { ConfirmPublisher, PublishError } from '../../../src/mq/publisher.ts';
import { createStatusPublisher } from '../../../src/mq/status-publisher.ts';
import { assertCommonTopology } from '../../../src/mq/topology.ts';
import { encodeEnvelope } from '../../../src/protocol/envelope.ts';
import { AMQP_URL, captureLogger, collectExecutionMessages, connectTest, type Collector } from '../../helpers/amqp.ts';
import { waitFor } from '../../helpers/wait.ts';

let model: ChannelModel;
let collector: Collector;
const cleanups: Array<() => Promise<void>> = [];
const execId = (): number => randomInt(1_000_000_000, 2_000_000_000);

before(async () => {
  model = await connectTest('mq-publisher-test');
  collector = await collectExecutionMessages(model);
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
after(async () => {
  await collector.close();
  await model.close();
});

async function agentConnection(name: string) {
  const log = captureLogger();
  const conn = new MqConnection({ url: AMQP_URL, logger: log.logger, connectionName: name });
  conn.addSetup((m) => assertCommonTopology(m, log.logger));
  cleanups.push(() => conn.close());
  return { conn, ...log };
}

describe('publish', () => {
  test('confirmed; properties and body as Attune publishes them', async () => {
    const { conn, logger } = await agentConnection('mq-publisher-props');
    await conn.start();
    const publisher = new ConfirmPublisher({ connection: conn, logger });
    cleanups.push(() => publisher.close());
    const id = execId();
    const status = createStatusPublisher(publisher, logger);
    status.statusChanged({ execution_id: id, action_ref: 'core.echo', previous_status: 'scheduled', new_status: 'running', changed_at: '2026-03-01T12:00:00.000Z' });
    status.completed({ execution_id: id, action_id: 12, action_ref: 'core.echo', status: 'Failed', result: { succeeded: false, exit_code: 3 }, completed_at: '2026-03-01T12:00:01.250Z' });
    assert.equal(await publisher.flush(5000), true, 'confirmed');

    const got = await collector.waitFor('both messages', () => collector.forExecution(id).length === 2);
    const [changed, completed] = got.filter((m) => m.json?.payload?.execution_id === id);
    assert.equal(changed.routingKey, 'execution.status.changed');
    assert.equal(completed.routingKey, 'execution.completed');
    for (const m of [changed, completed]) {
      const p = m.properties;
      assert.equal(p.deliveryMode, 2);
      assert.equal(p.contentType, 'application/json');
      assert.equal(p.messageId, m.json!.message_id);
      assert.equal(p.correlationId, m.json!.message_id, 'new envelopes: correlation = message id');
      assert.equal(typeof p.timestamp, 'number');
      assert.ok(Math.abs(p.timestamp - Date.now() / 1000) < 60, 'Unix seconds');
      assert.equal(p.headers?.['x-death'], undefined);
      assert.deepEqual(Object.keys(m.json!), ['message_id', 'correlation_id', 'message_type', 'version', 'timestamp', 'headers', 'payload']);
      assert.deepEqual(m.json!.headers, { retry_count: 0, source_service: 'worker' });
      assert.equal(m.json!.version, '1.0');
    }
    assert.equal(changed.json!.message_type, 'ExecutionStatusChanged');
    assert.deepEqual(changed.json!.payload, { execution_id: id, action_ref: 'core.echo', previous_status: 'scheduled', new_status: 'running', changed_at: '2026-03-01T12:00:00Z' });
    assert.equal(completed.json!.message_type, 'ExecutionCompleted');
    assert.deepEqual(completed.json!.payload, { execution_id: id, action_id: 12, action_ref: 'core.echo', status: 'Failed', result: { succeeded: false, exit_code: 3 }, completed_at: '2026-03-01T12:00:01.250Z' });
    assert.notEqual(changed.json!.message_id, completed.json!.message_id);
  });

  test('publishes made before the broker was reachable wait in the outbox and go out in order', async () => {
    const { conn, logger } = await agentConnection('mq-publisher-outbox');
    const publisher = new ConfirmPublisher({ connection: conn, logger });
    cleanups.push(() => publisher.close());
    const id = execId();
    const confirmed: number[] = [];
    const all = [1, 2, 3].map((n) =>
      publisher.publish(encodeEnvelope('ExecutionStatusChanged', { execution_id: id, action_ref: 'a.b', previous_status: 'x', new_status: String(n), changed_at: '2026-03-01T00:00:00Z' }, { sourceService: 'worker' })).then(() => confirmed.push(n)),
    );
    assert.equal(publisher.pending, 3);
    assert.equal(await publisher.flush(50), false, 'not connected yet');
    await conn.start();
    await Promise.all(all);
    assert.deepEqual(confirmed, [1, 2, 3]);
    await collector.waitFor('three messages', () => collector.forExecution(id).length === 3);
    assert.deepEqual(collector.forExecution(id).map((m) => m.json!.payload!.new_status), ['1', '2', '3']);
  });

  test('the outbox is bounded: past the limit publish() rejects at once', async () => {
    const { conn, logger } = await agentConnection('mq-publisher-bounded');
    const publisher = new ConfirmPublisher({ connection: conn, logger, maxOutboxMessages: 2 });
    cleanups.push(() => publisher.close());
    const msg = () => encodeEnvelope('ExecutionCompleted', { execution_id: 0 }, { sourceService: 'worker' });
    const first = publisher.publish(msg());
    const second = publisher.publish(msg());
    await assert.rejects(publisher.publish(msg()), (e: Error) => e instanceof PublishError && /outbox full \(2 messages/.test(e.message));
    await publisher.close();
    await assert.rejects(first, /publisher closed before RabbitMQ confirmed/);
    await assert.rejects(second, /publisher closed/);
  });

  test('a channel error is retried once on a new channel, then the message is rejected; others still flow', async () => {
    const { conn, logger, lines } = await agentConnection('mq-publisher-retry');
    await conn.start();
    const publisher = new ConfirmPublisher({ connection: conn, logger });
    cleanups.push(() => publisher.close());
    const bad = { ...encodeEnvelope('ExecutionCompleted', { execution_id: 0 }, { sourceService: 'worker' }), exchange: `attune-agent-test.no-such-exchange.${execId()}` };
    await assert.rejects(publisher.publish(bad), (e: Error) => e instanceof PublishError && /after 2 attempts: .*404 \(NOT-FOUND\)/.test(e.message));
    assert.equal(lines.filter((l) => /publish channel closed by RabbitMQ/.test(l.msg)).length, 2);
    const id = execId();
    await publisher.publish(encodeEnvelope('ExecutionStatusChanged', { execution_id: id, action_ref: 'a', previous_status: 'x', new_status: 'running', changed_at: '2026-03-01T00:00:00Z' }, { sourceService: 'worker' }));
    await collector.waitFor('the next message', () => collector.forExecution(id).length === 1);
  });

  test('a broker error with many messages in flight fails only the one it belongs to; the others are delivered', async () => {
    // A publish to a missing exchange closes the channel (404) without naming the message, like a
    // message over max_message_size (406). Before, every message in flight was charged for it and
    // innocent ones were dropped after the retry.
    const { conn, logger, lines } = await agentConnection('mq-publisher-isolate');
    await conn.start();
    const publisher = new ConfirmPublisher({ connection: conn, logger });
    cleanups.push(() => publisher.close());
    const id = execId();
    const status = (n: number) => encodeEnvelope('ExecutionStatusChanged', { execution_id: id, action_ref: 'a', previous_status: 'x', new_status: String(n), changed_at: '2026-03-01T00:00:00Z' }, { sourceService: 'worker' });
    const bad = { ...encodeEnvelope('ExecutionCompleted', { execution_id: 0 }, { sourceService: 'worker' }), exchange: `attune-agent-test.no-such-exchange.${execId()}` };
    const results: Array<Promise<string>> = [];
    for (let n = 0; n < 40; n++) {
      results.push(publisher.publish(status(n)).then(() => 'ok', (e: Error) => `rejected: ${e.message}`));
      if (n === 10 || n === 25) results.push(publisher.publish(bad).then(() => 'ok', (e: Error) => `rejected: ${e.message}`));
    }
    const settled = await Promise.all(results);
    assert.equal(settled.filter((r) => r === 'ok').length, 40, settled.filter((r) => r !== 'ok').join('\n'));
    assert.equal(settled.filter((r) => /RabbitMQ refused ExecutionCompleted .* after 2 attempts: .*404/.test(r)).length, 2, 'exactly the two bad ones fail');
    // At least once: what the broker took before it closed the channel arrives twice (same message_id).
    const distinct = () => [...new Set(collector.forExecution(id).map((m) => Number(m.json!.payload!.new_status)))].sort((a, b) => a - b);
    await collector.waitFor('the 40 innocent messages', () => distinct().length === 40);
    assert.deepEqual(distinct(), Array.from({ length: 40 }, (_, i) => i));
    assert.ok(lines.some((l) => /sending them again one at a time/.test(l.msg)), 'isolation was needed (several in flight)');
    assert.equal(publisher.pending, 0);
  });

  test('a message larger than maxMessageBytes is rejected unsent; the channel stays open for the rest', async () => {
    const { conn, logger, lines } = await agentConnection('mq-publisher-max');
    await conn.start();
    const publisher = new ConfirmPublisher({ connection: conn, logger, maxMessageBytes: 64 * 1024 });
    cleanups.push(() => publisher.close());
    const id = execId();
    const big = encodeEnvelope('ExecutionCompleted', { execution_id: id, result: 'x'.repeat(70 * 1024) }, { sourceService: 'worker' });
    await assert.rejects(publisher.publish(big), (e: Error) => e instanceof PublishError && /is \d+ bytes, over message_queue\.max_message_bytes \(65536\): not sent/.test(e.message));
    await publisher.publish(encodeEnvelope('ExecutionStatusChanged', { execution_id: id, action_ref: 'a', previous_status: 'x', new_status: 'running', changed_at: '2026-03-01T00:00:00Z' }, { sourceService: 'worker' }));
    await collector.waitFor('the small message', () => collector.forExecution(id).length === 1);
    assert.equal(lines.filter((l) => /publish channel closed/.test(l.msg)).length, 0);
  });

  test('the status adapter shortens a completion over the cap (result_truncated) instead of losing it', async () => {
    const { conn, logger, lines } = await agentConnection('mq-publisher-cap');
    await conn.start();
    const publisher = new ConfirmPublisher({ connection: conn, logger, maxMessageBytes: 256 * 1024 });
    cleanups.push(() => publisher.close());
    const id = execId();
    const status = createStatusPublisher(publisher, logger, { maxMessageBytes: 256 * 1024 });
    status.completed({ execution_id: id, action_id: 1, action_ref: 'p.big', status: 'Completed', result: { succeeded: true, exit_code: 0, stdout: '\x01'.repeat(1024 * 1024) }, completed_at: '2026-03-01T00:00:00Z' });
    const [m] = await collector.waitFor('the shortened completion', () => collector.forExecution(id).length === 1).then(() => collector.forExecution(id));
    assert.ok(m.body.length <= 256 * 1024, `${m.body.length} bytes`);
    assert.equal(m.json!.payload!.result_truncated, true);
    assert.match((m.json!.payload!.result as { stdout: string }).stdout, /^\x01+\n\[attune-agent: \d+ characters left out/);
    assert.ok(lines.some((l) => l.execution_id === id && /result shortened to fit message_queue\.max_message_bytes/.test(l.msg)));
  });

  test('the status adapter never throws and logs LOST for what it cannot send', async () => {
    const { logger, lines } = captureLogger();
    const status = createStatusPublisher({ publish: () => Promise.reject(new Error('outbox full')) }, logger);
    status.statusChanged({ execution_id: 5, action_ref: 'a', previous_status: 'x', new_status: 'running', changed_at: 'not a time' });
    status.completed({ execution_id: 6, action_id: 1, action_ref: 'a', status: 'completed', result: null, completed_at: '2026-03-01T00:00:00Z' });
    await waitFor('two LOST lines', () => lines.filter((l) => /LOST MESSAGE/.test(l.msg)).length === 2);
    assert.match(lines.find((l) => l.execution_id === 5)!.msg, /cannot encode ExecutionStatusChanged for execution 5: not an RFC 3339 time/);
    assert.match(lines.find((l) => l.execution_id === 6)!.msg, /ExecutionCompleted for execution 6 not published: outbox full/);
  });
});
