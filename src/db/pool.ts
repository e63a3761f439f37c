/**
 * The PostgreSQL pool (docs/attune-compat.md §3.1): every new connection gets Attune's search_path and
 * application_name before first use; BIGINT ids become numbers here, at the edge; and a start-up
 * check that names the problem (unreachable, bad credentials, wrong database, wrong schema).
 */
import pg from 'pg';
import type { Config } from '../config/index.ts';
import type { Logger } from '../observe/logger.ts';
import { CLIENT_QUERY_MARGIN_MS, DbError, classifyDbError, describeTarget, formatTarget, urlPassword, type DbTarget } from './errors.ts';

export type DatabaseConfig = Config['database'];

/** What the db modules need from a pool or a checked-out client. */
export interface Queryable {
  query<R extends pg.QueryResultRow = any>(text: string | pg.QueryConfig, values?: unknown[]): Promise<pg.QueryResult<R>>;
}

/**
 * A named statement: PostgreSQL parses and plans it once per connection, later executions only
 * bind and run it (the per-execution statements; Attune's sqlx prepares its statements the same
 * way, so whatever sits in front of PostgreSQL already has to allow this).
 */
export function prepared(name: string, text: string, values: unknown[]): pg.QueryConfig {
  return { name: `attune-agent.${name}`, text, values };
}

interface PoolInfo {
  target: DbTarget;
  password: string;
  connectTimeoutMs: number;
  timeouts: PoolTimeouts;
}

/** The bounds every statement of this pool runs under (ms; 0 = no limit), for SQL and messages. */
export interface PoolTimeouts {
  statementTimeoutMs: number;
  lockTimeoutMs: number;
  /** lock_timeout inside the log-version allocation (db/log-artifacts.ts). */
  logLockTimeoutMs: number;
}
const INFO = new WeakMap<pg.Pool, PoolInfo>();

const INT8 = 20;
const INT8_ARRAY = 1016;

/** Attune ids are BIGINT but stay below 2^53; numbers are what the rest of the agent (and JSON) wants. */
function parseInt8(text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new Error(`BIGINT ${text} does not fit a JavaScript number`);
  return n;
}

const int8Types = {
  getTypeParser(oid: number, format?: string): unknown {
    if (format !== 'binary') {
      if (oid === INT8) return parseInt8;
      if (oid === INT8_ARRAY) {
        const parseArray = (pg.types.getTypeParser as (o: number, f: string) => unknown)(INT8_ARRAY, 'text') as (s: string) => (string | null)[];
        return (s: string) => parseArray(s).map((v) => (v === null ? null : parseInt8(v)));
      }
    }
    return (pg.types.getTypeParser as (o: number, f?: string) => unknown)(oid, format);
  },
} as unknown as pg.CustomTypesConfig;

export function createPool(db: DatabaseConfig, opts: { log?: Logger } = {}): pg.Pool {
  const target = describeTarget(db.url);
  const timeouts: PoolTimeouts = { statementTimeoutMs: db.statementTimeoutMs, lockTimeoutMs: db.lockTimeoutMs, logLockTimeoutMs: db.logLockTimeoutMs };
  const pool = new pg.Pool({
    connectionString: db.url,
    max: db.maxConnections,
    connectionTimeoutMillis: db.connectTimeoutMs,
    idleTimeoutMillis: db.idleTimeoutMs,
    keepAlive: true,
    types: int8Types,
    ...(db.statementTimeoutMs > 0 ? { query_timeout: db.statementTimeoutMs + CLIENT_QUERY_MARGIN_MS } : {}),
    // Runs on EVERY new connection before its first use (pg-pool awaits it), like Attune's after_connect.
    onConnect: async (client: pg.ClientBase) => {
      // client_encoding forced to UTF8: what the agent sends and reads never depends on the
      // server's or PGOPTIONS' defaults. The timeouts bound every statement of the agent (claim,
      // reads, secret lookup, terminal write, log allocation, seal, heartbeat): a lock held by
      // another session or a stuck statement ends in an error, never in a run that waits forever.
      await client.query(
        'SELECT set_config($1, $2, false), set_config($3, $4, false), set_config($5, $6, false), ' +
          'set_config($7, $8, false), set_config($9, $10, false), set_config($11, $12, false)',
        [
          'search_path', `${db.schema}, public`, 'application_name', `attune:${db.schema}`, 'client_encoding', 'UTF8',
          'statement_timeout', String(db.statementTimeoutMs), 'lock_timeout', String(db.lockTimeoutMs),
          'idle_in_transaction_session_timeout', String(db.idleInTransactionTimeoutMs),
        ],
      );
    },
  } as pg.PoolConfig);
  INFO.set(pool, { target, password: urlPassword(db.url), connectTimeoutMs: db.connectTimeoutMs, timeouts });
  // An idle connection that dies (server restart, network cut) is reported here; without a listener
  // Node would crash the agent. Callers see the outage on their next query and report it there.
  pool.on('error', (err) => {
    opts.log?.debug({ err: classifyDbError(err, target, { password: urlPassword(db.url) }).message }, 'idle database connection closed');
  });
  return pool;
}

/** Where this pool connects (for log lines), without credentials. */
export function poolTarget(pool: pg.Pool): DbTarget | undefined {
  return INFO.get(pool)?.target;
}

/** The statement and lock bounds of `pool` (no limits for a pool made elsewhere). */
export function poolTimeouts(pool: pg.Pool): PoolTimeouts {
  return INFO.get(pool)?.timeouts ?? { statementTimeoutMs: 0, lockTimeoutMs: 0, logLockTimeoutMs: 0 };
}

/** Classify an error from a query on `pool` (names host:port/user/database, scrubs the password). */
export function dbError(pool: pg.Pool, e: unknown, doing?: string): DbError {
  const info = INFO.get(pool);
  if (!info) return e instanceof DbError ? e : new DbError(`${doing ? doing + ': ' : ''}${e instanceof Error ? e.message : String(e)}`, { retryable: false, cause: e });
  return classifyDbError(e, info.target, {
    password: info.password, connectTimeoutMs: info.connectTimeoutMs, doing,
    statementTimeoutMs: info.timeouts.statementTimeoutMs, lockTimeoutMs: info.timeouts.lockTimeoutMs,
  });
}

/** Tables the agent reads or writes; all must exist in the configured schema. */
export const REQUIRED_TABLES: readonly string[] = ['worker', 'runtime', 'runtime_version', 'action', 'execution', 'enforcement'];

/**
 * Start-up check: the server answers, the credentials and database are right, and the schema holds
 * Attune's tables. Throws DbError (retryable only for connectivity problems).
 */
export async function verifyDatabase(pool: pg.Pool, schema: string): Promise<void> {
  const info = INFO.get(pool);
  const where = info ? `database "${info.target.database}" at ${formatTarget(info.target)}` : 'the database';
  try {
    await pool.query('SELECT 1');
  } catch (e) {
    throw dbError(pool, e);
  }
  let rows: { table: string; present: boolean }[];
  let schemaExists: boolean;
  let candidates: string[];
  try {
    // to_regnamespace/to_regclass fold case exactly like search_path does with the unquoted name.
    schemaExists = (await pool.query<{ ok: boolean }>('SELECT to_regnamespace($1) IS NOT NULL AS ok', [schema])).rows[0].ok;
    rows = (await pool.query<{ table: string; present: boolean }>(
      `SELECT t AS table, to_regclass($1 || '.' || t) IS NOT NULL AS present FROM unnest($2::text[]) AS t`,
      [schema, REQUIRED_TABLES],
    )).rows;
    candidates = (await pool.query<{ nspname: string }>(
      `SELECT DISTINCT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relname = 'worker' AND c.relkind IN ('r', 'p') ORDER BY 1`,
    )).rows.map((r) => r.nspname);
  } catch (e) {
    throw dbError(pool, e, 'checking the Attune schema');
  }
  const elsewhere = candidates.filter((c) => c !== schema.toLowerCase());
  const hint = elsewhere.length > 0 ? ` (schemas with a worker table in this database: ${elsewhere.join(', ')})` : '';
  if (!schemaExists) {
    throw new DbError(`schema ${schema} does not exist in ${where}: is this an Attune database? is ATTUNE__DATABASE__SCHEMA right?${hint}`, { retryable: false });
  }
  const missing = rows.filter((r) => !r.present).map((r) => r.table);
  if (missing.length > 0) {
    throw new DbError(
      `schema ${schema} has no table ${missing.join(', ')} in ${where}: is this an Attune database (migrations applied)? is ATTUNE__DATABASE__SCHEMA right?${hint}`,
      { retryable: false },
    );
  }
}

/**
 * What the agent currently believes about the database: down after a retryable failure (a
 * heartbeat, a result write), up after any success. Used to hold dispatches back (unacked) while
 * the database is known to be unreachable, instead of acking work that cannot be claimed.
 */
export class DbAvailability {
  readonly #pool: pg.Pool;
  readonly #now: () => number;
  readonly #heartbeat: (() => { lastSuccessAt: number | null; lastFailureAt: number | null }) | undefined;
  #lastFailureAt = 0;
  #lastSuccessAt = 0;

  constructor(pool: pg.Pool, opts: { heartbeat?: () => { lastSuccessAt: number | null; lastFailureAt: number | null }; now?: () => number } = {}) {
    this.#pool = pool;
    this.#heartbeat = opts.heartbeat;
    this.#now = opts.now ?? Date.now;
  }

  /** True when the latest thing heard from the database (any query here or a heartbeat) was a failure. */
  get down(): boolean {
    const hb = this.#heartbeat?.();
    const failed = Math.max(this.#lastFailureAt, hb?.lastFailureAt ?? 0);
    const ok = Math.max(this.#lastSuccessAt, hb?.lastSuccessAt ?? 0);
    return failed > ok;
  }

  markDown(): void {
    this.#lastFailureAt = this.#now();
  }

  markUp(): void {
    this.#lastSuccessAt = this.#now();
  }

  /**
   * Resolve true as soon as the database answers (`SELECT 1`, probed every `probeMs`), false after
   * `timeoutMs` or when `stop()` returns true (checked between probes).
   */
  async waitUp(timeoutMs: number, opts: { probeMs?: number; stop?: () => boolean } = {}): Promise<boolean> {
    const deadline = this.#now() + timeoutMs;
    const probeMs = opts.probeMs ?? 500;
    for (;;) {
      if (!this.down) return true;
      if (opts.stop?.()) return false;
      try {
        await this.#pool.query({ text: 'SELECT 1', query_timeout: Math.max(probeMs, 2000) } as pg.QueryConfig);
        this.markUp();
        return true;
      } catch {
        this.markDown();
      }
      const left = deadline - this.#now();
      if (left <= 0 || opts.stop?.()) return false;
      await new Promise((r) => setTimeout(r, Math.min(probeMs, left)));
    }
  }
}
