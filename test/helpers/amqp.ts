/**
 * RabbitMQ helpers for integration and e2e tests. They play Attune's side of the wire: declare a
 * worker's queues as Attune's Rust worker does (lapin field types spelled out here on purpose,
 * independent of src/protocol/names.ts), publish dispatches/cancels like the executor/API, and
 * collect what the agent publishes on `attune.executions`.
 *
 * The broker must be reachable (ATTUNE_TEST_AMQP_URL, default amqp://guest:guest@127.0.0.1:5672/%2f):
 * `connectTest()` fails loudly otherwise — integration tests never skip.
 */
import { execFile } from 'node:child_process';
import { randomUUID, randomInt } from 'node:crypto';
import { promisify } from 'node:util';
import { Writable } from 'node:stream';
import { connect, type Channel, type ChannelModel, type ConfirmChannel, type ConsumeMessage } from 'amqplib';
import pino, { type Logger } from 'pino';
import { waitFor } from './wait.ts';

export const AMQP_URL = process.env.ATTUNE_TEST_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672/%2f';

const run = promisify(execFile);

/** Open a connection for the test side. Throws a clear error when RabbitMQ is not reachable. */
export async function connectTest(name = `attune-agent-test-${process.pid}`): Promise<ChannelModel> {
  let model: ChannelModel;
  try {
    model = await connect(AMQP_URL, { timeout: 5000, clientProperties: { connection_name: name } } as Parameters<typeof connect>[1]);
  } catch (e) {
    throw new Error(
      `RabbitMQ is not reachable at ${AMQP_URL.replace(/:[^:@/]*@/, ':***@')} (${(e as Error).message}). ` +
        'Integration tests need it: run `npm run setup` (as root) or set ATTUNE_TEST_AMQP_URL.',
    );
  }
  model.on('error', () => undefined); // close reasons surface through the operations that fail
  return model;
}

export interface LogLine {
  level: string;
  msg: string;
  [k: string]: unknown;
}

/** A pino logger that keeps its JSON lines in memory (set DEBUG_TEST_LOGS=1 to also print them). */
export function captureLogger(level = 'debug'): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) {
        if (!l) continue;
        lines.push(JSON.parse(l) as LogLine);
        if (process.env.DEBUG_TEST_LOGS) process.stderr.write(`${l}\n`);
      }
      cb();
    },
  });
  const logger = pino({ level, formatters: { level: (label) => ({ level: label }) } }, stream);
  return { logger, lines };
}

/** A random worker id far above any real one, so parallel tests never share queues. */
export function randomWorkerId(): number {
  return randomInt(1_000_000_000, 2_000_000_000);
}

/** Run `fn` on a fresh channel and close it (even when `fn` fails and the broker closed it). */
export async function withChannel<T>(model: ChannelModel, fn: (ch: Channel) => Promise<T>): Promise<T> {
  const ch = await model.createChannel();
  ch.on('error', () => undefined);
  try {
    return await fn(ch);
  } finally {
    await ch.close().catch(() => undefined);
  }
}

/** The five exchanges, as every Attune service declares them. */
export async function declareExchangesLikeAttune(model: ChannelModel): Promise<void> {
  await withChannel(model, async (ch) => {
    for (const [name, type] of [
      ['attune.events', 'topic'],
      ['attune.executions', 'topic'],
      ['attune.notifications', 'fanout'],
      ['attune.metadata', 'topic'],
      ['attune.dlx', 'direct'],
    ] as const) {
      await ch.assertExchange(name, type, { durable: true, autoDelete: false });
    }
  });
}

/**
 * Attune's `setup_worker_infrastructure(worker_id)`: four durable queues with lapin-typed
 * arguments — `x-dead-letter-exchange` as LongString (`S`), `x-message-ttl` as LongInt (`I`,
 * signed 32-bit) — and their bindings.
 */
export async function declareWorkerQueuesLikeAttune(model: ChannelModel, workerId: number, opts: { ttl?: { '!': string; value: unknown } } = {}): Promise<void> {
  await declareExchangesLikeAttune(model);
  const dlx = { 'x-dead-letter-exchange': { '!': 'string', value: 'attune.dlx' } };
  const ttl = opts.ttl ?? { '!': 'int', value: 300000 };
  await withChannel(model, async (ch) => {
    const flags = { durable: true, exclusive: false, autoDelete: false };
    await ch.assertQueue(`worker.${workerId}.executions`, { ...flags, arguments: { ...dlx, 'x-message-ttl': ttl } });
    await ch.bindQueue(`worker.${workerId}.executions`, 'attune.executions', `execution.dispatch.worker.${workerId}`);
    await ch.assertQueue(`worker.${workerId}.packs`, { ...flags, arguments: dlx });
    await ch.bindQueue(`worker.${workerId}.packs`, 'attune.events', 'pack.registered');
    await ch.bindQueue(`worker.${workerId}.packs`, 'attune.events', 'pack.deleted');
    await ch.assertQueue(`worker.${workerId}.cancel`, { ...flags, arguments: dlx });
    await ch.bindQueue(`worker.${workerId}.cancel`, 'attune.executions', `execution.cancel.worker.${workerId}`);
    await ch.assertQueue(`worker.${workerId}.packtests`, { ...flags, arguments: dlx });
    await ch.bindQueue(`worker.${workerId}.packtests`, 'attune.executions', `pack.test.dispatch.worker.${workerId}`);
  });
}

/** Delete every queue a worker id can have (missing ones are fine). */
export async function deleteWorkerQueues(model: ChannelModel, workerId: number): Promise<void> {
  for (const suffix of ['executions', 'cancel', 'packs', 'packtests']) {
    await withChannel(model, (ch) => ch.deleteQueue(`worker.${workerId}.${suffix}`)).catch(() => undefined);
  }
}

/** Attune's envelope JSON (serde field order), timestamp as chrono writes it. */
export function attuneEnvelope(messageType: string, payload: unknown, sourceService: string): { body: Buffer; messageId: string } {
  const messageId = randomUUID();
  const env = {
    message_id: messageId,
    correlation_id: messageId,
    message_type: messageType,
    version: '1.0',
    timestamp: new Date().toISOString(),
    headers: { retry_count: 0, source_service: sourceService },
    payload,
  };
  return { body: Buffer.from(JSON.stringify(env)), messageId };
}

/** Publish with the properties Attune's publisher sets, and wait for the broker's confirm. */
export async function publishLikeAttune(model: ChannelModel, exchange: string, routingKey: string, body: Buffer, messageId: string = randomUUID()): Promise<void> {
  const ch: ConfirmChannel = await model.createConfirmChannel();
  ch.on('error', () => undefined);
  try {
    await new Promise<void>((resolve, reject) => {
      ch.publish(
        exchange,
        routingKey,
        body,
        { deliveryMode: 2, contentType: 'application/json', messageId, correlationId: messageId, timestamp: Math.floor(Date.now() / 1000) },
        (err: unknown) => (err ? reject(err as Error) : resolve()),
      );
    });
  } finally {
    await ch.close().catch(() => undefined);
  }
}

export interface DispatchFields {
  execution_id: number;
  action_ref: string;
  release_id?: number | null;
  release_digest?: string | null;
  config?: unknown;
}

/** The executor's dispatch: `ExecutionRequested` on attune.executions / execution.dispatch.worker.{id}. */
export async function publishExecutionRequested(model: ChannelModel, workerId: number, f: DispatchFields): Promise<string> {
  const payload = {
    execution_id: f.execution_id,
    worker_id: workerId,
    action_ref: f.action_ref,
    config: f.config ?? null,
    scheduled_attempt_updated_at: new Date().toISOString(),
    release_id: f.release_id ?? null,
    release_digest: f.release_digest ?? null,
  };
  const { body, messageId } = attuneEnvelope('ExecutionRequested', payload, 'executor');
  await publishLikeAttune(model, 'attune.executions', `execution.dispatch.worker.${workerId}`, body, messageId);
  return messageId;
}

/** The API's / executor's cancel: `ExecutionCancelRequested` on execution.cancel.worker.{id}. */
export async function publishExecutionCancelRequested(model: ChannelModel, workerId: number, executionId: number): Promise<string> {
  const { body, messageId } = attuneEnvelope('ExecutionCancelRequested', { execution_id: executionId, worker_id: workerId }, 'api');
  await publishLikeAttune(model, 'attune.executions', `execution.cancel.worker.${workerId}`, body, messageId);
  return messageId;
}

/** Raw bytes straight onto a worker queue (hostile bodies for decoder tests). */
export async function publishRaw(model: ChannelModel, routingKey: string, body: Buffer, exchange = 'attune.executions'): Promise<void> {
  await publishLikeAttune(model, exchange, routingKey, body);
}

export interface Collected {
  routingKey: string;
  properties: ConsumeMessage['properties'];
  body: Buffer;
  /** Parsed JSON body (null when it is not JSON). */
  json: { message_type?: string; payload?: Record<string, unknown>; [k: string]: unknown } | null;
}

export interface Collector {
  readonly messages: Collected[];
  /** Messages whose payload.execution_id is `executionId`. */
  forExecution(executionId: number): Collected[];
  /** waitFor (helpers/wait.ts) on the messages collected so far; resolves with them. */
  waitFor(what: string, pred: (m: Collected[]) => boolean, opts?: { timeoutMs?: number }): Promise<Collected[]>;
  close(): Promise<void>;
}

/**
 * A temporary exclusive queue bound to attune.executions for `execution.status.changed` and
 * `execution.completed` (what the executor consumes). Filter by execution id: other tests publish
 * on the same exchange.
 */
export async function collectExecutionMessages(model: ChannelModel, keys: string[] = ['execution.status.changed', 'execution.completed']): Promise<Collector> {
  await declareExchangesLikeAttune(model);
  const ch = await model.createChannel();
  ch.on('error', () => undefined);
  const { queue } = await ch.assertQueue('', { exclusive: true, autoDelete: true, durable: false });
  for (const k of keys) await ch.bindQueue(queue, 'attune.executions', k);
  const messages: Collected[] = [];
  await ch.consume(
    queue,
    (msg) => {
      if (!msg) return;
      let json: Collected['json'] = null;
      try {
        json = JSON.parse(msg.content.toString('utf8'));
      } catch {
        json = null;
      }
      messages.push({ routingKey: msg.fields.routingKey, properties: msg.properties, body: msg.content, json });
    },
    { noAck: true },
  );
  return {
    messages,
    forExecution: (id) => messages.filter((m) => m.json?.payload?.execution_id === id),
    waitFor: async (what, pred, opts) => {
      await waitFor(what, () => pred(messages), opts);
      return messages;
    },
    close: async () => {
      await ch.close().catch(() => undefined);
    },
  };
}

/** Messages waiting in `queue` (passive declare). */
export async function queueDepth(model: ChannelModel, queue: string): Promise<number> {
  return withChannel(model, async (ch) => (await ch.checkQueue(queue)).messageCount);
}

/** Queue arguments as the broker reports them (`rabbitmqctl list_queues name arguments`). */
export async function brokerQueueArguments(queue: string): Promise<string | null> {
  const { stdout } = await run('rabbitmqctl', ['list_queues', 'name', 'arguments', '-q', '--no-table-headers']);
  const line = stdout.split('\n').find((l) => l.split('\t')[0] === queue);
  return line ? line.slice(queue.length + 1) : null;
}

/**
 * Simulate a network failure: destroy the TCP socket under an amqplib connection with an error
 * (like ECONNRESET; no close frame). A socket destroyed without an error goes unnoticed by amqplib
 * until heartbeats are missed.
 */
export function destroySocket(model: ChannelModel): void {
  const err = Object.assign(new Error('read ECONNRESET (simulated by test)'), { code: 'ECONNRESET' });
  (model as unknown as { connection: { stream: { destroy(e: Error): void } } }).connection.stream.destroy(err);
}

/** Have the broker close one connection (320 CONNECTION_FORCED) — only ours, other tests keep theirs. */
export async function closeConnectionFromBroker(model: ChannelModel, reason = 'closed by test'): Promise<void> {
  const port = (model as unknown as { connection: { stream: { localPort: number } } }).connection.stream.localPort;
  const { stdout } = await run('rabbitmqctl', ['list_connections', 'pid', 'name', '-q', '--no-table-headers']);
  const line = stdout.split('\n').find((l) => l.includes(`:${port} -> `));
  if (!line) throw new Error(`connection from local port ${port} not listed by rabbitmqctl list_connections`);
  await run('rabbitmqctl', ['close_connection', line.split('\t')[0], reason]);
}
