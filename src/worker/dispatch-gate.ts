/**
 * Dispatch admission while the database is away: a dispatch is held (not acked, so RabbitMQ keeps it
 * and the rest of the prefetch waits behind it) until the database answers again. After
 * min(max(db_retry_window, 1 s), 240 s) from its delivery — counted from when it was received, so
 * prefetched dispatches waiting behind a held one do not add up their holds — it goes back to the
 * queue (nack, requeue): well before
 * Attune's 300 s message TTL on worker.{id}.executions (a requeued message older than that is
 * dead-lettered) and far below RabbitMQ's 30 min consumer timeout. A drain (consumer cancelled)
 * ends the hold: the dispatch is handed back.
 */
import type { Logger } from 'pino';
import type { DbAvailability } from '../db/pool.ts';

/**
 * Resolves true when the dispatch of `executionId` may be taken now, false when it goes back to the
 * queue. `receivedAt`: when the consumer received it (default: now).
 */
export type DispatchGate = (executionId: number, receivedAt?: number) => Promise<boolean>;

/** The longest a dispatch is held unacked, or its claim retried, before it is requeued. */
export const MAX_DISPATCH_HOLD_MS = 240_000;

export function dispatchHoldMs(windowMs: number): number {
  return Math.min(Math.max(windowMs, 1_000), MAX_DISPATCH_HOLD_MS);
}

export function databaseGate(availability: DbAvailability, windowMs: number, active: () => boolean, log: Logger): DispatchGate {
  const holdMs = dispatchHoldMs(windowMs);
  return async (executionId, receivedAt = Date.now()) => {
    if (!availability.down) return true;
    const left = Math.max(0, receivedAt + holdMs - Date.now());
    log.warn({ execution_id: executionId, hold_ms: left }, `database unreachable: holding dispatch of execution ${executionId} (not acked) until it is back`);
    const up = await availability.waitUp(left, { stop: () => !active() });
    if (up) {
      log.info({ execution_id: executionId }, `database reachable again: taking execution ${executionId}`);
      return true;
    }
    log.warn({ execution_id: executionId }, `database still unreachable: dispatch of execution ${executionId} handed back to the queue (nack, requeue)`);
    return false;
  };
}
