/**
 * Dispatch admission while the database is away: a dispatch is held (not acked, so RabbitMQ keeps it
 * and the rest of the prefetch waits behind it) until the database answers again. After
 * max(db_retry_window, 1 s) — capped at 20 min, below RabbitMQ's 30 min consumer timeout — it goes
 * back to the queue (nack, requeue). A drain (consumer cancelled) ends the hold: the dispatch is handed back.
 */
import type { Logger } from 'pino';
import type { DbAvailability } from '../db/pool.ts';

/** Resolves true when the dispatch of `executionId` may be taken now, false when it goes back to the queue. */
export type DispatchGate = (executionId: number) => Promise<boolean>;

export function databaseGate(availability: DbAvailability, windowMs: number, active: () => boolean, log: Logger): DispatchGate {
  const holdMs = Math.min(Math.max(windowMs, 1_000), 20 * 60_000);
  return async (executionId) => {
    if (!availability.down) return true;
    log.warn({ execution_id: executionId, hold_ms: holdMs }, `database unreachable: holding dispatch of execution ${executionId} (not acked) until it is back`);
    const up = await availability.waitUp(holdMs, { stop: () => !active() });
    if (up) {
      log.info({ execution_id: executionId }, `database reachable again: taking execution ${executionId}`);
      return true;
    }
    log.warn({ execution_id: executionId }, `database still unreachable: dispatch of execution ${executionId} handed back to the queue (nack, requeue)`);
    return false;
  };
}
