/**
 * Issue 2 figures: start-up of the single executable, `--detect-only` against its slowest probe,
 * the portable folder's size on disk and on the wire, and peak memory. Every figure is compared
 * with a floor measured in the same run on the same machine (the bare Node 24 base, the probes
 * themselves, the stripped Node binary).
 */
import { basename, dirname } from 'node:path';
import { statSync } from 'node:fs';
import { build, CACHE_DIR } from '../../build/build.ts';
import { pinnedNode, strippedBasePath } from '../../build/sea.ts';
import { REPO_ROOT } from '../../build/build.ts';
import { AGENT, REAL_INTERPRETERS, createWorkspace, installAgent, rootCommand, type RunOptions } from '../../test/helpers/rootfs.ts';
import { diskUsage, interleavedMedians, medianPeakRssMb, tarGzipMb, type BenchSection, type Command, type Figure } from '../lib.ts';

const VERSION_ARG: Record<keyof typeof REAL_INTERPRETERS, string> = { bash: '--version', perl: '--version', python3: '--version', java: '-version', node: '--version' };

export const executableSection: BenchSection = {
  id: 'executable',
  title: 'Issue 2: the single executable and the portable folder',
  async run(ctx) {
    if (process.getuid?.() !== 0) throw new Error('bench executable: needs root (chroot root filesystems); run as root');
    const built = await build({ log: () => {} });
    const base = pinnedNode(REPO_ROOT);
    const ws = createWorkspace('bench');
    const figures: Figure[] = [];
    try {
      ctx.log('start-up on the host …');
      const [nodeMs, plainMs] = interleavedMedians([{ cmd: base.path, args: ['-e', '0'] }, { cmd: built.executable, args: ['--version'] }], ctx.runs);
      figures.push({
        name: '--version: dist/attune-agent (host)',
        value: plainMs,
        unit: 'ms',
        floor: { name: 'node -e 0, same Node 24 base', value: nodeMs },
        target: { maxRatio: 1.3 },
      });

      const root = ws.make('interpreters');
      installAgent(root.dir, built.portableAgentDir);
      // The JVM needs /proc; every in-root command gets it so they all pay the same wrapper cost.
      const opts: RunOptions = { proc: true };
      const inRoot = (argv: readonly string[]): Command => rootCommand(root.dir, argv, opts);

      ctx.log('start-up in a root filesystem …');
      const [nodeRootMs, portableMs] = interleavedMedians([inRoot([REAL_INTERPRETERS.node, '-e', '0']), inRoot([AGENT, '--version'])], ctx.runs);
      figures.push({
        name: '--version: portable folder (chroot)',
        value: portableMs,
        unit: 'ms',
        floor: { name: 'node -e 0 in the same root', value: nodeRootMs },
        target: { maxRatio: 1.3 },
      });

      ctx.log('--detect-only against each probe alone …');
      const names = Object.keys(REAL_INTERPRETERS) as (keyof typeof REAL_INTERPRETERS)[];
      const probeCmds = names.map((n) => inRoot([REAL_INTERPRETERS[n], VERSION_ARG[n]]));
      const medians = interleavedMedians([...probeCmds, inRoot([AGENT, '--version']), inRoot([AGENT, '--detect-only'])], ctx.runs);
      const probeMs = medians.slice(0, names.length);
      const [versionMs, detectMs] = medians.slice(names.length);
      const slowest = probeMs.indexOf(Math.max(...probeMs));
      const slowestName = `${names[slowest]} ${VERSION_ARG[names[slowest]]}`;
      figures.push({
        name: '--detect-only: 5 real interpreters',
        value: detectMs,
        unit: 'ms',
        floor: { name: `slowest probe alone (${slowestName})`, value: probeMs[slowest] },
        target: { maxRatio: 1.3 },
        note: `includes the agent's own start-up (${versionMs.toFixed(1)} ms for --version); probes alone: ${names.map((n, i) => `${n} ${probeMs[i].toFixed(1)}`).join(', ')} ms`,
      });
      figures.push({
        name: '--detect-only: 5 real interpreters',
        value: detectMs,
        unit: 'ms',
        floor: { name: `--version + slowest probe`, value: versionMs + probeMs[slowest] },
        target: { maxRatio: 1.3 },
        note: 'parallel probes: detection costs about one probe on top of start-up, not their sum',
      });

      ctx.log('sizes …');
      const stripped = strippedBasePath(CACHE_DIR, base.version);
      const strippedMb = statSync(stripped).size / 1048576;
      const du = diskUsage(built.portableAgentDir);
      figures.push({
        name: 'portable folder on disk',
        value: du.allocatedMb,
        unit: 'MB',
        floor: { name: 'stripped Node 24 binary', value: strippedMb },
        target: { maxValue: 120 },
        note: `${du.apparentMb.toFixed(1)} MB apparent size`,
      });
      const [folderGz, baseGz] = await Promise.all([tarGzipMb(built.portableRoot, ['opt']), tarGzipMb(dirname(stripped), [basename(stripped)])]);
      figures.push({
        name: 'portable folder, tar | gzip -6',
        value: folderGz,
        unit: 'MB',
        floor: { name: 'stripped Node 24 binary, gzip -6', value: baseGz },
        target: { maxValue: 45 },
      });

      ctx.log('peak memory …');
      const rssRuns = Math.max(3, Math.min(ctx.runs, 7));
      const rssNode = await medianPeakRssMb({ cmd: base.path, args: ['-e', '0'] }, rssRuns);
      const rssVersion = await medianPeakRssMb(inRoot([AGENT, '--version']), rssRuns);
      const rssDetect = await medianPeakRssMb(inRoot([AGENT, '--detect-only']), rssRuns);
      figures.push({ name: 'peak RSS: --version', value: rssVersion, unit: 'MB', floor: { name: 'node -e 0', value: rssNode } });
      figures.push({
        name: 'peak RSS: --detect-only',
        value: rssDetect,
        unit: 'MB',
        floor: { name: 'node -e 0', value: rssNode },
        target: { maxValue: 80 },
        note: 'VmHWM of the agent process (probes not included)',
      });
    } finally {
      ws.dispose();
    }
    return figures;
  },
};
