/** The set-up script's pure pieces: package list, dpkg-query output, clusters, the pg_hba.conf edit. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { aptCommands, installedFromDpkgQuery, parsePackageList } from '../../../scripts/setup/packages.ts';
import { HBA_MARK, hbaWithTrust, parseClusters } from '../../../scripts/setup/postgres.ts';
import { SetupError, endpoint, isLocalHost } from '../../../scripts/setup/host.ts';

test('package list: comments, blank lines and duplicates dropped, file order kept', () => {
  assert.deepEqual(parsePackageList('# head\npatchelf\n\n  gcc  # the addon\npatchelf\nlibc6-dev\n'), ['patchelf', 'gcc', 'libc6-dev']);
});

test('package list: a line that is not a package name is refused with its line number', () => {
  assert.throws(() => parsePackageList('gcc\napt-get install foo\n', 'list.txt'), (e: Error) => e instanceof SetupError && /list\.txt line 2: 'apt-get install foo'/.test(e.message));
});

test('.ci/apt-packages.txt parses and names the build tools and both servers', () => {
  const names = parsePackageList(readFileSync(new URL('../../../.ci/apt-packages.txt', import.meta.url), 'utf8'));
  for (const p of ['patchelf', 'gcc', 'libc6-dev', 'postgresql', 'rabbitmq-server', 'python3']) assert.ok(names.includes(p), p);
});

test('dpkg-query output: only status "installed" counts', () => {
  const out = 'gcc\tinstalled\nold-pkg\tconfig-files\nhalf\thalf-configured\nlibc6-dev\tinstalled\n';
  assert.deepEqual([...installedFromDpkgQuery(out)].sort(), ['gcc', 'libc6-dev']);
});

test('apt commands: index update, then a non-interactive install of exactly the missing packages', () => {
  assert.deepEqual(aptCommands(['patchelf', 'tini']), ['apt-get update', 'DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends patchelf tini']);
});

test('pg_lsclusters -h lines become clusters', () => {
  const out = '15 main 5432 online postgres /var/lib/postgresql/15/main /var/log/postgresql/postgresql-15-main.log\n16 other 5433 down postgres /d /l\n';
  assert.deepEqual(parseClusters(out), [
    { version: '15', name: 'main', port: 5432, status: 'online' },
    { version: '16', name: 'other', port: 5433, status: 'down' },
  ]);
});

test('pg_hba.conf: the trust line goes before the first rule, once', () => {
  const fresh = '# PostgreSQL Client Authentication\n\n# comment\nlocal   all   postgres   peer\nhost    all   all   127.0.0.1/32   scram-sha-256\n';
  const edited = hbaWithTrust(fresh);
  const lines = edited.split('\n');
  const trust = lines.indexOf('host all all 127.0.0.1/32 trust');
  assert.ok(trust > 0, edited);
  assert.equal(lines[trust - 1], HBA_MARK);
  assert.ok(trust < lines.findIndex((l) => l.startsWith('local')), 'before the first rule');
  assert.ok(edited.endsWith(fresh.slice(fresh.indexOf('local'))), 'the existing rules are kept as they were');
  assert.equal(hbaWithTrust(edited), edited);
});

test('only loopback URLs are managed; default ports filled in', () => {
  assert.ok(isLocalHost('127.0.0.1') && isLocalHost('LOCALHOST') && isLocalHost('[::1]'));
  assert.ok(!isLocalHost('db.internal') && !isLocalHost('10.0.0.5'));
  assert.deepEqual(endpoint('amqp://guest:guest@127.0.0.1/%2f', 5672), { host: '127.0.0.1', port: 5672 });
  assert.deepEqual(endpoint('postgresql://u@[::1]:5433/db', 5432), { host: '::1', port: 5433 });
});
