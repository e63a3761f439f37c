/**
 * Attune's RabbitMQ names and queue arguments (docs/attune-compat.md §4.2–4.3, §4.6). Every Attune service builds
 * its topology from compiled defaults, so these are constants, not configuration. A queue argument
 * that differs from what Attune declares makes RabbitMQ refuse the redeclaration
 * (406 PRECONDITION_FAILED), which is why the wire types are pinned below.
 */

export interface ExchangeSpec {
  name: string;
  type: 'topic' | 'fanout' | 'direct';
}

export const EXCHANGES = {
  events: { name: 'attune.events', type: 'topic' },
  executions: { name: 'attune.executions', type: 'topic' },
  notifications: { name: 'attune.notifications', type: 'fanout' },
  metadata: { name: 'attune.metadata', type: 'topic' },
  dlx: { name: 'attune.dlx', type: 'direct' },
} as const satisfies Record<string, ExchangeSpec>;

/** All five, in the order Attune declares them. Durable, not auto-delete, no arguments. */
export const ALL_EXCHANGES: readonly ExchangeSpec[] = [EXCHANGES.events, EXCHANGES.executions, EXCHANGES.notifications, EXCHANGES.metadata, EXCHANGES.dlx];

/** Durable, no arguments. Bound with `#` — literal on a direct exchange, so it never matches (§4.2). */
export const DLX_QUEUE = 'attune.dlx.queue';
export const DLX_QUEUE_BINDING_KEY = '#';

/** `x-message-ttl` of `worker.{id}.executions`: dispatches older than 5 minutes are dead-lettered. */
export const WORKER_EXECUTIONS_TTL_MS = 300_000;

export const executionsQueue = (workerId: number): string => `worker.${workerId}.executions`;
export const cancelQueue = (workerId: number): string => `worker.${workerId}.cancel`;
export const packsQueue = (workerId: number): string => `worker.${workerId}.packs`;
export const packTestsQueue = (workerId: number): string => `worker.${workerId}.packtests`;

export const dispatchBindingKey = (workerId: number): string => `execution.dispatch.worker.${workerId}`;
export const cancelBindingKey = (workerId: number): string => `execution.cancel.worker.${workerId}`;
export const packTestBindingKey = (workerId: number): string => `pack.test.dispatch.worker.${workerId}`;
export const PACK_BINDING_KEYS: readonly string[] = ['pack.registered', 'pack.deleted'];

export const executionsConsumerTag = (workerId: number): string => `worker-${workerId}`;
export const cancelConsumerTag = (workerId: number): string => `worker-${workerId}-cancel`;
export const packsConsumerTag = (workerId: number): string => `worker-${workerId}-packs`;
export const packTestsConsumerTag = (workerId: number): string => `worker-${workerId}-packtests`;

/** Prefetch of the executions consumer: Attune uses `max_concurrent_tasks + 2` as a u16. */
export function executionsPrefetch(maxConcurrentTasks: number): number {
  return Math.min(maxConcurrentTasks + 2, 0xffff);
}
export const CANCEL_PREFETCH = 10;
export const PACKS_PREFETCH = 5;
export const PACK_TESTS_PREFETCH = 1;

/**
 * A queue-argument value with its AMQP field-table type pinned, in amqplib's `{'!': type, value}`
 * notation. Attune (lapin) writes `AMQPValue::LongString` → tag `S` and `AMQPValue::LongInt(i32)`
 * → tag `I` (signed 32-bit). amqplib's type names: `string` → `S`, `int` → `I`.
 */
export type TypedField = { '!': 'string'; value: string } | { '!': 'int'; value: number };
export type QueueArguments = Readonly<Record<string, TypedField>>;

const DLX_ARG: TypedField = { '!': 'string', value: EXCHANGES.dlx.name };

/** `worker.{id}.executions`: dead-letter exchange + 5-minute TTL. */
export const EXECUTIONS_QUEUE_ARGUMENTS: QueueArguments = Object.freeze({
  'x-dead-letter-exchange': DLX_ARG,
  'x-message-ttl': { '!': 'int', value: WORKER_EXECUTIONS_TTL_MS },
});

/** `worker.{id}.cancel`, `.packs`, `.packtests`: dead-letter exchange only. */
export const DLX_ONLY_QUEUE_ARGUMENTS: QueueArguments = Object.freeze({ 'x-dead-letter-exchange': DLX_ARG });

/** Durable, non-exclusive, non-auto-delete: how Attune declares every worker queue. */
export const WORKER_QUEUE_FLAGS = Object.freeze({ durable: true, exclusive: false, autoDelete: false });

/** Message types (serde enum names, case-sensitive) with their default routing key and exchange. */
export const MESSAGE_ROUTES = {
  EventCreated: ['event.created', EXCHANGES.events.name],
  EnforcementCreated: ['enforcement.created', EXCHANGES.executions.name],
  ExecutionRequested: ['execution.requested', EXCHANGES.executions.name],
  ExecutionStatusChanged: ['execution.status.changed', EXCHANGES.executions.name],
  ExecutionCompleted: ['execution.completed', EXCHANGES.executions.name],
  InquiryCreated: ['inquiry.created', EXCHANGES.executions.name],
  InquiryResponded: ['inquiry.responded', EXCHANGES.executions.name],
  NotificationCreated: ['notification.created', EXCHANGES.notifications.name],
  RuleCreated: ['rule.created', EXCHANGES.events.name],
  RuleEnabled: ['rule.enabled', EXCHANGES.events.name],
  RuleDisabled: ['rule.disabled', EXCHANGES.events.name],
  RuleDeleted: ['rule.deleted', EXCHANGES.events.name],
  PackRegistered: ['pack.registered', EXCHANGES.events.name],
  PackDeleted: ['pack.deleted', EXCHANGES.events.name],
  ActionChanged: ['metadata.action.changed', EXCHANGES.metadata.name],
  TriggerChanged: ['metadata.trigger.changed', EXCHANGES.metadata.name],
  RuntimeChanged: ['metadata.runtime.changed', EXCHANGES.metadata.name],
  PackChanged: ['metadata.pack.changed', EXCHANGES.metadata.name],
  PermissionSetChanged: ['metadata.permission_set.changed', EXCHANGES.metadata.name],
  IdentityAuthorizationChanged: ['metadata.identity_authorization.changed', EXCHANGES.metadata.name],
  ExecutionCancelRequested: ['execution.cancel', EXCHANGES.executions.name],
  PackTestRequested: ['pack.test.requested', EXCHANGES.executions.name],
} as const satisfies Record<string, readonly [string, string]>;

export type MessageType = keyof typeof MESSAGE_ROUTES;

export function isMessageType(s: unknown): s is MessageType {
  return typeof s === 'string' && Object.hasOwn(MESSAGE_ROUTES, s);
}

/** Where Attune's `publish_envelope` sends a message of this type. */
export function routeFor(type: MessageType): { exchange: string; routingKey: string } {
  const [routingKey, exchange] = MESSAGE_ROUTES[type];
  return { exchange, routingKey };
}
