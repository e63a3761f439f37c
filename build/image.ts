/**
 * `npm run image`: builds the `agent-binary` and `agent-init` images of Dockerfile.agent with buildah,
 * without a Docker engine and without pulling a base image, and exports each as an OCI archive:
 *
 *   dist/images/attune-agent-binary.oci.tar   (tag attune-agent-binary:<version>)
 *   dist/images/attune-agent-init.oci.tar     (tag attune-agent-init:<version>)
 *
 * The Dockerfile's builder stage is replaced by the locally built one file (dist/attune-agent): this
 * script stages it as a build context (`stage`) and builds with `--build-arg AGENT_SOURCE=prebuilt`.
 * Digests are reproducible: file modes and mtimes are fixed (build/files.ts), and buildah's
 * `--timestamp` (SOURCE_DATE_EPOCH, default 1980-01-01) fixes the image and layer times.
 *
 *   node build/image.ts                 build (runs `npm run build` first if needed) and export
 *   node build/image.ts stage <dir>     only stage the context (<dir>/rootfs-binary, <dir>/rootfs-init, <dir>/empty)
 *
 * Needs: buildah (Debian package `buildah`); runs as root or in a user namespace buildah accepts.
 */
import { spawnSync } from 'node:child_process';
import {
  chmodSync, copyFileSync, existsSync, linkSync, lstatSync, lutimesSync, mkdirSync, readdirSync, rmSync, symlinkSync, utimesSync, writeFileSync,
} from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const DOCKERFILE = join(REPO_ROOT, 'Dockerfile.agent');
export const IMAGE_CACHE = join(REPO_ROOT, '.cache', 'image');
export const TARGETS = ['agent-binary', 'agent-init'] as const;
export type ImageTarget = (typeof TARGETS)[number];
/** Image name per target (Attune's names for the two images). */
export const IMAGE_NAMES: Record<ImageTarget, string> = { 'agent-binary': 'attune-agent-binary', 'agent-init': 'attune-agent-init' };
const DEFAULT_EPOCH = 315532800;
export const NONROOT_UID = 65532;

export function sourceEpoch(): number {
  const v = process.env.SOURCE_DATE_EPOCH;
  if (v === undefined || v === '') return DEFAULT_EPOCH;
  if (!/^\d+$/.test(v)) throw new Error(`image: SOURCE_DATE_EPOCH must be whole seconds since 1970, got '${v}'`);
  return Number(v);
}

// ───────────────────────────── staging ─────────────────────────────

/** Where both images carry the one file (Attune's images put theirs there too). */
export const IMAGE_AGENT_PATH = '/usr/local/bin/attune-agent';
/** busybox-static: the init image's /bin/sh, so Attune-style loaders (`/bin/sh -ec 'cp … && chmod …'`) run. */
export const BUSYBOX_SOURCE = '/bin/busybox';
/** The applets the init image links to busybox: a shell and what a copy step needs. */
export const INIT_APPLETS = ['sh', 'cp', 'chmod', 'mkdir', 'mv', 'rm', 'ls', 'cat', 'echo', 'test', 'true'] as const;

/**
 * The files of the final images, as a build context:
 *   <dir>/rootfs-binary/   /usr/local/bin/attune-agent (hard link to the one file), /etc/{passwd,group}
 *                          (root and nonroot 65532, so tools and `USER 65532` resolve a name)
 *   <dir>/rootfs-init/     the same, plus /bin/busybox (static) and /bin/<applet> links for INIT_APPLETS
 *   <dir>/empty/           becomes the agent-init volume mount point
 */
export function stageContext(dir: string, oneFile: string, epoch = sourceEpoch()): string {
  if (!existsSync(oneFile)) throw new Error(`image: ${oneFile} is missing (run npm run build)`);
  if (!existsSync(BUSYBOX_SOURCE)) throw new Error(`image: ${BUSYBOX_SOURCE} is missing; apt-get install busybox-static (the init image's shell)`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, 'empty'), { recursive: true });
  for (const variant of ['rootfs-binary', 'rootfs-init'] as const) {
    const rootfs = join(dir, variant);
    mkdirSync(join(rootfs, dirname(IMAGE_AGENT_PATH)), { recursive: true });
    place(oneFile, join(rootfs, IMAGE_AGENT_PATH), 0o555, true);
    mkdirSync(join(rootfs, 'etc'));
    const passwd = ['root:x:0:0:root:/root:/sbin/nologin', `nonroot:x:${NONROOT_UID}:${NONROOT_UID}:nonroot:/home/nonroot:/sbin/nologin`];
    const group = ['root:x:0:', `nonroot:x:${NONROOT_UID}:`];
    writeFileSync(join(rootfs, 'etc', 'passwd'), passwd.join('\n') + '\n');
    writeFileSync(join(rootfs, 'etc', 'group'), group.join('\n') + '\n');
    if (variant === 'rootfs-init') {
      mkdirSync(join(rootfs, 'bin'));
      place(BUSYBOX_SOURCE, join(rootfs, 'bin', 'busybox'), 0o555, false); // the system's file: never link it (its mode and mtime would change)
      for (const applet of INIT_APPLETS) symlinkSync('busybox', join(rootfs, 'bin', applet));
    }
  }
  fixTimes(dir, epoch);
  return dir;
}

/** A build output is hard-linked where possible (no 111 MB copy); anything else is copied. Then the fixed mode. */
function place(src: string, dst: string, mode: number, ownOutput: boolean): void {
  try {
    if (!ownOutput) throw new Error('copy');
    linkSync(src, dst);
  } catch {
    copyFileSync(src, dst);
  }
  chmodSync(dst, mode);
}

/** mtimes of the staged tree (symlinks included), directories 0755. */
function fixTimes(dir: string, epoch: number): void {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = lstatSync(p);
    if (st.isDirectory()) fixTimes(p, epoch);
    else if (st.isSymbolicLink()) lutimesSync(p, epoch, epoch);
    else utimesSync(p, epoch, epoch);
  }
  chmodSync(dir, 0o755);
  utimesSync(dir, epoch, epoch);
}

// ───────────────────────────── buildah ─────────────────────────────

export interface ImageBuildOptions {
  /** Staged context (stageContext). */
  context: string;
  /** buildah storage; a fresh one gives a build that no cache can influence. */
  storage: string;
  outDir: string;
  version: string;
  targets?: readonly ImageTarget[];
  epoch?: number;
  log?: (line: string) => void;
}

export interface BuiltImage { target: ImageTarget; tag: string; archive: string; digest: string; seconds: number }

export function buildah(storage: string, args: readonly string[]): string {
  const full = ['--root', join(storage, 'root'), '--runroot', join(storage, 'run'), '--storage-driver', 'vfs', ...args];
  const r = spawnSync('buildah', full, { encoding: 'utf8', maxBuffer: 64 << 20, env: { ...process.env, BUILDAH_ISOLATION: 'chroot' } });
  if (r.error) throw new Error(`image: cannot run buildah (${r.error.message}); apt-get install buildah`);
  if (r.status !== 0) throw new Error(`image: buildah ${full.join(' ')} failed (exit ${r.status}):\n${r.stderr}${r.stdout}`);
  return r.stdout;
}

/** The manifest digest recorded in an OCI archive's index.json. */
export function archiveDigest(archive: string): string {
  const r = spawnSync('tar', ['-xOf', archive, 'index.json'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`image: cannot read index.json from ${archive}: ${r.stderr}`);
  const index = JSON.parse(r.stdout) as { manifests: { digest: string }[] };
  if (index.manifests.length !== 1) throw new Error(`image: ${archive} holds ${index.manifests.length} manifests, expected 1`);
  return index.manifests[0].digest;
}

export function buildImages(opts: ImageBuildOptions): BuiltImage[] {
  const epoch = opts.epoch ?? sourceEpoch();
  const log = opts.log ?? (() => {});
  mkdirSync(opts.outDir, { recursive: true });
  const out: BuiltImage[] = [];
  for (const target of opts.targets ?? TARGETS) {
    const started = performance.now();
    const tag = `localhost/${IMAGE_NAMES[target]}:${opts.version}`;
    buildah(opts.storage, [
      'bud', '--isolation', 'chroot', '--pull-never', '--layers=false', '--timestamp', String(epoch),
      '--build-arg', 'AGENT_SOURCE=prebuilt', '--target', target, '-f', DOCKERFILE, '-t', tag, '--quiet', opts.context,
    ]);
    const archive = join(opts.outDir, `${IMAGE_NAMES[target]}.oci.tar`);
    rmSync(archive, { force: true });
    buildah(opts.storage, ['push', '--quiet', tag, `oci-archive:${archive}:${IMAGE_NAMES[target]}:${opts.version}`]);
    const digest = archiveDigest(archive);
    const seconds = (performance.now() - started) / 1000;
    log(`${target.padEnd(13)} ${tag}  ${digest}  ${archive}  (${seconds.toFixed(1)} s)`);
    out.push({ target, tag, archive, digest, seconds });
  }
  return out;
}

// ───────────────────────────── command line ─────────────────────────────

async function main(argv: string[]): Promise<void> {
  if (argv[0] === 'stage') {
    const dir = argv[1];
    if (!dir) throw new Error('usage: node build/image.ts stage <dir> [<one file>]');
    stageContext(resolve(dir), resolve(argv[2] ?? join(REPO_ROOT, 'dist', 'attune-agent')));
    return;
  }
  const { build } = await import('./build.ts');
  const b = await build({ log: (l) => process.stdout.write(l + '\n') });
  const { readFileSync } = await import('node:fs');
  const version = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
  const context = stageContext(join(IMAGE_CACHE, 'context'), b.executable);
  const storage = join(IMAGE_CACHE, 'storage');
  rmSync(storage, { recursive: true, force: true });
  const images = buildImages({ context, storage, outDir: join(b.outDir, 'images'), version, log: (l) => process.stdout.write(l + '\n') });
  rmSync(storage, { recursive: true, force: true });
  process.stdout.write(`built ${images.length} images (SOURCE_DATE_EPOCH ${sourceEpoch()})\n`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).catch((e: unknown) => {
    process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  });
}
