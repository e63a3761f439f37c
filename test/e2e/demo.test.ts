/**
 * `npm run demo` (examples/demo.ts) never hangs: a broker it cannot reach, or one it loses while the
 * agent runs, ends it within seconds with exit 1, what failed and the fix; the agent it started is
 * stopped, its vhost and database are removed, and no process of it is left.
 *
 * The demo's processes are found by content: everything it spawns with its own environment carries
 * this test's marker variable; the agent (started with a clean environment) carries the demo's
 * database name in ATTUNE__DATABASE__URL.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import pg from 'pg';
import { AMQP_URL } from '../helpers/amqp.ts';
import { PG_ADMIN_URL } from '../helpers/pg.ts';
import { TcpProxy } from '../helpers/proxy.ts';

const ROOT = join(import.meta.dirname, '../..');
const proxies: TcpProxy[] = [];
after(async () => {
  for (const p of proxies) await p.close();
});

interface DemoRun { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string; ms: number; marker: string }

/** Run the demo; `onLine` sees each stdout line as it comes. Killed (and the test failed) after 90 s. */
function runDemo(env: Record<string, string>, onLine: (line: string) => void = () => undefined): Promise<DemoRun> {
  const marker = randomUUID();
  const started = Date.now();
  const child = spawn(process.execPath, [join(ROOT, 'examples/demo.ts')], {
    cwd: ROOT,
    env: { ...process.env, ATTUNE_DEMO_PG_URL: PG_ADMIN_URL, ATTUNE_DEMO_AMQP_URL: AMQP_URL, ATTUNE_DEMO_TEST_MARKER: marker, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  let partial = '';
  child.stdout.on('data', (d: Buffer) => {
    stdout += d;
    partial += d;
    const lines = partial.split('\n');
    partial = lines.pop()!;
    for (const l of lines) onLine(l);
  });
  child.stderr.on('data', (d: Buffer) => (stderr += d));
  const killer = setTimeout(() => child.kill('SIGKILL'), 90_000);
  return new Promise((resolve) => {
    child.on('close', (code, signal) => {
      clearTimeout(killer);
      resolve({ code, signal, stdout, stderr, ms: Date.now() - started, marker });
    });
  });
}

/** Live processes whose environment contains `needle` (root reads every /proc/<pid>/environ). */
function processesWith(needle: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      if (readFileSync(`/proc/${pid}/environ`).includes(needle)) found.push(`${pid} ${readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ')}`);
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return found;
}

async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

test('unreachable broker: exit 1 within seconds, what failed and the fix, no process left', async () => {
  const port = await closedPort();
  const r = await runDemo({ ATTUNE_DEMO_AMQP_URL: `amqp://guest:guest@127.0.0.1:${port}/%2f` });
  assert.equal(r.code, 1, `exit code; stdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
  assert.ok(r.ms < 15_000, `took ${r.ms} ms`);
  assert.match(r.stderr, new RegExp(`^demo failed: RabbitMQ at 127\\.0\\.0\\.1:${port} is unreachable .*ECONNREFUSED`, 'm'));
  assert.match(r.stderr, /^fix: run `npm run setup` as root .*ATTUNE_DEMO_AMQP_URL$/m);
  assert.doesNotMatch(r.stderr, /^\s+at /m, 'no stack trace');
  assert.doesNotMatch(r.stdout, /== build/, 'it stops before building');
  assert.deepEqual(processesWith(r.marker), []);
});

test('broker lost while the agent starts: agent stopped, vhost and database removed, exit 1 in seconds', async () => {
  const target = new URL(AMQP_URL);
  const proxy = await TcpProxy.start(Number(target.port || 5672), target.hostname);
  proxies.push(proxy);
  let cutAt = 0;
  const r = await runDemo({ ATTUNE_DEMO_AMQP_URL: proxy.url(AMQP_URL) }, (line) => {
    // The demo spawns the agent right after printing this line, with its own broker connection open.
    if (line.startsWith('== start the agent') && !cutAt) {
      cutAt = Date.now();
      proxy.goDown();
    }
  });
  const out = `stdout:\n${r.stdout}\nstderr:\n${r.stderr}`;
  assert.ok(cutAt > 0, `the demo never reached the agent start; ${out}`);
  assert.equal(r.code, 1, out);
  const afterCut = Date.now() - cutAt;
  assert.ok(afterCut < 30_000, `exited ${afterCut} ms after the cut`);
  assert.match(r.stderr, /^demo failed: the demo lost its RabbitMQ connection$/m, out);
  assert.match(r.stderr, /^fix: check that RabbitMQ is up/m, out);

  const vhost = /^== RabbitMQ vhost (attune-agent-demo-[0-9a-f]+) /m.exec(r.stdout)?.[1];
  const dbName = /^== database (attune_agent_demo_[0-9a-f]+) /m.exec(r.stdout)?.[1];
  assert.ok(vhost && dbName, out);
  assert.match(r.stdout, /^== clean up\n {2}stop the agent\n/m, 'the agent it started is stopped first');
  assert.deepEqual(processesWith(r.marker), [], 'no process with the demo\'s environment');
  assert.deepEqual(processesWith(dbName), [], 'no agent of this demo');

  const vhosts = execFileSync('rabbitmqctl', ['-q', 'list_vhosts', '--no-table-headers'], { encoding: 'utf8' }).split('\n').map((l) => l.trim());
  assert.ok(!vhosts.includes(vhost), `vhost ${vhost} still exists`);
  const admin = new pg.Client({ connectionString: PG_ADMIN_URL });
  await admin.connect();
  try {
    const left = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [dbName]);
    assert.equal(left.rowCount, 0, `database ${dbName} still exists`);
  } finally {
    await admin.end();
  }
});
