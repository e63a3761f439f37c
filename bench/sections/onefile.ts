/**
 * Issue 16 figures: the one file (dist/attune-agent) against the portable folder it replaces, both
 * in the same Debian-like root, same run, as ratios:
 *   - `--version`, warm (page cache warm; the one file unpacks into memfds every start) and first
 *     start (the files' pages evicted from the page cache first, with `dd iflag=nocache`);
 *   - the same for the one file without /proc (libraries from the per-uid cache dir): warm (cache
 *     hit, every file checked) and first (cache dir removed: extracts ~5.5 MB);
 *   - idle RSS of a registered worker, plus what the memfds hold beyond the mapped pages (the
 *     memory-backed copy: it stays in RAM whether mapped or not);
 *   - file size and gzip size (budget ≤ 120 MB / ≤ 45 MB).
 * Needs root (chroot) and the local PostgreSQL and RabbitMQ (the idle workers register).
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { build } from '../../build/build.ts';
import { listTree } from '../../build/files.ts';
import { AGENT, addHostFile, createWorkspace, installAgent, rootCommand, type RunOptions } from '../../test/helpers/rootfs.ts';
import { createTestDatabase } from '../../test/helpers/pg.ts';
import { AMQP_URL } from '../../test/helpers/amqp.ts';
import { startAgent, type AgentProcess } from '../../test/harness/platform.ts';
import { diskUsage, interleavedMedians, median, tarGzipMb, timeOnce, type BenchSection, type Command, type Figure } from '../lib.ts';

const ONE = '/usr/local/bin/attune-agent';

/** Drop a file's pages from the page cache (POSIX_FADV_DONTNEED through GNU dd). */
function evict(files: readonly string[]): void {
  for (const f of files) {
    const r = spawnSync('dd', [`if=${f}`, 'iflag=nocache', 'count=0', 'status=none']);
    if (r.status !== 0) throw new Error(`bench: dd iflag=nocache ${f} failed: ${r.stderr}`);
  }
}

/** Medians of `runs` first starts each, interleaved; `before` runs before every start. */
function coldMedians(cases: readonly { cmd: Command; before: () => void }[], runs: number): number[] {
  const times: number[][] = cases.map(() => []);
  for (let i = 0; i < runs; i++) {
    cases.forEach((c, k) => {
      c.before();
      times[k].push(timeOnce(c.cmd));
    });
  }
  return times.map(median);
}

interface Footprint { rssMb: number; shmemMb: number; memfdMb: number; totalMb: number }

function kb(status: string, field: string): number {
  return Number(new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(status)?.[1] ?? 0);
}

/** RSS, the part of it that is shared memory, and the memfds' full size: total = RSS − mapped shmem + memfds. */
function footprint(pid: number): Footprint {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rssMb = kb(status, 'VmRSS') / 1024;
  const shmemMb = kb(status, 'RssShmem') / 1024;
  let memfd = 0;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith('/memfd:')) memfd += statSync(`/proc/${pid}/fd/${fd}`).size;
    } catch {
      /* closed meanwhile */
    }
  }
  const memfdMb = memfd / 1048576;
  return { rssMb, shmemMb, memfdMb, totalMb: rssMb - shmemMb + memfdMb };
}

export const onefileSection: BenchSection = {
  id: 'onefile',
  title: 'Issue 16: the one file vs the portable folder',
  async run(ctx) {
    if (process.getuid?.() !== 0) throw new Error('bench onefile: needs root (chroot root filesystems); run as root');
    const built = await build({ log: () => {} });
    const ws = createWorkspace('bench-onefile');
    const figures: Figure[] = [];
    const agents: AgentProcess[] = [];
    const db = await createTestDatabase('bench_onefile');
    try {
      const root = ws.make('interpreters');
      installAgent(root.dir, built.portableAgentDir);
      addHostFile(root.dir, built.executable, ONE);
      const inRoot = (argv: readonly string[], opts: RunOptions): Command => rootCommand(root.dir, argv, opts);
      const withProc: RunOptions = { proc: true };
      const noProc: RunOptions = {};
      const oneFiles = [join(root.dir, ONE)];
      const folderFiles = listTree(join(root.dir, 'opt/attune/agent')).map((r) => join(root.dir, 'opt/attune/agent', r));
      const cacheDir = join(root.dir, 'tmp', 'attune-agent-0');

      ctx.log('--version, warm …');
      const [folderWarm, oneWarm, diskWarm] = interleavedMedians([
        inRoot([AGENT, '--version'], withProc), inRoot([ONE, '--version'], withProc), inRoot([ONE, '--version'], noProc),
      ], ctx.runs);
      figures.push({ name: '--version warm: one file (memfds)', value: oneWarm, unit: 'ms', floor: { name: 'portable folder', value: folderWarm }, target: { maxRatio: 1.15 } });
      figures.push({ name: '--version warm: one file, no /proc (cache dir hit)', value: diskWarm, unit: 'ms', floor: { name: 'portable folder', value: folderWarm }, target: { maxRatio: 1.25 } });

      ctx.log('--version, first start (page cache evicted) …');
      const coldRuns = Math.max(3, Math.min(ctx.runs, 9));
      const [folderCold, oneCold, diskCold] = coldMedians([
        { cmd: inRoot([AGENT, '--version'], withProc), before: () => evict(folderFiles) },
        { cmd: inRoot([ONE, '--version'], withProc), before: () => evict(oneFiles) },
        { cmd: inRoot([ONE, '--version'], noProc), before: () => { rmSync(cacheDir, { recursive: true, force: true }); evict(oneFiles); } },
      ], coldRuns);
      figures.push({ name: '--version first start: one file (memfds)', value: oneCold, unit: 'ms', floor: { name: 'portable folder, evicted', value: folderCold }, target: { maxRatio: 1.25 } });
      figures.push({
        name: '--version first start: one file, no /proc (extracts to the cache dir)', value: diskCold, unit: 'ms',
        floor: { name: 'portable folder, evicted', value: folderCold }, target: { maxRatio: 1.5 },
        note: 'the cache dir is removed and the file evicted before each start: it writes and checks ~5.5 MB',
      });

      ctx.log('idle workers …');
      const startIdle = async (name: string, exe: string, opts: RunOptions, extra: Record<string, string> = {}): Promise<AgentProcess> => {
        const env = {
          ...extra,
          ATTUNE__DATABASE__URL: db.url,
          ATTUNE__DATABASE__SCHEMA: db.schema,
          ATTUNE__MESSAGE_QUEUE__URL: AMQP_URL,
          ATTUNE__PACKS_BASE_DIR: '/tmp',
          ATTUNE__ARTIFACTS_DIR: '/tmp',
          ATTUNE__RUNTIME_ENVS_DIR: '/tmp',
          ATTUNE_WORKER_NAME: `bench-onefile-${name}-${process.pid}`,
          ATTUNE_WORKER_RUNTIMES: 'shell',
        };
        // With a namespace the variables travel in the command line (env -i K=V); a bare chroot gets them as its environment.
        const c = rootCommand(root.dir, [exe], { ...opts, env });
        const a = startAgent(c.env ?? {}, c.args, { executable: c.cmd });
        agents.push(a);
        await a.waitForLog(`${name} to consume`, (l) => l.msg === 'consuming execution dispatches', { timeoutMs: 60_000 });
        return a;
      };
      // Three registered workers at rest, all with /proc (without it the agent cannot drop its start-up
      // pages when idle, src/worker/idle-trim.ts: that would measure /proc, not the cache dir).
      const folder = await startIdle('folder', AGENT, withProc);
      const one = await startIdle('memory', ONE, withProc);
      const disk = await startIdle('disk', ONE, withProc, { ATTUNE_AGENT_UNPACK: 'disk' });
      await sleep(4000); // past the start-up trim (IDLE_TRIM_MS) with margin
      const [f, o, d] = [folder, one, disk].map((a) => footprint(a.child.pid!));
      figures.push({
        name: 'idle worker: one file (memfds), RSS + memfd copy', value: o.totalMb, unit: 'MB',
        floor: { name: 'portable folder RSS', value: f.totalMb }, target: { maxRatio: 1.25 },
        note: `one file: RSS ${o.rssMb.toFixed(1)} MB of which mapped memfd pages ${o.shmemMb.toFixed(1)} MB; memfds hold ${o.memfdMb.toFixed(1)} MB in all`,
      });
      figures.push({
        name: 'idle worker: one file, cache dir (ATTUNE_AGENT_UNPACK=disk), RSS', value: d.totalMb, unit: 'MB',
        floor: { name: 'portable folder RSS', value: f.totalMb }, target: { maxRatio: 1.1 },
      });

      ctx.log('sizes …');
      const oneMb = statSync(built.executable).size / 1048576;
      const folderMb = diskUsage(built.portableAgentDir).apparentMb;
      figures.push({ name: 'one file size', value: oneMb, unit: 'MB', floor: { name: 'portable folder (apparent)', value: folderMb }, target: { maxValue: 120 } });
      const [oneGz, folderGz] = await Promise.all([
        tarGzipMb(dirname(built.executable), [basename(built.executable)]),
        tarGzipMb(built.portableRoot, ['opt']),
      ]);
      figures.push({ name: 'one file, tar | gzip -6', value: oneGz, unit: 'MB', floor: { name: 'portable folder, tar | gzip -6', value: folderGz }, target: { maxValue: 45 } });
    } finally {
      for (const a of agents) await a.stop('SIGTERM');
      await db.drop();
      ws.dispose();
    }
    return figures;
  },
};
