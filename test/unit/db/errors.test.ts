import { test } from 'node:test';
import assert from 'node:assert/strict';
import { classifyDbError, describeTarget, DbError, formatTarget } from '../../../src/db/errors.ts';

const target = describeTarget('postgresql://attune:s3cr%40t@db.example:6543/attune_prod');
const withCode = (message: string, code: string) => Object.assign(new Error(message), { code });

test('describeTarget: host, port, user, database; never the password', () => {
  assert.deepEqual(target, { host: 'db.example', port: 6543, user: 'attune', database: 'attune_prod' });
  assert.deepEqual(describeTarget('postgres://u@h'), { host: 'h', port: 5432, user: 'u', database: 'u' });
  assert.equal(formatTarget(describeTarget('postgres://u@[::1]:5/d')), '[::1]:5');
  assert.equal(describeTarget('not a url').host, '<unparseable URL>');
});

test('each failure names the problem and the fix, and carries its retry decision', () => {
  const cases: [unknown, RegExp, boolean][] = [
    [withCode('connect ECONNREFUSED 10.0.0.1:6543', 'ECONNREFUSED'), /db\.example:6543: connection refused.*ATTUNE__DATABASE__URL/, true],
    [withCode('getaddrinfo ENOTFOUND db.example', 'ENOTFOUND'), /cannot resolve PostgreSQL host "db\.example"/, true],
    [withCode('password authentication failed for user "attune"', '28P01'), /rejected the password of user "attune" \(database "attune_prod"\)/, false],
    [withCode('role "attune" does not exist', '28000'), /refused user "attune" for database "attune_prod": role "attune" does not exist/, false],
    [withCode('database "attune_prod" does not exist', '3D000'), /database "attune_prod" does not exist on PostgreSQL at db\.example:6543/, false],
    [withCode('sorry, too many clients already', '53300'), /too many connections.*MAX_CONNECTIONS/, true],
    [withCode('the database system is starting up', '57P03'), /not accepting connections yet/, true],
    [new Error('Connection terminated due to connection timeout'), /no answer from PostgreSQL at db\.example:6543 within 3000 ms.*CONNECT_TIMEOUT/, true],
    [new Error('Connection terminated unexpectedly'), /connection to PostgreSQL at db\.example:6543 was lost/, true],
    [withCode('relation "worker" does not exist', '42P01'), /returned 42P01: relation "worker" does not exist/, false],
    [withCode('could not serialize access', '40001'), /40001/, true],
    [Object.assign(new AggregateError([withCode('connect ECONNREFUSED ::1:5432', 'ECONNREFUSED')], ''), {}), /connection refused/, true],
  ];
  for (const [err, re, retryable] of cases) {
    const e = classifyDbError(err, target, { password: 's3cr@t', connectTimeoutMs: 3000 });
    assert.ok(e instanceof DbError);
    assert.match(e.message, re);
    assert.equal(e.retryable, retryable, e.message);
    assert.equal(e.cause, err);
  }
});

test('driver messages are scrubbed of the password and of credentials in URLs', () => {
  const e = classifyDbError(new Error('boom postgresql://attune:s3cr@t@db.example/x and s3cr@t'), target, { password: 's3cr@t' });
  assert.doesNotMatch(e.message, /s3cr@t/);
  assert.equal(classifyDbError(e, target), e, 'already classified errors pass through');
  assert.match(classifyDbError(new Error('x'), target, { doing: 'registering' }).message, /^registering: /);
});

test('lock and statement timeouts are contention: retryable a few times, named with the setting to raise', () => {
  const opts = { password: 's3cr@t', lockTimeoutMs: 10_000, statementTimeoutMs: 30_000, doing: 'claim execution 7' };
  const lock = classifyDbError(withCode('canceling statement due to lock timeout', '55P03'), target, opts);
  assert.equal(lock.contention, true);
  assert.equal(lock.retryable, true);
  assert.match(lock.message, /^claim execution 7: PostgreSQL at db\.example:6543 .*longer than database\.lock_timeout \(10 s\) for a lock another session holds \(canceling statement due to lock timeout\).*pg_locks.*ATTUNE__DATABASE__LOCK_TIMEOUT/);
  const slow = classifyDbError(withCode('canceling statement due to statement timeout', '57014'), target, opts);
  assert.equal(slow.contention, true);
  assert.match(slow.message, /longer than database\.statement_timeout \(30 s\).*ATTUNE__DATABASE__STATEMENT_TIMEOUT/);
  // A lost connection is an outage, not contention: it rides on the whole retry window.
  const lost = classifyDbError(new Error('Connection terminated unexpectedly'), target, opts);
  assert.equal(lost.contention, false);
  assert.equal(lost.retryable, true);
  const dead = classifyDbError(new Error('Query read timeout'), target, opts);
  assert.equal(dead.contention, false);
  assert.equal(dead.retryable, true);
  assert.match(dead.message, /no answer from PostgreSQL at db\.example:6543 to a statement within the agent's client-side limit.*discarded/);
});
