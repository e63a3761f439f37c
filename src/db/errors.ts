/**
 * Database errors as the agent reports them: each names what failed (host:port, user, database —
 * never the password), how to fix it, and whether retrying can help (`retryable`), decided here,
 * where the driver error is understood.
 */
import { redactText } from '../observe/redact.ts';

/** Where the agent connects, without credentials: safe for logs and messages. */
export interface DbTarget {
  host: string;
  port: number;
  user: string;
  database: string;
}

export class DbError extends Error {
  readonly retryable: boolean;
  /**
   * The database answered, but the statement hit `lock_timeout` or `statement_timeout` (another
   * session holds a lock, or the statement is too slow): worth a bounded number of retries, not a
   * whole outage window, and no sign that the database is down.
   */
  readonly contention: boolean;
  /** SQLSTATE (`28P01`) or Node error code (`ECONNREFUSED`), when known. */
  readonly code: string | undefined;
  constructor(message: string, opts: { retryable: boolean; contention?: boolean; code?: string; cause?: unknown }) {
    super(message, { cause: opts.cause });
    this.name = 'DbError';
    this.retryable = opts.retryable;
    this.contention = opts.contention ?? false;
    this.code = opts.code;
  }
}

/**
 * Attempts in all of a statement that keeps hitting lock_timeout or statement_timeout (DbError
 * `contention`): the bound of how long a run can wait on a lock held elsewhere
 * (≈ this × the timeout), after which it gives up with the error.
 */
export const CONTENTION_ATTEMPTS = 3;

/** host:port/user/database from a postgres URL (libpq defaults for what is missing). */
export function describeTarget(url: string): DbTarget {
  try {
    const u = new URL(url);
    const user = decodeURIComponent(u.username) || 'postgres';
    const database = decodeURIComponent(u.pathname.replace(/^\//, '')) || user;
    const host = u.searchParams.get('host') ?? (u.hostname.replace(/^\[|\]$/g, '') || 'localhost');
    return { host, port: Number(u.port) || 5432, user, database };
  } catch {
    return { host: '<unparseable URL>', port: 0, user: '?', database: '?' };
  }
}

export function formatTarget(t: DbTarget): string {
  return `${t.host.includes(':') ? `[${t.host}]` : t.host}:${t.port}`;
}

/** The URL's password (decoded), so it can be scrubbed from driver messages. */
export function urlPassword(url: string): string {
  try {
    return decodeURIComponent(new URL(url).password);
  } catch {
    return '';
  }
}

const URL_HINT = 'ATTUNE__DATABASE__URL';

/**
 * A statement whose answer never comes (a connection that died without RST or FIN) is abandoned
 * by the client this long after the server-side statement_timeout would have ended it; the pool
 * then discards the connection (db/pool.ts).
 */
export const CLIENT_QUERY_MARGIN_MS = 10_000;

// SQLSTATE classes where a later attempt can succeed: connection exception, insufficient resources,
// operator intervention (server starting/stopping), transaction rollback (serialization/deadlock).
const RETRYABLE_CLASSES = new Set(['08', '53', '57', '40']);
const RETRYABLE_NET = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN', 'ENETDOWN', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'ECONNABORTED']);

function errorCode(e: unknown): string | undefined {
  const err = e as { code?: unknown; errors?: unknown[] } | null;
  if (err && typeof err.code === 'string') return err.code;
  // Node reports a failed connect to every address of a name (::1 and 127.0.0.1) as an AggregateError.
  if (err && Array.isArray(err.errors)) for (const inner of err.errors) { const c = errorCode(inner); if (c) return c; }
  return undefined;
}

function rawMessage(e: unknown): string {
  if (e instanceof Error) {
    if (e.message) return e.message;
    const inner = (e as { errors?: unknown[] }).errors;
    if (Array.isArray(inner) && inner[0] instanceof Error) return inner[0].message;
    return e.name;
  }
  return String(e);
}

function isTimeout(e: unknown): boolean {
  const text = `${rawMessage(e)} ${e instanceof Error && e.cause instanceof Error ? e.cause.message : ''}`;
  return /timeout|timed out/i.test(text);
}

/**
 * Turn any error from `pg` into a DbError with an actionable message. `connectTimeoutMs` is named in
 * timeout messages. Already-classified errors pass through.
 */
export function classifyDbError(e: unknown, target: DbTarget,
  opts: { password?: string; connectTimeoutMs?: number; doing?: string; statementTimeoutMs?: number; lockTimeoutMs?: number } = {}): DbError {
  if (e instanceof DbError) return e;
  const code = errorCode(e);
  const hp = formatTarget(target);
  const scrub = (s: string) => redactText(s, opts.password ? [opts.password, encodeURIComponent(opts.password)] : []);
  const detail = scrub(rawMessage(e));
  const doing = opts.doing ? `${opts.doing}: ` : '';
  const mk = (message: string, retryable: boolean) => new DbError(doing + message, { retryable, code, cause: e });
  const seconds = (ms: number | undefined) => (ms ? ` (${ms / 1000} s)` : '');

  switch (code) {
    case '55P03':
      return new DbError(doing + `PostgreSQL at ${hp} (database "${target.database}"): waited longer than database.lock_timeout${seconds(opts.lockTimeoutMs)} for a lock another session holds (${detail}). ` +
        'Find the blocking session in pg_stat_activity / pg_locks (a long transaction on the execution, artifact or worker rows), or raise ATTUNE__DATABASE__LOCK_TIMEOUT.',
      { retryable: true, contention: true, code, cause: e });
    case '57014':
      return new DbError(doing + `PostgreSQL at ${hp} (database "${target.database}") cancelled the statement (${detail}): it ran longer than database.statement_timeout${seconds(opts.statementTimeoutMs)} ` +
        '(waiting for a lock or a busy server) or an operator cancelled it. Check pg_stat_activity for what blocks it, or raise ATTUNE__DATABASE__STATEMENT_TIMEOUT.',
      { retryable: true, contention: true, code, cause: e });
    case '25P03':
      return mk(`PostgreSQL at ${hp} ended the session: idle in a transaction longer than database.idle_in_transaction_timeout (${detail}).`, true);
    case 'ECONNREFUSED':
      return mk(`cannot connect to PostgreSQL at ${hp}: connection refused. Is the server running and listening there? Check the host and port in ${URL_HINT}.`, true);
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return mk(`cannot resolve PostgreSQL host "${target.host}" (${code}). Check the host in ${URL_HINT} and DNS in this container.`, true);
    case 'ETIMEDOUT':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return mk(`cannot reach PostgreSQL at ${hp} (${code}). Check the host and port in ${URL_HINT} and any firewall or network policy in between.`, true);
    case '28P01':
      return mk(`PostgreSQL at ${hp} rejected the password of user "${target.user}" (database "${target.database}"). Fix the credentials in ${URL_HINT}.`, false);
    case '28000':
      return mk(`PostgreSQL at ${hp} refused user "${target.user}" for database "${target.database}": ${detail}. Check the user in ${URL_HINT} (and pg_hba.conf on the server).`, false);
    case '3D000':
      return mk(`database "${target.database}" does not exist on PostgreSQL at ${hp}. Check the database name (the URL path) in ${URL_HINT}.`, false);
    case '53300':
      return mk(`PostgreSQL at ${hp} has too many connections (${detail}). Lower ATTUNE__DATABASE__MAX_CONNECTIONS or raise the server's max_connections.`, true);
    case '57P03':
      return mk(`PostgreSQL at ${hp} is not accepting connections yet (${detail}); retry once it has started.`, true);
    case '42501':
      return mk(`user "${target.user}" lacks a privilege on database "${target.database}" at ${hp}: ${detail}. Grant it, or use Attune's database user.`, false);
  }
  if (/^Query read timeout$/.test(detail)) {
    return mk(`no answer from PostgreSQL at ${hp} to a statement within the agent's client-side limit (${detail}): the connection is probably dead (a network cut without a reset) and is discarded.`, true);
  }
  if (isTimeout(e)) {
    const within = opts.connectTimeoutMs ? ` within ${opts.connectTimeoutMs} ms` : '';
    return mk(`no answer from PostgreSQL at ${hp}${within} (${detail}). Check the host and port in ${URL_HINT}, the network in between, or raise ATTUNE__DATABASE__CONNECT_TIMEOUT.`, true);
  }
  if (/terminated|ECONNRESET|socket hang up|Connection closed/i.test(detail)) {
    return mk(`connection to PostgreSQL at ${hp} was lost (${detail}).`, true);
  }
  if (/SSL|TLS|certificate/i.test(detail)) {
    return mk(`TLS negotiation with PostgreSQL at ${hp} failed (${detail}). Check sslmode and certificates in ${URL_HINT}.`, false);
  }
  if (code && /^[0-9A-Z]{5}$/.test(code)) {
    return mk(`PostgreSQL at ${hp} (database "${target.database}") returned ${code}: ${detail}`, RETRYABLE_CLASSES.has(code.slice(0, 2)));
  }
  return mk(`PostgreSQL at ${hp} (database "${target.database}"): ${detail}`, code !== undefined && RETRYABLE_NET.has(code));
}
