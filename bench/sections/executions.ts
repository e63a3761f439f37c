/**
 * Issue 4 figures: the real agent (dist/attune-agent) against the local PostgreSQL and RabbitMQ,
 * driven like Attune drives it (test/harness/platform.ts: rows + `ExecutionRequested`), each figure
 * against a floor measured in the same run:
 *
 * - dispatch → ExecutionCompleted latency of a trivial shell action (p50, p99) vs bench/floor-worker.ts,
 *   a separate process doing the same pieces minimally (one consume, the same two UPDATEs, the same
 *   spawn, one publish). Agent and floor runs are interleaved so load drift hits both alike.
 * - throughput with max_concurrent_tasks=10 vs the same spawns at concurrency 10 without any agent.
 * - idle RSS, and the peak RSS while one action writes 1 GiB to stdout (cap 10 MiB, §5.8).
 *
 * Development knobs (env): BENCH_DEBUG=1 (agent at debug level; timeline of the last executions,
 * spawn() blocking times, smaps), BENCH_AGENT_EXECUTABLE (e.g. a wrapper running dist/attune-agent.cjs
 * under `node --cpu-prof`), BENCH_THROUGHPUT_N (default 100), BENCH_AGENT_ENV='K=V …'.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type Channel, type ChannelModel } from 'amqplib';
import { build } from '../../build/build.ts';
import { createTestDatabase, type TestDatabase } from '../../test/helpers/pg.ts';
import { AMQP_URL, attuneEnvelope, declareExchangesLikeAttune } from '../../test/helpers/amqp.ts';
import { createExecution, insertAction, seedCoreRuntimes, separateIds, startAgent, type AgentProcess, consumingWorkerId } from '../../test/harness/platform.ts';
import { median, type BenchSection, type Figure } from '../lib.ts';
import { Completions } from '../completions.ts';

const MAX_CONCURRENT = 10;
const FLOOR_WORKER = new URL('../floor-worker.ts', import.meta.url).pathname;
const GIB = 1024 * 1024 * 1024;
const TRIVIAL = '#!/bin/bash\necho "hello from a trivial action"\n';
const BIG = `#!/bin/bash\nyes 0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ | head -c ${GIB}\n`;

interface Cpu { worker: number; reaped: number; postgres: number; rabbitmq: number }
const emptyCpu = (): Cpu => ({ worker: 0, reaped: 0, postgres: 0, rabbitmq: 0 });
const TICK_MS = 10; // USER_HZ = 100 on Linux

/** CPU time so far (ms): the worker (its own, and its reaped children's), every postgres and beam process. */
function cpuSnapshot(workerPid: number): Cpu {
  const snap = emptyCpu();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // gone meanwhile
    }
    const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const own = (Number(f[11]) + Number(f[12])) * TICK_MS; // utime + stime
    if (Number(entry) === workerPid) {
      snap.worker += own;
      snap.reaped += (Number(f[13]) + Number(f[14])) * TICK_MS; // cutime + cstime
    } else if (comm === 'postgres') snap.postgres += own;
    else if (comm.startsWith('beam')) snap.rabbitmq += own;
  }
  return snap;
}

function addCpu(into: Cpu, before: Cpu, after: Cpu): void {
  for (const k of Object.keys(into) as (keyof Cpu)[]) into[k] += after[k] - before[k];
}

function statusKb(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`bench: no ${field} for pid ${pid}`);
  return Number(m[1]);
}

function percentile(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The throughput floor: n spawns at concurrency c, timed inside a small separate Node process (the
 * bench process is big, and fork() cost grows with the parent's RSS — it measured 2–3× slower).
 */
function spawnFloorRate(n: number, c: number, argv: readonly string[]): number {
  const r = spawnSync(process.execPath, [FLOOR_WORKER, '--spawns', String(n), '--concurrency', String(c), '--argv', JSON.stringify(argv)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`bench: spawn floor failed (${r.status}): ${r.stderr}`);
  return n / ((JSON.parse(r.stdout) as { ms: number }).ms / 1000);
}

export const executionsSection: BenchSection = {
  id: 'executions',
  title: 'Issue 4: executions through the real agent (PostgreSQL + RabbitMQ)',
  async run(ctx) {
    const built = await build({ log: () => {} });
    const work = mkdtempSync(join(tmpdir(), 'attune-bench-exec-'));
    const actionsDir = join(work, 'packs', 'benchpack', 'actions');
    mkdirSync(actionsDir, { recursive: true });
    const trivialFile = join(actionsDir, 'trivial.sh');
    writeFileSync(trivialFile, TRIVIAL);
    writeFileSync(join(actionsDir, 'big.sh'), BIG);
    for (const f of ['trivial.sh', 'big.sh']) chmodSync(join(actionsDir, f), 0o755);
    const trivialArgv = ['/bin/bash', trivialFile];

    let db: TestDatabase | undefined;
    let mq: ChannelModel | undefined;
    let agent: AgentProcess | undefined;
    let floor: ChildProcess | undefined;
    const figures: Figure[] = [];
    try {
      db = await createTestDatabase('bench_exec');
      // Tests run agents against the same broker with their own databases: unique worker/execution ids.
      await separateIds(db.pool);
      const runtimeIds = await seedCoreRuntimes(db.pool);
      await insertAction(db.pool, 'benchpack', { ref: 'benchpack.trivial', entrypoint: 'trivial.sh', runtime: 'shell' }, runtimeIds);
      await insertAction(db.pool, 'benchpack', { ref: 'benchpack.big', entrypoint: 'big.sh', runtime: 'shell', timeout_seconds: 600 }, runtimeIds);
      // TCP_NODELAY like the agent and the floor: a dispatch is one small write that must go out at once.
      mq = await connect(AMQP_URL, { noDelay: true, clientProperties: { connection_name: `attune-bench-${process.pid}` } });
      await declareExchangesLikeAttune(mq);
      const completions = await Completions.open(mq);
      const ch: Channel = await mq.createChannel();

      const workerName = `bench-exec-${process.pid}`;
      agent = startAgent({
        ATTUNE__DATABASE__URL: db.url,
        ATTUNE__DATABASE__SCHEMA: db.schema,
        ATTUNE__MESSAGE_QUEUE__URL: AMQP_URL,
        ATTUNE__PACKS_BASE_DIR: join(work, 'packs'),
        ATTUNE__ARTIFACTS_DIR: join(work, 'artifacts'),
        ATTUNE__RUNTIME_ENVS_DIR: join(work, 'envs'),
        ATTUNE__WORKER__MAX_CONCURRENT_TASKS: String(MAX_CONCURRENT),
        ATTUNE_WORKER_NAME: workerName,
        ...(process.env.BENCH_DEBUG ? { ATTUNE__LOG__LEVEL: 'debug' } : {}),
        // e.g. BENCH_AGENT_ENV='MALLOC_ARENA_MAX=2' to try allocator settings on the agent
        ...Object.fromEntries((process.env.BENCH_AGENT_ENV ?? '').split(/\s+/).filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)])),
      }, [], { executable: process.env.BENCH_AGENT_EXECUTABLE ?? built.executable });
      const workerId = await consumingWorkerId(agent, db.pool, workerName, { timeoutMs: 60_000 });
      const pid = agent.child.pid!;
      await sleep(500);
      const idleStartMb = statusKb(pid, 'VmRSS') / 1024;
      if (process.env.BENCH_DEBUG) ctx.log(`agent smaps_rollup (start):\n${readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8')}`);

      const floorQueue = `bench.floor.${process.pid}.${randomUUID().slice(0, 8)}`;
      await ch.assertQueue(floorQueue, { exclusive: false, autoDelete: true, durable: false });
      await ch.bindQueue(floorQueue, 'attune.executions', `bench.floor.dispatch.${floorQueue}`);
      floor = spawn(process.execPath, [FLOOR_WORKER], {
        env: {
          PATH: process.env.PATH ?? '/usr/bin:/bin',
          FLOOR_PG_URL: db.url, FLOOR_SCHEMA: db.schema, FLOOR_AMQP_URL: AMQP_URL, FLOOR_QUEUE: floorQueue,
          FLOOR_ARGV: JSON.stringify(trivialArgv), FLOOR_PREFETCH: String(MAX_CONCURRENT),
        },
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      await new Promise<void>((resolve, reject) => {
        floor!.stdout!.once('data', () => resolve());
        floor!.once('exit', (c) => reject(new Error(`bench: floor worker exited with ${c} before it was ready`)));
      });

      type Target = 'agent' | 'floor';
      const publishedAt = new Map<number, number>();
      const routing = (t: Target) => (t === 'agent' ? `execution.dispatch.worker.${workerId}` : `bench.floor.dispatch.${floorQueue}`);
      /** Rows first (not timed), then dispatch all of them; resolves with each latency (ms). */
      const dispatch = async (t: Target, n: number, timeoutMs = 60_000): Promise<number[]> => {
        const ids: number[] = [];
        for (let i = 0; i < n; i++) ids.push(await createExecution(db!.pool, { actionRef: 'benchpack.trivial', workerId }));
        const bodies = ids.map((id) => attuneEnvelope('ExecutionRequested', {
          execution_id: id, worker_id: workerId, action_ref: 'benchpack.trivial', config: null,
          scheduled_attempt_updated_at: new Date().toISOString(), release_id: null, release_digest: null,
        }, 'executor'));
        return Promise.all(ids.map((id, i) => {
          const t0 = performance.now();
          publishedAt.set(id, Date.now());
          const done = completions.wait(id, timeoutMs).then(() => performance.now() - t0);
          ch.publish('attune.executions', routing(t), bodies[i].body, { deliveryMode: 2, contentType: 'application/json', messageId: bodies[i].messageId });
          return done;
        }));
      };

      ctx.log('latency: warm-up …');
      for (let i = 0; i < 3; i++) {
        await dispatch('agent', 1);
        await dispatch('floor', 1);
      }
      const runs = Math.max(20, ctx.runs * 2);
      ctx.log(`latency: ${runs} interleaved runs each …`);
      const lat: Record<Target, number[]> = { agent: [], floor: [] };
      for (let i = 0; i < runs; i++) {
        for (const t of (i % 2 ? ['agent', 'floor'] : ['floor', 'agent']) as Target[]) lat[t].push((await dispatch(t, 1))[0]);
      }
      const p = (t: Target, q: number) => percentile(lat[t], q);
      if (process.env.BENCH_DEBUG) {
        const last = agent.logs.filter((l) => typeof l.execution_id === 'number').slice(-16);
        for (const l of last) ctx.log(`agent log +${Date.parse(String(l.time)) - (publishedAt.get(Number(l.execution_id)) ?? 0)} ms: ${String(l.msg)}`);
      }
      figures.push({
        name: 'dispatch → ExecutionCompleted p50 (trivial shell action)',
        value: p('agent', 50), unit: 'ms',
        floor: { name: 'floor p50: consume + 2 UPDATEs + same spawn + publish', value: p('floor', 50) },
        target: { maxRatio: 1.5 },
        note: `${runs} runs each, interleaved; agent p50/p99 ${p('agent', 50).toFixed(1)}/${p('agent', 99).toFixed(1)} ms, floor p50/p99 ${p('floor', 50).toFixed(1)}/${p('floor', 99).toFixed(1)} ms`,
      });
      figures.push({
        name: 'dispatch → ExecutionCompleted p99',
        value: p('agent', 99), unit: 'ms',
        floor: { name: 'floor p99', value: p('floor', 99) },
      });

      const n = Number(process.env.BENCH_THROUGHPUT_N ?? 100);
      ctx.log(`throughput: ${n} trivial executions at max_concurrent_tasks=${MAX_CONCURRENT} …`);
      await dispatch('agent', MAX_CONCURRENT); // warm-up at full width
      // Interleaved rounds, medians: the spawn floor in particular swings with the machine's load.
      const rounds = 3;
      const rates = { agent: [] as number[], spawn: [] as number[], floor: [] as number[] };
      const rate = async (fn: () => Promise<unknown>) => {
        const t0 = performance.now();
        await fn();
        return n / ((performance.now() - t0) / 1000);
      };
      // Where the CPU goes (ms per execution): the worker process (+ the actions it reaped), PostgreSQL, RabbitMQ.
      const cpu = { agent: emptyCpu(), floor: emptyCpu() };
      const measured = async (who: 'agent' | 'floor', workerPid: number, fn: () => Promise<unknown>) => {
        const before = cpuSnapshot(workerPid);
        const r = await rate(fn);
        addCpu(cpu[who], before, cpuSnapshot(workerPid));
        return r;
      };
      for (let r = 0; r < rounds; r++) {
        rates.agent.push(await measured('agent', pid, () => dispatch('agent', n, 120_000)));
        rates.spawn.push(spawnFloorRate(n, MAX_CONCURRENT, trivialArgv));
        rates.floor.push(await measured('floor', floor!.pid!, () => dispatch('floor', n, 120_000)));
      }
      const perExec = (c: Cpu) => `worker ${(c.worker / (rounds * n)).toFixed(2)} (actions ${(c.reaped / (rounds * n)).toFixed(2)}), PostgreSQL ${(c.postgres / (rounds * n)).toFixed(2)}, RabbitMQ ${(c.rabbitmq / (rounds * n)).toFixed(2)}`;
      const agentRate = median(rates.agent);
      const spawnRate = median(rates.spawn);
      const floorWorkerRate = median(rates.floor);
      if (process.env.BENCH_DEBUG) {
        const ms = agent.logs.filter((l) => typeof l.spawn_ms === 'number').map((l) => Number(l.spawn_ms));
        ctx.log(`agent spawn() blocking: median ${median(ms).toFixed(2)} ms, p90 ${percentile(ms, 90).toFixed(2)} ms over ${ms.length} spawns`);
      }
      figures.push({
        name: `throughput, max_concurrent_tasks=${MAX_CONCURRENT}`,
        value: agentRate, unit: 'exec/s',
        floor: { name: `the same ${n} spawns at concurrency ${MAX_CONCURRENT}, no agent`, value: spawnRate },
        target: { minRatio: 0.7 },
        note: `medians of ${rounds} interleaved rounds of ${n} (agent ${rates.agent.map((x) => x.toFixed(0)).join('/')}, spawns ${rates.spawn.map((x) => x.toFixed(0)).join('/')}); ` +
          `for reference, the floor worker (same spawns + the 2 UPDATEs + one publish each, one process) did ${floorWorkerRate.toFixed(1)} exec/s, the agent ${(agentRate / floorWorkerRate).toFixed(2)}× of it; ` +
          `CPU ms per execution (2 cores): agent: ${perExec(cpu.agent)}; floor worker: ${perExec(cpu.floor)}`,
      });

      await sleep(1500);
      const idleMb = statusKb(pid, 'VmRSS') / 1024;
      if (process.env.BENCH_DEBUG) {
        ctx.log(`agent smaps_rollup (idle):\n${readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8')}`);
        writeFileSync(join(tmpdir(), 'attune-bench-agent-smaps.txt'), readFileSync(`/proc/${pid}/smaps`, 'utf8'));
      }
      figures.push({
        name: 'idle RSS (after the runs above)',
        value: idleMb, unit: 'MB',
        target: { maxValue: 80 },
        note: `right after start-up, before any execution: ${idleStartMb.toFixed(1)} MB`,
      });

      ctx.log('one action writing 1 GiB to stdout …');
      writeFileSync(`/proc/${pid}/clear_refs`, '5'); // VmHWM := current RSS
      const before = statusKb(pid, 'VmRSS') / 1024;
      const id = await createExecution(db.pool, { actionRef: 'benchpack.big', workerId });
      const body = attuneEnvelope('ExecutionRequested', { execution_id: id, worker_id: workerId, action_ref: 'benchpack.big', config: null, scheduled_attempt_updated_at: new Date().toISOString(), release_id: null, release_digest: null }, 'executor');
      const t = performance.now();
      const done = completions.wait(id, 300_000);
      ch.publish('attune.executions', routing('agent'), body.body, { deliveryMode: 2, contentType: 'application/json', messageId: body.messageId });
      await done;
      const bigMs = performance.now() - t;
      const peakMb = statusKb(pid, 'VmHWM') / 1024;
      if (process.env.BENCH_DEBUG) {
        await sleep(1000);
        ctx.log(`agent smaps_rollup (after the 1 GiB run, which ends with a full GC):\n${readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8')}`);
      }
      const row = (await db.pool.query(`SELECT status::text AS status, length(result->>'stdout') AS len FROM execution WHERE id = $1`, [id])).rows[0] as { status: string; len: number };
      figures.push({
        name: 'peak RSS while one action writes 1 GiB to stdout, above idle',
        value: peakMb - idleMb, unit: 'MB',
        target: { maxValue: 64 },
        note: `peak ${peakMb.toFixed(1)} MB (RSS ${before.toFixed(1)} MB just before); ${(bigMs / 1000).toFixed(1)} s; row ${row.status}, stdout kept ${row.len} chars (cap 10 MiB)`,
      });
      return figures;
    } finally {
      floor?.kill('SIGTERM');
      await agent?.stop('SIGTERM');
      await mq?.close().catch(() => undefined);
      await db?.drop().catch(() => undefined);
      rmSync(work, { recursive: true, force: true });
    }
  },
};
