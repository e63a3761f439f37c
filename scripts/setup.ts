/**
 * `npm run setup`: bring this machine to what the build, the tests and the demo need, and do
 * nothing (in well under a second) when it is there already. `npm test` and `npm run demo` run it
 * first; `.ci/run` is `npm ci && npm test`.
 *
 *   1. the Debian packages of .ci/apt-packages.txt (one dpkg-query; apt-get only for missing ones)
 *   2. PostgreSQL on 127.0.0.1:5432: cluster created/started if down, TCP from 127.0.0.1 let in
 *      without a password (see postgres.ts for why a trust line)
 *   3. RabbitMQ on 127.0.0.1:5672: started if down, awaited until guest can log in
 *
 * Acting needs root and apt/dpkg (Debian, Ubuntu). Without them it changes nothing: it prints what
 * is missing and the exact commands to run, and exits 1. Servers named by a non-local URL are the
 * user's and are left alone.
 *
 *   node scripts/setup.ts [--for test|demo]
 *
 * Env: ATTUNE_SETUP_PACKAGES (package list file, default .ci/apt-packages.txt),
 *      ATTUNE_SKIP_SETUP=1 (do nothing: for machines provisioned another way),
 *      ATTUNE_TEST_PG_URL / ATTUNE_TEST_AMQP_URL (--for test) or ATTUNE_DEMO_PG_URL /
 *      ATTUNE_DEMO_AMQP_URL (--for demo): the servers to check.
 */
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { SetupError, endpoint, isLocalHost, isRoot, onPath, type Check } from './setup/host.ts';
import { aptCommands, installPackages, missingPackages, readPackageList } from './setup/packages.ts';
import { checkPostgres } from './setup/postgres.ts';
import { checkRabbit } from './setup/rabbitmq.ts';

const ROOT = join(import.meta.dirname, '..');
const DEFAULT_PG_URL = 'postgresql://postgres@127.0.0.1:5432/postgres';
const DEFAULT_AMQP_URL = 'amqp://guest:guest@127.0.0.1:5672/%2f';
const URL_ENV = {
  test: { pg: 'ATTUNE_TEST_PG_URL', amqp: 'ATTUNE_TEST_AMQP_URL' },
  demo: { pg: 'ATTUNE_DEMO_PG_URL', amqp: 'ATTUNE_DEMO_AMQP_URL' },
} as const;

function log(line: string): void {
  process.stdout.write(`setup: ${line}\n`);
}

function notDebian(packages: string[]): SetupError {
  return new SetupError(
    'this machine has no apt-get/dpkg-query (not Debian or Ubuntu), so the set-up cannot check or install anything. ' +
      `Install the equivalents of these Debian packages: ${packages.join(' ')}; start PostgreSQL (user postgres, no password ` +
      'on 127.0.0.1:5432) and RabbitMQ (guest/guest on 127.0.0.1:5672); then skip this step:',
    ['export ATTUNE_SKIP_SETUP=1'],
  );
}

async function packagesCheck(packages: string[]): Promise<Check & { missing: string[] }> {
  const missing = await missingPackages(packages);
  if (missing.length === 0) return { ready: true, missing };
  return {
    ready: false, missing,
    problem: `Debian packages not installed: ${missing.join(' ')}`,
    commands: aptCommands(missing),
    fix: async () => {
      await installPackages(missing, log);
      return `installed ${missing.join(' ')}`;
    },
  };
}

/**
 * A local server is checked now; one whose package is still missing after the install (its fix runs
 * after the packages' fix); a URL pointing elsewhere is the user's server and is left alone.
 */
async function serviceCheck(name: string, url: string, defaultPort: number, installed: boolean, check: (url: string) => Promise<Check>): Promise<Check | null> {
  const { host, port } = endpoint(url, defaultPort);
  if (!isLocalHost(host)) {
    log(`${name} at ${host}:${port} is not on this machine: not managed`);
    return null;
  }
  if (installed) return check(url);
  const fix = async (): Promise<string> => {
    const c = await check(url);
    return c.ready ? `${name} ready` : c.fix();
  };
  return { ready: false, problem: `${name} is not installed`, commands: [], fix };
}

async function main(): Promise<void> {
  const started = Date.now();
  const { values } = parseArgs({ options: { for: { type: 'string', default: 'test' } } });
  const purpose = values.for as keyof typeof URL_ENV;
  if (!(purpose in URL_ENV)) throw new SetupError(`--for must be test or demo, got '${values.for}'`);
  if (process.env.ATTUNE_SKIP_SETUP === '1') {
    log('skipped (ATTUNE_SKIP_SETUP=1)');
    return;
  }
  const listFile = process.env.ATTUNE_SETUP_PACKAGES || join(ROOT, '.ci/apt-packages.txt');
  const packages = readPackageList(listFile);
  if (!onPath('dpkg-query') || !onPath('apt-get')) throw notDebian(packages);

  const pgUrl = process.env[URL_ENV[purpose].pg] || DEFAULT_PG_URL;
  const amqpUrl = process.env[URL_ENV[purpose].amqp] || DEFAULT_AMQP_URL;
  const pkgs = await packagesCheck(packages);
  const services = {
    PostgreSQL: await serviceCheck('PostgreSQL', pgUrl, 5432, !pkgs.missing.includes('postgresql'), checkPostgres),
    RabbitMQ: await serviceCheck('RabbitMQ', amqpUrl, 5672, !pkgs.missing.includes('rabbitmq-server'), checkRabbit),
  };
  const checks = [pkgs, ...Object.values(services)].filter((c): c is Check => c !== null);

  const todo = checks.filter((c) => !c.ready);
  if (todo.length === 0) {
    const local = Object.entries(services).filter(([, c]) => c !== null).map(([name]) => name);
    const ready = local.length ? `, ${local.join(' and ')} ready` : '';
    log(`nothing to do: ${packages.length} Debian packages installed${ready} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
    return;
  }
  if (!isRoot()) {
    throw new SetupError(
      `not root (uid ${process.getuid?.()}), so nothing was changed. Missing:\n${todo.map((c) => `  - ${c.problem}\n`).join('')}` +
        'Run `npm run setup` as root, or these commands as root, then this command again:',
      todo.flatMap((c) => c.commands),
    );
  }
  for (const c of todo) log(await c.fix());
  log(`done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

main().catch((e: Error) => {
  if (e instanceof SetupError) {
    process.stderr.write(`setup: ${e.message}\n${e.commands.map((c) => `    ${c}\n`).join('')}`);
  } else {
    process.stderr.write(`setup failed: ${e.message}\n`);
  }
  process.exitCode = 1;
});
