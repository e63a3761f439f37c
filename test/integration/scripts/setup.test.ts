/**
 * scripts/setup.ts run for real on this machine, in the cases that change nothing on it: everything
 * present (a fast no-op, as root and not), something missing as a non-root user (the exact commands,
 * nothing done), no apt/dpkg, servers elsewhere, the opt-out. The root paths that install, create a
 * cluster or start a server are not run here: the servers are shared with the other test files.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ROOT = join(import.meta.dirname, '../../..');
const SCRIPT = join(ROOT, 'scripts/setup.ts');
const NOBODY = 65532;
const work = mkdtempSync(join(tmpdir(), 'attune-setup-test-'));
chmodSync(work, 0o755);
after(() => rmSync(work, { recursive: true, force: true }));

interface Ran { code: number | null; stdout: string; stderr: string; ms: number }

/** Run the script (as uid 65532 when `nonRoot`; this suite runs as root) and collect everything. */
function setup(env: Record<string, string> = {}, opts: { nonRoot?: boolean; args?: string[] } = {}): Promise<Ran> {
  const node = process.execPath;
  const asNobody = opts.nonRoot && process.getuid?.() === 0;
  const [cmd, args] = asNobody
    ? ['setpriv', ['--reuid', String(NOBODY), '--regid', String(NOBODY), '--clear-groups', node, SCRIPT, ...(opts.args ?? [])]]
    : [node, [SCRIPT, ...(opts.args ?? [])]];
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd as string, args as string[], { cwd: ROOT, env: { ...process.env, ATTUNE_SKIP_SETUP: '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: Date.now() - started });
    });
  });
}

function packageList(...names: string[]): string {
  const file = join(work, `packages-${names.join('-')}.txt`);
  writeFileSync(file, `# test list\n${names.join('\n')}\n`, { mode: 0o644 });
  return file;
}

async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

function assertNoStack(r: Ran): void {
  assert.doesNotMatch(r.stderr, /^\s+at /m, `no stack trace:\n${r.stderr}`);
  assert.doesNotMatch(r.stderr, /\bError:|node:internal/, `no raw error:\n${r.stderr}`);
}

test('everything installed and running: exit 0 in seconds, nothing done', async () => {
  const r = await setup();
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^setup: nothing to do: \d+ Debian packages installed, PostgreSQL and RabbitMQ ready/m);
  assert.doesNotMatch(r.stdout + r.stderr, /apt-get|started|created|trusted/);
  assert.ok(r.ms < 5000, `took ${r.ms} ms`);
});

test('as a non-root user on a ready machine it is the same no-op (exit 0)', async () => {
  const r = await setup({}, { nonRoot: true });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /nothing to do/);
});

test('non-root with a package missing: prints the exact apt-get commands, changes nothing, exit 1', async () => {
  const r = await setup({ ATTUNE_SETUP_PACKAGES: packageList('python3', 'attune-no-such-package') }, { nonRoot: true });
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stderr, /^setup: not root \(uid 65532\), so nothing was changed/m);
  assert.match(r.stderr, /Debian packages not installed: attune-no-such-package$/m);
  assert.match(r.stderr, /^ {4}apt-get update$/m);
  assert.match(r.stderr, /^ {4}DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends attune-no-such-package$/m);
  assertNoStack(r);
  assert.ok(r.ms < 5000, `took ${r.ms} ms`);
});

test('non-root with both servers down: prints how to start each, starts nothing, exit 1', async () => {
  const [pgPort, mqPort] = [await closedPort(), await closedPort()];
  const r = await setup({
    ATTUNE_TEST_PG_URL: `postgresql://postgres@127.0.0.1:${pgPort}/postgres`,
    ATTUNE_TEST_AMQP_URL: `amqp://guest:guest@127.0.0.1:${mqPort}/%2f`,
  }, { nonRoot: true });
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stderr, new RegExp(`PostgreSQL is not running \\(nothing listens on 127\\.0\\.0\\.1:${pgPort}\\)`));
  assert.match(r.stderr, new RegExp(`^ {4}pg_createcluster --port ${pgPort} \\d+ \\w+$`, 'm'));
  assert.match(r.stderr, /^ {4}pg_ctlcluster \d+ \w+ start$/m);
  assert.match(r.stderr, /RabbitMQ is not running/);
  assert.match(r.stderr, /^ {4}(rabbitmq-server -detached|systemctl start rabbitmq-server)$/m);
  assertNoStack(r);
});

test('no apt-get/dpkg (not Debian): names every package and the opt-out, exit 1 without acting', async () => {
  const emptyBin = mkdtempSync(join(work, 'bin-'));
  // As root: the check for the tools comes before anything that could act.
  const r = await setup({ PATH: emptyBin });
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stderr, /no apt-get\/dpkg-query \(not Debian or Ubuntu\)/);
  assert.match(r.stderr, /patchelf busybox-static .* rabbitmq-server gcc libc6-dev/);
  assert.match(r.stderr, /^ {4}export ATTUNE_SKIP_SETUP=1$/m);
  assertNoStack(r);
});

test('ATTUNE_SKIP_SETUP=1 does nothing at all', async () => {
  const r = await setup({ ATTUNE_SKIP_SETUP: '1', PATH: '/nonexistent' });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'setup: skipped (ATTUNE_SKIP_SETUP=1)\n');
});

test('servers on other hosts are the user\'s: not probed, not managed', async () => {
  const r = await setup({ ATTUNE_TEST_PG_URL: 'postgresql://postgres@192.0.2.1:5432/postgres', ATTUNE_TEST_AMQP_URL: 'amqp://u:p@192.0.2.1:5672/%2f' });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /PostgreSQL at 192\.0\.2\.1:5432 is not on this machine: not managed/);
  assert.match(r.stdout, /RabbitMQ at 192\.0\.2\.1:5672 is not on this machine: not managed/);
  assert.ok(r.ms < 5000, `took ${r.ms} ms (a probe of 192.0.2.1 would hang until its timeout)`);
});

test('a bad --for value is refused with the accepted ones', async () => {
  const r = await setup({}, { args: ['--for', 'bench'] });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /--for must be test or demo, got 'bench'/);
  assertNoStack(r);
});
