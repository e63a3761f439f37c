/**
 * Declare Attune's topology the way its worker does (docs/attune-compat.md §4.2–4.3): the five exchanges and
 * `attune.dlx.queue` (log and continue on failure, as Attune does), then the per-worker queues and
 * bindings (failure is fatal). Declarations are idempotent, so this runs after every reconnect.
 *
 * `worker.{id}.packs` / `.packtests` are declared only with `includePackQueues` (the agent does, and
 * consumes them: worker/pack-events.ts, pack-tests.ts): a durable queue without a consumer and
 * without a TTL would collect pack events forever.
 */
import type { Channel, ChannelModel } from 'amqplib';
import type { Logger } from 'pino';
import {
  ALL_EXCHANGES,
  DLX_ONLY_QUEUE_ARGUMENTS,
  DLX_QUEUE,
  DLX_QUEUE_BINDING_KEY,
  EXCHANGES,
  EXECUTIONS_QUEUE_ARGUMENTS,
  PACK_BINDING_KEYS,
  WORKER_QUEUE_FLAGS,
  WORKER_EXECUTIONS_TTL_MS,
  cancelBindingKey,
  cancelQueue,
  dispatchBindingKey,
  executionsQueue,
  packTestBindingKey,
  packTestsQueue,
  packsQueue,
  type QueueArguments,
} from '../protocol/names.ts';
import type { SetupHook } from './connection.ts';

export class TopologyError extends Error {
  override name = 'TopologyError';
}

export interface WorkerQueueOptions {
  /** Also declare `worker.{id}.packs` and `worker.{id}.packtests` (only if something consumes them). */
  includePackQueues?: boolean;
}

interface QueueSpec {
  name: string;
  args: QueueArguments;
  bindings: Array<{ exchange: string; key: string }>;
}

export function workerQueueSpecs(workerId: number, opts: WorkerQueueOptions = {}): QueueSpec[] {
  const x = EXCHANGES.executions.name;
  const specs: QueueSpec[] = [
    { name: executionsQueue(workerId), args: EXECUTIONS_QUEUE_ARGUMENTS, bindings: [{ exchange: x, key: dispatchBindingKey(workerId) }] },
    { name: cancelQueue(workerId), args: DLX_ONLY_QUEUE_ARGUMENTS, bindings: [{ exchange: x, key: cancelBindingKey(workerId) }] },
  ];
  if (opts.includePackQueues) {
    specs.push(
      { name: packsQueue(workerId), args: DLX_ONLY_QUEUE_ARGUMENTS, bindings: PACK_BINDING_KEYS.map((key) => ({ exchange: EXCHANGES.events.name, key })) },
      { name: packTestsQueue(workerId), args: DLX_ONLY_QUEUE_ARGUMENTS, bindings: [{ exchange: x, key: packTestBindingKey(workerId) }] },
    );
  }
  return specs;
}

/**
 * Exchanges + dead-letter queue. Each failure is logged and skipped (a failed declaration closes
 * the channel, so the next step gets a fresh one).
 */
export async function assertCommonTopology(model: ChannelModel, log: Logger): Promise<void> {
  const steps: Array<[string, (ch: Channel) => Promise<unknown>]> = [
    ...ALL_EXCHANGES.map((ex): [string, (ch: Channel) => Promise<unknown>] => [
      `exchange ${ex.name} (${ex.type})`,
      (ch) => ch.assertExchange(ex.name, ex.type, { durable: true, autoDelete: false, internal: false }),
    ]),
    [`queue ${DLX_QUEUE}`, (ch) => ch.assertQueue(DLX_QUEUE, { durable: true, exclusive: false, autoDelete: false })],
    [`binding ${DLX_QUEUE} ← ${EXCHANGES.dlx.name} "${DLX_QUEUE_BINDING_KEY}"`, (ch) => ch.bindQueue(DLX_QUEUE, EXCHANGES.dlx.name, DLX_QUEUE_BINDING_KEY)],
  ];
  let ch: Channel | null = null;
  try {
    for (const [what, step] of steps) {
      ch ??= await openChannel(model, log);
      try {
        await step(ch);
      } catch (e) {
        log.warn(`could not declare ${what}: ${(e as Error).message} — continuing (Attune's services do the same; another service may own it)`);
        ch = null; // the broker closed the channel with the error
      }
    }
  } finally {
    await closeQuietly(ch);
  }
}

/** Per-worker queues and bindings. Throws TopologyError naming the queue and the fix. */
export async function assertWorkerQueues(model: ChannelModel, workerId: number, log: Logger, opts: WorkerQueueOptions = {}): Promise<void> {
  const ch = await openChannel(model, log);
  try {
    for (const spec of workerQueueSpecs(workerId, opts)) await assertQueueOn(ch, spec);
  } finally {
    await closeQuietly(ch);
  }
  log.info({ worker_id: workerId }, `declared queues ${workerQueueSpecs(workerId, opts).map((s) => s.name).join(', ')}`);
}

/** Declare + bind one worker queue on `ch` (used again by a consumer before it re-subscribes). */
export async function assertWorkerQueue(ch: Channel, workerId: number, queue: string): Promise<void> {
  const spec = workerQueueSpecs(workerId, { includePackQueues: true }).find((s) => s.name === queue);
  if (!spec) throw new TopologyError(`internal: ${queue} is not a queue of worker ${workerId}`);
  await assertQueueOn(ch, spec);
}

async function assertQueueOn(ch: Channel, spec: QueueSpec): Promise<void> {
  try {
    await ch.assertQueue(spec.name, { ...WORKER_QUEUE_FLAGS, arguments: spec.args });
  } catch (e) {
    throw new TopologyError(describeDeclareFailure(spec, e as Error), { cause: e });
  }
  for (const b of spec.bindings) {
    try {
      await ch.bindQueue(spec.name, b.exchange, b.key);
    } catch (e) {
      throw new TopologyError(`cannot bind queue ${spec.name} to exchange ${b.exchange} with key "${b.key}": ${(e as Error).message} — does the exchange exist with type topic? (Attune declares it durable, type topic)`, { cause: e });
    }
  }
}

function describeDeclareFailure(spec: QueueSpec, e: Error): string {
  const code = (e as { code?: number }).code;
  const expected = Object.entries(spec.args)
    .map(([k, v]) => `${k}=${JSON.stringify(v.value)}`)
    .join(', ');
  if (code === 406) {
    return (
      `queue ${spec.name} already exists with different settings: ${e.message}. ` +
      `Attune declares it durable with ${expected}` +
      (spec.args['x-message-ttl'] ? ` (TTL ${WORKER_EXECUTIONS_TTL_MS} ms as a signed 32-bit int)` : '') +
      `; delete the stale queue (rabbitmqctl delete_queue ${spec.name}) or fix whatever declared it differently`
    );
  }
  if (code === 403) return `not allowed to declare queue ${spec.name}: ${e.message} — grant the RabbitMQ user configure/write/read permissions on the vhost`;
  return `cannot declare queue ${spec.name}: ${e.message}`;
}

/** The connection setup hook for one worker: common topology (best effort), then its queues (fatal). */
export function workerTopologySetup(workerId: number, log: Logger, opts: WorkerQueueOptions = {}): SetupHook {
  return async (model) => {
    await assertCommonTopology(model, log);
    await assertWorkerQueues(model, workerId, log, opts);
  };
}

async function openChannel(model: ChannelModel, log: Logger): Promise<Channel> {
  const ch = await model.createChannel();
  // Errors are reported through the failing operation's promise; without a listener they would crash.
  ch.on('error', (err: Error) => log.debug({ err: err.message }, 'topology channel closed by the broker'));
  return ch;
}

async function closeQuietly(ch: Channel | null): Promise<void> {
  if (ch) await ch.close().catch(() => undefined);
}
