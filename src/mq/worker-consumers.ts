/**
 * The consumers an agent runs, configured as Attune's worker does (docs/attune-compat.md §4.3):
 * `worker.{id}.executions` (tag `worker-{id}`, prefetch max_concurrent_tasks + 2),
 * `worker.{id}.cancel` (tag `worker-{id}-cancel`, prefetch 10), `worker.{id}.packs` (tag
 * `worker-{id}-packs`, prefetch 5) and `worker.{id}.packtests` (tag `worker-{id}-packtests`, prefetch 1). Before each (re)subscribe the
 * queue and its binding are re-declared, so a queue deleted under a running agent comes back.
 */
import type { Logger } from 'pino';
import type { Envelope } from '../protocol/envelope.ts';
import { decodeExecutionCancelRequested, decodeExecutionRequested, type ExecutionCancelRequested, type ExecutionRequested } from '../protocol/messages.ts';
import {
  CANCEL_PREFETCH, PACKS_PREFETCH, PACK_TESTS_PREFETCH, cancelConsumerTag, cancelQueue, executionsConsumerTag, executionsPrefetch, executionsQueue,
  packTestsConsumerTag, packTestsQueue, packsConsumerTag, packsQueue,
} from '../protocol/names.ts';
import type { MqConnection } from './connection.ts';
import { QueueConsumer, type DeliveryInfo, type Disposition } from './consumer.ts';
import { assertWorkerQueue } from './topology.ts';

type Handler<P> = (payload: P, envelope: Envelope<P>, delivery: DeliveryInfo) => Promise<Disposition> | Disposition;

export function createExecutionsConsumer(
  connection: MqConnection,
  workerId: number,
  maxConcurrentTasks: number,
  handler: Handler<ExecutionRequested>,
  logger: Logger,
): QueueConsumer<ExecutionRequested> {
  const queue = executionsQueue(workerId);
  return new QueueConsumer({
    connection,
    queue,
    consumerTag: executionsConsumerTag(workerId),
    prefetch: executionsPrefetch(maxConcurrentTasks),
    decodePayload: decodeExecutionRequested,
    handler: (env, delivery) => handler(env.payload, env, delivery),
    beforeConsume: (ch) => assertWorkerQueue(ch, workerId, queue),
    logger,
  });
}

export function createCancelConsumer(
  connection: MqConnection,
  workerId: number,
  handler: Handler<ExecutionCancelRequested>,
  logger: Logger,
): QueueConsumer<ExecutionCancelRequested> {
  const queue = cancelQueue(workerId);
  return new QueueConsumer({
    connection,
    queue,
    consumerTag: cancelConsumerTag(workerId),
    prefetch: CANCEL_PREFETCH,
    decodePayload: decodeExecutionCancelRequested,
    handler: (env, delivery) => handler(env.payload, env, delivery),
    beforeConsume: (ch) => assertWorkerQueue(ch, workerId, queue),
    logger,
  });
}

/** Any payload: the handler switches on `message_type` (Attune parses this queue as a generic envelope). */
const anyPayload = (p: unknown) => ({ ok: true as const, value: p });

export function createPacksConsumer(
  connection: MqConnection,
  workerId: number,
  handler: (envelope: Envelope<unknown>) => Promise<Disposition> | Disposition,
  logger: Logger,
): QueueConsumer<unknown> {
  const queue = packsQueue(workerId);
  return new QueueConsumer({
    connection,
    queue,
    consumerTag: packsConsumerTag(workerId),
    prefetch: PACKS_PREFETCH,
    decodePayload: anyPayload,
    handler: (env) => handler(env),
    beforeConsume: (ch) => assertWorkerQueue(ch, workerId, queue),
    logger,
  });
}

export function createPackTestsConsumer(
  connection: MqConnection,
  workerId: number,
  handler: (envelope: Envelope<unknown>, delivery: DeliveryInfo) => Promise<Disposition> | Disposition,
  logger: Logger,
): QueueConsumer<unknown> {
  const queue = packTestsQueue(workerId);
  return new QueueConsumer({
    connection,
    queue,
    consumerTag: packTestsConsumerTag(workerId),
    prefetch: PACK_TESTS_PREFETCH,
    decodePayload: anyPayload,
    handler,
    beforeConsume: (ch) => assertWorkerQueue(ch, workerId, queue),
    logger,
  });
}
