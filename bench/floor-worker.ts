/**
 * The floor of the executions benchmark: the pieces the agent needs for one execution, done
 * minimally — consume the dispatch (amqplib), the agent's `running` claim (one UPDATE that also
 * returns the row), spawn the same interpreter on the same file and collect its output, the same
 * terminal UPDATE, publish the completion (plain channel, no confirm). No envelope validation, no
 * other row loads, no environment building, no logs, no log files, no status messages. Started by
 * bench/sections/executions.ts as its own process.
 *
 * env: FLOOR_PG_URL, FLOOR_SCHEMA, FLOOR_AMQP_URL, FLOOR_QUEUE, FLOOR_ARGV (JSON array), FLOOR_PREFETCH
 */
import { spawn } from 'node:child_process';
import pg from 'pg';
import { connect } from 'amqplib';
import { writeTerminal } from '../src/db/executions.ts';
import { claimExecution } from '../test/helpers/db-reads.ts';

// `--spawns N --concurrency C --argv JSON`: only the throughput floor — N spawns of argv, C at a
// time, from this small process (the bench process itself is big: fork() costs grow with RSS).
if (process.argv[2] === '--spawns') {
  const [n, c, a] = [Number(process.argv[3]), Number(process.argv[5]), JSON.parse(process.argv[7]) as string[]];
  const once = () => new Promise<void>((resolve, reject) => {
    const child = spawn(a[0], a.slice(1), { env: { PATH: '/usr/bin:/bin' }, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.resume();
    child.stderr.resume();
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`exit ${code}`))));
  });
  let next = 0;
  const batch = () => Promise.all(Array.from({ length: Math.min(c, n) }, async () => {
    while (next < n) {
      next++;
      await once();
    }
  }));
  next = n - c; // warm-up: c spawns
  await batch();
  next = 0;
  const t = performance.now();
  await batch();
  process.stdout.write(JSON.stringify({ ms: performance.now() - t }) + '\n');
  process.exit(0);
}

const env = (k: string): string => {
  const v = process.env[k];
  if (!v) throw new Error(`floor-worker: ${k} is not set`);
  return v;
};
const argv = JSON.parse(env('FLOOR_ARGV')) as string[];
const prefetch = Number(process.env.FLOOR_PREFETCH ?? 10);
const pool = new pg.Pool({ connectionString: env('FLOOR_PG_URL'), options: `-c search_path=${env('FLOOR_SCHEMA')}`, max: prefetch });
const conn = await connect(env('FLOOR_AMQP_URL'), { noDelay: true }); // as the agent's connection
const ch = await conn.createChannel();
await ch.prefetch(prefetch);

function runOnce(): Promise<{ code: number; stdout: string; ms: number }> {
  const t = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), { env: { PATH: '/usr/bin:/bin' }, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.resume();
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout: Buffer.concat(out).toString('utf8'), ms: Math.round(performance.now() - t) }));
  });
}

await ch.consume(env('FLOOR_QUEUE'), (msg) => {
  if (!msg) return;
  const id = (JSON.parse(msg.content.toString('utf8')) as { payload: { execution_id: number } }).payload.execution_id;
  ch.ack(msg);
  void (async () => {
    await claimExecution(pool, id, { releaseId: null, releaseDigest: null });
    const r = await runOnce();
    const w = await writeTerminal(pool, id, r.code === 0 ? 'completed' : 'failed', { exit_code: r.code, duration_ms: r.ms, succeeded: r.code === 0, stdout: r.stdout });
    ch.publish('attune.executions', 'execution.completed', Buffer.from(JSON.stringify({ payload: { execution_id: id, status: 'Completed', result: w?.result } })));
  })().catch((e: Error) => process.stderr.write(`floor-worker: execution ${id}: ${e.message}\n`));
});
process.stdout.write('ready\n');
process.on('SIGTERM', () => {
  void Promise.allSettled([conn.close(), pool.end()]).then(() => process.exit(0));
});
