/**
 * PostgreSQL on this machine, as the tests and the demo use it: superuser `postgres` reachable over
 * TCP on 127.0.0.1 without a password (test/helpers/pg.ts), and a wrong role answered with "role
 * does not exist", not a password prompt (db-connect.test.ts). A fresh Debian install has a cluster
 * (usually) but asks for a password on TCP (scram-sha-256), so when the connection is refused for
 * want of a password the set-up puts `host all all 127.0.0.1/32 trust` at the top of the cluster's
 * pg_hba.conf (marked, added once) and reloads: loopback TCP without passwords, as on the CI
 * machines. A password would be the alternative, but `npm test` cannot hand one from this step to
 * the test processes. Not for a machine whose local users must be kept out of PostgreSQL.
 */
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import pg from 'pg';
import { SetupError, endpoint, mustRun, onPath, pollFor, portOpen, type Check } from './host.ts';

export interface Cluster { version: string; name: string; port: number; status: string }

/** Clusters from `pg_lsclusters -h` (version, name, port, status, owner, data dir, log). */
export function parseClusters(stdout: string): Cluster[] {
  const out: Cluster[] = [];
  for (const line of stdout.split('\n')) {
    const [version, name, port, status] = line.trim().split(/\s+/);
    if (version && name && /^\d+$/.test(port ?? '')) out.push({ version, name, port: Number(port), status: status ?? '' });
  }
  return out;
}

export const HBA_MARK = '# added by attune-agent scripts/setup.ts: tests and demo connect without a password';

export const TRUST_LINE = 'host all all 127.0.0.1/32 trust';

/** pg_hba.conf with the trust line first (rules match top-down); unchanged when it is there. */
export function hbaWithTrust(text: string): string {
  const line = TRUST_LINE;
  const lines = text.split('\n');
  if (lines.some((l) => l.trim().replace(/\s+/g, ' ') === line)) return text;
  const first = lines.findIndex((l) => l.trim() !== '' && !l.trim().startsWith('#'));
  lines.splice(first < 0 ? lines.length : first, 0, HBA_MARK, line, '');
  return lines.join('\n');
}

type Probe = { state: 'ready' } | { state: 'down' | 'auth' | 'starting' | 'broken'; detail: string };

/** One connection attempt, classified. */
export async function probePostgres(url: string): Promise<Probe> {
  const { host, port } = endpoint(url, 5432);
  if (!(await portOpen(host, port))) return { state: 'down', detail: `nothing listens on ${host}:${port}` };
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('SELECT 1');
    return { state: 'ready' };
  } catch (e) {
    const err = e as Error & { code?: string };
    // node-pg says "client password must be a string" when the server asks for a password it has not got.
    if (err.code === '28P01' || err.code === '28000' || /password/i.test(err.message)) return { state: 'auth', detail: err.message };
    if (err.code === '57P03' || err.code === 'ECONNRESET') return { state: 'starting', detail: err.message };
    return { state: 'broken', detail: err.message };
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** probePostgres, waiting out a server that is still starting (up to `timeoutMs`). */
async function settledProbe(url: string, timeoutMs = 60_000): Promise<Probe> {
  let last: Probe = await probePostgres(url);
  await pollFor(async () => {
    last = await probePostgres(url);
    return last.state === 'starting' ? undefined : last;
  }, last.state === 'starting' ? timeoutMs : 0);
  return last;
}

async function clusters(): Promise<Cluster[]> {
  if (!onPath('pg_lsclusters')) return [];
  return parseClusters((await mustRun('pg_lsclusters', ['-h'])).stdout);
}

/** Newest PostgreSQL server installed (/usr/lib/postgresql/<version>/bin/postgres), or null. */
function newestServerVersion(): string | null {
  const dir = '/usr/lib/postgresql';
  if (!existsSync(dir)) return null;
  const versions = readdirSync(dir).filter((v) => /^\d+$/.test(v) && existsSync(`${dir}/${v}/bin/postgres`));
  return versions.sort((a, b) => Number(b) - Number(a))[0] ?? null;
}

/** The cluster serving `port`: an existing one, or the one pg_createcluster will make. */
function clusterFor(port: number, all: Cluster[]): { cluster: Cluster; exists: boolean } | null {
  const found = all.find((c) => c.port === port);
  if (found) return { cluster: found, exists: true };
  const version = newestServerVersion();
  if (!version) return null;
  const name = all.some((c) => c.version === version && c.name === 'main') ? 'attune' : 'main';
  return { cluster: { version, name, port, status: 'absent' }, exists: false };
}

function startCommands(target: { cluster: Cluster; exists: boolean } | null, port: number): string[] {
  if (!target) return [`pg_createcluster --port ${port} <version> main && pg_ctlcluster <version> main start   # after installing postgresql`];
  const { version, name } = target.cluster;
  return [...(target.exists ? [] : [`pg_createcluster --port ${port} ${version} ${name}`]), `pg_ctlcluster ${version} ${name} start`];
}

function hbaPath(c: Cluster): string {
  return `/etc/postgresql/${c.version}/${c.name}/pg_hba.conf`;
}

function authCommands(c: Cluster | undefined): string[] {
  const file = c ? hbaPath(c) : '/etc/postgresql/<version>/<cluster>/pg_hba.conf';
  const reload = c ? `pg_ctlcluster ${c.version} ${c.name} reload` : 'pg_ctlcluster <version> <cluster> reload';
  return [`sed -i '0,/^[^#]/s||${TRUST_LINE}\\n&|' ${file}   # puts the line first`, reload];
}

function userOf(url: string): string {
  return decodeURIComponent(new URL(url).username) || 'postgres';
}

/** What, if anything, stands between this machine and a working `url` (a local PostgreSQL). */
export async function checkPostgres(url: string): Promise<Check> {
  const p = await settledProbe(url);
  if (p.state === 'ready') return { ready: true };
  const { port } = endpoint(url, 5432);
  const all = await clusters();
  if (p.state === 'down') return { ready: false, problem: `PostgreSQL is not running (${p.detail})`, commands: startCommands(clusterFor(port, all), port), fix: () => ensurePostgres(url) };
  if (p.state === 'auth') {
    return {
      ready: false,
      problem: `PostgreSQL on 127.0.0.1:${port} refuses user ${userOf(url)} without a password (${p.detail})`,
      commands: authCommands(all.find((c) => c.port === port)),
      fix: () => ensurePostgres(url),
    };
  }
  return { ready: false, problem: `PostgreSQL on 127.0.0.1:${port} does not work: ${p.detail}`, commands: [], fix: () => ensurePostgres(url) };
}

/** Create/start the cluster and open password-less access as needed; says what it did. */
export async function ensurePostgres(url: string): Promise<string> {
  const { port } = endpoint(url, 5432);
  const user = userOf(url);
  const done: string[] = [];
  for (let round = 0; round < 3; round++) {
    const p = await settledProbe(url);
    if (p.state === 'ready') return done.length ? done.join('; ') : 'PostgreSQL ready';
    if (p.state === 'down') {
      const target = clusterFor(port, await clusters());
      if (!target) throw new SetupError('no PostgreSQL server is installed (/usr/lib/postgresql/<version>/bin/postgres)', ['apt-get install -y --no-install-recommends postgresql']);
      const { version, name } = target.cluster;
      if (!target.exists) {
        await mustRun('pg_createcluster', ['--port', String(port), version, name]);
        done.push(`created cluster ${version}/${name} on port ${port}`);
      }
      await mustRun('pg_ctlcluster', [version, name, 'start']);
      done.push(`started cluster ${version}/${name}`);
      const up = await pollFor(async () => ((await portOpen('127.0.0.1', port)) ? true : undefined), 60_000);
      if (!up) throw new SetupError(`PostgreSQL ${version}/${name} started but does not listen on 127.0.0.1:${port} after 60 s`, [`tail -n 50 /var/log/postgresql/postgresql-${version}-${name}.log`]);
      continue;
    }
    if (p.state === 'auth') {
      const c = (await clusters()).find((x) => x.port === port);
      if (!c || !existsSync(hbaPath(c))) throw new SetupError(`PostgreSQL on port ${port} asks ${user} for a password and no Debian cluster config was found to change that`, ['set ATTUNE_TEST_PG_URL / ATTUNE_DEMO_PG_URL to a URL with the password']);
      const before = readFileSync(hbaPath(c), 'utf8');
      const after = hbaWithTrust(before);
      if (after === before) throw new SetupError(`${hbaPath(c)} already trusts 127.0.0.1 but the server still asks for a password (${p.detail})`, [`pg_ctlcluster ${c.version} ${c.name} reload`]);
      writeFileSync(hbaPath(c), after);
      await mustRun('pg_ctlcluster', [c.version, c.name, 'reload']);
      done.push(`trusted TCP from 127.0.0.1 in ${hbaPath(c)} (${TRUST_LINE})`);
      continue;
    }
    throw new SetupError(`PostgreSQL on 127.0.0.1:${port} does not work: ${p.detail}`);
  }
  throw new SetupError(`PostgreSQL on 127.0.0.1:${port} is still not usable after: ${done.join('; ')}`);
}
