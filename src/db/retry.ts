/**
 * Database calls that survive outages shorter than `worker.db_retry_window`: retryable failures are
 * retried with capped exponential backoff until the window (counted from the first failure) is
 * over. Giving up is logged here with the execution id; the caller logs what is lost. Every
 * answer and failure also tells `availability` whether the database is up (the dispatch gate).
 */
import type pg from 'pg';
import type { Logger } from '../observe/logger.ts';
import { Backoff } from '../backoff.ts';
import { dbError, type DbAvailability } from './pool.ts';
import { CONTENTION_ATTEMPTS } from './errors.ts';

export type Retry = <T>(what: string, fn: () => Promise<T>) => Promise<T>;

export function retryingDatabase(pool: pg.Pool, windowMs: number, log: Logger, availability?: DbAvailability): Retry {
  return async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
    let deadline = 0;
    const backoff = new Backoff({ initialMs: 250, maxMs: 5_000, jitter: false });
    let failures = 0;
    let contended = 0;
    const executionId = /execution (\d+)/.exec(what)?.[1];
    const fields = executionId === undefined ? {} : { execution_id: Number(executionId) };
    for (;;) {
      try {
        const v = await fn();
        availability?.markUp();
        if (failures > 0) log.info({ ...fields, attempts: failures + 1 }, `database back: ${what} succeeded`);
        return v;
      } catch (e) {
        const err = dbError(pool, e, what);
        if (!err.retryable) throw err;
        if (err.contention) {
          // The database answers; a lock held elsewhere (or a slow statement) is retried a few
          // times, never for the whole outage window, and says nothing about the database being down.
          if (++contended >= CONTENTION_ATTEMPTS) {
            log.error({ ...fields, err: err.message, attempts: contended }, `giving up on ${what} after ${contended} attempts (lock or statement timeout)`);
            throw err;
          }
          log.warn({ ...fields, err: err.message, attempt: contended }, `lock or statement timeout: retrying ${what}`);
          await new Promise((r) => setTimeout(r, 250 * contended));
          continue;
        }
        availability?.markDown();
        failures++;
        if (failures === 1) deadline = Date.now() + windowMs;
        const delay = backoff.next();
        if (Date.now() + delay > deadline) {
          log.error({ ...fields, err: err.message, attempts: failures, retry_window_ms: windowMs }, `database unreachable for longer than worker.db_retry_window: giving up on ${what}`);
          throw err;
        }
        if (failures === 1) log.warn({ ...fields, err: err.message, retry_window_ms: windowMs }, `database unavailable: retrying ${what}`);
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  };
}
