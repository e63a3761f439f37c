/**
 * Issue 13 figures: packs with dependencies through the real agent (dist/attune-agent, local
 * PostgreSQL and RabbitMQ, Attune's core catalog, an image with python 3.11), each against a floor
 * measured in the same run:
 *
 * - first execution's environment set-up: (first execution's latency − the same action's warm
 *   latency) vs running the very commands the agent ran (its logged argv: `python3.11 -m venv …`,
 *   `…/bin/python3 -m pip install -r requirements.txt`) by hand in a fresh directory with a fresh
 *   pip cache. Rounds interleave agent and by-hand, each round a new pack (a wheel made at bench
 *   time: no network).
 * - a warm execution: p50 latency of a python action of a pack whose environment is ready vs the
 *   same script in a pack without dependencies (the image's interpreter, no environment), interleaved.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { connect, type Channel, type ChannelModel } from 'amqplib';
import { build } from '../../build/build.ts';
import { createTestDatabase, type TestDatabase } from '../../test/helpers/pg.ts';
import { AMQP_URL, attuneEnvelope, declareExchangesLikeAttune } from '../../test/helpers/amqp.ts';
import { createExecution, imagePath, insertAction, seedCoreRuntimes, separateIds, startAgent, type AgentProcess, consumingWorkerId } from '../../test/harness/platform.ts';
import { makeWheel } from '../../test/fixtures/environments/dep-pack.ts';
import { median, type BenchSection, type Figure } from '../lib.ts';
import { Completions } from '../completions.ts';

const HELLO_PY = 'print("hello from a python action")\n';

function percentile(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
}

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

export const environmentsSection: BenchSection = {
  id: 'environments',
  title: 'Issue 13: packs with dependencies (environment set-up, warm executions)',
  async run(ctx) {
    const built = await build({ log: () => {} });
    const work = mkdtempSync(join(tmpdir(), 'attune-bench-envs-'));
    const packsDir = join(work, 'packs');
    const envsDir = join(work, 'runtime_envs');
    const image = imagePath(join(work, 'image'), { python3: '/usr/bin/python3.11', 'python3.11': '/usr/bin/python3.11' });
    const requirements = `${makeWheel(work, '1.0.0', 'bench')}\n`;
    const writePack = (pack: string, withDeps: boolean) => {
      mkdirSync(join(packsDir, pack, 'actions'), { recursive: true });
      writeFileSync(join(packsDir, pack, 'actions', 'hello.py'), HELLO_PY);
      if (withDeps) writeFileSync(join(packsDir, pack, 'requirements.txt'), requirements);
    };

    let db: TestDatabase | undefined;
    let mq: ChannelModel | undefined;
    let agent: AgentProcess | undefined;
    const figures: Figure[] = [];
    try {
      db = await createTestDatabase('bench_envs');
      await separateIds(db.pool);
      const runtimeIds = await seedCoreRuntimes(db.pool);
      const rounds = Math.max(3, Math.min(ctx.runs, 5));
      const firstPacks = Array.from({ length: rounds }, (_, i) => `envbench_first${i}`);
      for (const [pack, deps] of [['envbench_warm', true], ['envbench_plain', false], ...firstPacks.map((p) => [p, true])] as [string, boolean][]) {
        writePack(pack, deps);
        await insertAction(db.pool, pack, { ref: `${pack}.hello`, entrypoint: 'hello.py', runtime: 'python' }, runtimeIds);
      }
      mq = await connect(AMQP_URL, { noDelay: true });
      await declareExchangesLikeAttune(mq);
      const completions = await Completions.open(mq);
      const ch: Channel = await mq.createChannel();

      const workerName = `bench-envs-${randomUUID().slice(0, 8)}`;
      agent = startAgent({
        PATH: image,
        ATTUNE__DATABASE__URL: db.url,
        ATTUNE__DATABASE__SCHEMA: db.schema,
        ATTUNE__MESSAGE_QUEUE__URL: AMQP_URL,
        ATTUNE__PACKS_BASE_DIR: packsDir,
        ATTUNE__ARTIFACTS_DIR: join(work, 'artifacts'),
        ATTUNE__RUNTIME_ENVS_DIR: envsDir,
        ATTUNE_WORKER_NAME: workerName,
      }, [], { executable: built.executable });
      const workerId = await consumingWorkerId(agent, db.pool, workerName, { timeoutMs: 60_000 });

      /** One execution of `{pack}.hello`, dispatched as Attune does; its latency (ms); throws unless completed. */
      const run = async (pack: string): Promise<number> => {
        const actionRef = `${pack}.hello`;
        const id = await createExecution(db!.pool, { actionRef, workerId });
        const env = attuneEnvelope('ExecutionRequested', {
          execution_id: id, worker_id: workerId, action_ref: actionRef, config: null,
          scheduled_attempt_updated_at: new Date().toISOString(), release_id: null, release_digest: null,
        }, 'executor');
        const t0 = performance.now();
        const done = completions.wait(id, 300_000);
        ch.publish('attune.executions', `execution.dispatch.worker.${workerId}`, env.body, { deliveryMode: 2, contentType: 'application/json', messageId: env.messageId });
        await done;
        const ms = performance.now() - t0;
        const row = (await db!.pool.query(`SELECT status::text AS status, result FROM execution WHERE id = $1`, [id])).rows[0] as { status: string; result: unknown };
        if (row.status !== 'completed') throw new Error(`bench: execution of ${actionRef} ended ${row.status}: ${JSON.stringify(row.result)}`);
        return ms;
      };

      /** The set-up commands the agent ran for `pack` (from its log), re-run by hand in a fresh directory. */
      const byHand = (pack: string, round: number): number => {
        const lines = agent!.logs.filter((l) => Array.isArray(l.argv) && typeof l.env_dir === 'string' && String(l.env_dir).startsWith(join(envsDir, pack) + '/'));
        if (lines.length < 2) throw new Error(`bench: expected the create and install commands of ${pack} in the agent's log, found ${lines.length}`);
        const envDir = String(lines[0].env_dir);
        // The agent creates in a temporary sibling (.{dir}.tmp-…) and installs into {dir}: both map to one fresh dir.
        const agentDir = new RegExp(`${escapeRe(dirname(envDir) + '/')}\\.?${escapeRe(basename(envDir))}(\\.tmp-[^/]+)?`, 'g');
        const dir = join(work, 'by-hand', String(round));
        const home = join(work, 'by-hand-home', String(round));
        mkdirSync(home, { recursive: true });
        const env = { PATH: image, HOME: home, XDG_CACHE_HOME: join(home, 'cache'), XDG_CONFIG_HOME: join(home, 'config'), PIP_CACHE_DIR: join(home, 'pip'), PIP_CONFIG_FILE: '/dev/null' };
        const t0 = performance.now();
        for (const l of lines) {
          const argv = (l.argv as string[]).map((a) => a.replace(agentDir, dir));
          const r = spawnSync(argv[0], argv.slice(1), { cwd: join(packsDir, pack), env, stdio: 'ignore' });
          if (r.status !== 0) throw new Error(`bench: by hand, '${argv.join(' ')}' exited with ${r.status ?? r.signal}`);
        }
        return performance.now() - t0;
      };

      ctx.log(`first set-up: ${rounds} rounds (agent's first execution of a new pack, then the same commands by hand) …`);
      const setup: number[] = [];
      const hand: number[] = [];
      const firsts: number[] = [];
      for (let i = 0; i < rounds; i++) {
        const pack = firstPacks[i];
        const first = await run(pack);
        const warm = median([await run(pack), await run(pack), await run(pack)]);
        firsts.push(first);
        setup.push(first - warm);
        hand.push(byHand(pack, i));
      }
      figures.push({
        name: 'first execution: environment set-up (venv + pip install of one local wheel)',
        value: median(setup), unit: 'ms',
        floor: { name: 'the same create + install commands by hand', value: median(hand) },
        target: { maxRatio: 1.2 },
        note: `medians of ${rounds} rounds, each a new pack; set-up = first execution's latency − the median of 3 warm ones; ` +
          `agent ${setup.map((x) => x.toFixed(0)).join('/')} ms, by hand ${hand.map((x) => x.toFixed(0)).join('/')} ms; first executions ${firsts.map((x) => x.toFixed(0)).join('/')} ms`,
      });

      await run('envbench_warm'); // creates it: not timed
      await run('envbench_plain');
      const n = Math.max(20, ctx.runs * 2);
      ctx.log(`warm executions: ${n} interleaved runs each …`);
      const lat = { warm: [] as number[], plain: [] as number[] };
      for (let i = 0; i < n; i++) {
        for (const k of (i % 2 ? ['warm', 'plain'] : ['plain', 'warm']) as ('warm' | 'plain')[]) lat[k].push(await run(`envbench_${k}`));
      }
      figures.push({
        name: 'warm execution p50 (python action of a pack with a ready environment)',
        value: percentile(lat.warm, 50), unit: 'ms',
        floor: { name: 'the same action in a pack without dependencies (no environment)', value: percentile(lat.plain, 50) },
        target: { maxAdded: 2 },
        note: `${n} runs each, interleaved; p50/p99 warm ${percentile(lat.warm, 50).toFixed(1)}/${percentile(lat.warm, 99).toFixed(1)} ms, ` +
          `no environment ${percentile(lat.plain, 50).toFixed(1)}/${percentile(lat.plain, 99).toFixed(1)} ms`,
      });
      return figures;
    } finally {
      await agent?.stop('SIGTERM');
      await mq?.close().catch(() => undefined);
      await db?.drop().catch(() => undefined);
      rmSync(work, { recursive: true, force: true });
    }
  },
};
