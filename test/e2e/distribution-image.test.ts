/**
 * Dockerfile.agent built with buildah (no Docker engine, no base image pulled: AGENT_SOURCE=prebuilt
 * takes the locally built one file), exported as OCI archives; the archives unpack (umoci) and run
 * under runc like a container engine would run them - including Attune's loader command line in the
 * agent-init image, into a volume that a busybox root then mounts read-only; two builds in separate,
 * empty buildah storages give the same manifest digest.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build, type BuildResult } from '../../build/build.ts';
import { buildImages, stageContext, IMAGE_AGENT_PATH, IMAGE_NAMES, NONROOT_UID, type BuiltImage, type ImageTarget } from '../../build/image.ts';
import { AGENT, AGENT_DIR, createWorkspace, describeRun, runInRoot } from '../helpers/rootfs.ts';
import { createHash } from 'node:crypto';

const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
const work = mkdtempSync(join(tmpdir(), 'attune-image-'));
const ws = createWorkspace('image');
let built: BuildResult;
const images = new Map<ImageTarget, BuiltImage>();
let rebuiltInitDigest: string;
let runs = 0;


function tool(cmd: string, args: readonly string[], opts: { input?: string } = {}): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', input: opts.input, maxBuffer: 64 << 20, timeout: 120_000 });
  if (r.error) throw new Error(`${cmd}: ${r.error.message} (apt-get install ${cmd})`);
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function blob(archive: string, digest: string): string {
  const r = tool('tar', ['-xOf', archive, `blobs/sha256/${digest.replace(/^sha256:/, '')}`]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
}

interface ImageConfig { architecture: string; os: string; created: string; config: { User?: string; Entrypoint?: string[]; Cmd?: string[] } }

function imageConfig(img: BuiltImage): { config: ImageConfig; layers: number } {
  const manifest = JSON.parse(blob(img.archive, img.digest)) as { config: { digest: string }; layers: unknown[] };
  return { config: JSON.parse(blob(img.archive, manifest.config.digest)) as ImageConfig, layers: manifest.layers.length };
}

const bundles = new Map<ImageTarget, { bundle: string; config: string }>();

/**
 * The runc bundle of an image (umoci-unpacked once per image), its config.json set up to run `args`
 * with `mounts`, runnable here (see packaging notes): no terminal, no rlimits, read-only root.
 */
function bundleFor(img: BuiltImage, args: string[], mounts: { destination: string; type: string; source: string; options: string[] }[] = []): string {
  let b = bundles.get(img.target);
  if (!b) {
    const layout = join(work, `layout-${img.target}`);
    const bundle = join(work, `bundle-${img.target}`);
    mkdirSync(layout);
    assert.equal(tool('tar', ['-xf', img.archive, '-C', layout]).code, 0);
    const u = tool('umoci', ['unpack', '--image', `${layout}:${IMAGE_NAMES[img.target]}:${VERSION}`, bundle]);
    assert.equal(u.code, 0, `umoci unpack: ${u.stderr}`);
    b = { bundle, config: readFileSync(join(bundle, 'config.json'), 'utf8') };
    bundles.set(img.target, b);
  }
  const cfg = JSON.parse(b.config) as {
    process: { terminal: boolean; args: string[]; rlimits?: unknown; user: { uid: number } };
    root: { readonly: boolean };
    mounts: unknown[];
  };
  cfg.process.terminal = false;
  delete cfg.process.rlimits; // setrlimit is refused in this (already limited) test container
  cfg.process.args = args;
  cfg.root.readonly = true;
  cfg.mounts.push(...mounts);
  writeFileSync(join(b.bundle, 'config.json'), JSON.stringify(cfg));
  return b.bundle;
}

function runc(bundle: string): { code: number | null; stdout: string; stderr: string } {
  return tool('runc', ['run', '--bundle', bundle, `attune-image-test-${process.pid}-${runs++}`]);
}

before(async () => {
  assert.equal(process.getuid?.(), 0, 'image tests need root (buildah with chroot isolation, runc)');
  built = await build({ log: () => {} });
  const context = stageContext(join(work, 'context'), built.executable);
  for (const img of buildImages({ context, storage: join(work, 'storage-a'), outDir: join(work, 'a'), version: VERSION })) images.set(img.target, img);
  // Same inputs, nothing shared: a second, empty storage.
  const [again] = buildImages({ context, storage: join(work, 'storage-b'), outDir: join(work, 'b'), version: VERSION, targets: ['agent-init'] });
  rebuiltInitDigest = again.digest;
});
after(() => {
  ws.dispose();
  rmSync(work, { recursive: true, force: true });
});

test('two buildah builds from empty storages give the same agent-init manifest digest', () => {
  assert.match(images.get('agent-init')!.digest, /^sha256:[0-9a-f]{64}$/);
  assert.equal(rebuiltInitDigest, images.get('agent-init')!.digest);
  assert.notEqual(images.get('agent-binary')!.digest, images.get('agent-init')!.digest);
});

const sha = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');

test('image configs: FROM scratch, amd64, non-root, entrypoints', () => {
  const bin = imageConfig(images.get('agent-binary')!);
  const init = imageConfig(images.get('agent-init')!);
  for (const { config, layers } of [bin, init]) {
    assert.ok(layers >= 1 && layers <= 2, `FROM scratch + its COPY steps: ${layers} layers`);
    assert.equal(config.architecture, 'amd64');
    assert.equal(config.os, 'linux');
    assert.equal(config.created, '1980-01-01T00:00:00Z');
    assert.equal(config.config.User, `${NONROOT_UID}:${NONROOT_UID}`);
  }
  assert.deepEqual(bin.config.config.Entrypoint, [IMAGE_AGENT_PATH]);
  assert.deepEqual(init.config.config.Entrypoint, [IMAGE_AGENT_PATH, 'install']);
  assert.deepEqual(init.config.config.Cmd, ['/mnt/agent-bin']);
});

test('agent-binary OCI archive unpacks (umoci) and runs under runc, read-only root, uid 65532: --version, --detect-only', () => {
  const img = images.get('agent-binary')!;
  const bundle = bundleFor(img, [IMAGE_AGENT_PATH, '--version']);
  for (const p of ['bin', 'lib', 'lib64', 'opt']) assert.ok(!readdirSync(join(bundle, 'rootfs')).includes(p), `no /${p} in a FROM scratch image`);
  assert.equal(sha(join(bundle, 'rootfs', IMAGE_AGENT_PATH)), sha(built.executable));
  const v = runc(bundle);
  assert.equal(v.code, 0, v.stderr);
  assert.equal(v.stdout, `${VERSION}\n`);
  const d = runc(bundleFor(img, [IMAGE_AGENT_PATH, '--detect-only']));
  assert.equal(d.code, 0, d.stderr);
  assert.match(d.stdout, /^No runtimes detected!$/m);
});

test("agent-init OCI archive under runc: Attune's loader command line and the default command each fill a bind-mounted empty volume, whose copy runs read-only in a busybox root", async () => {
  const { config } = imageConfig(images.get('agent-init')!);
  const defaultCommand = [...(config.config.Entrypoint ?? []), ...(config.config.Cmd ?? [])];
  const attuneLoader = ['/bin/sh', '-ec', `cp ${IMAGE_AGENT_PATH} ${AGENT_DIR}/attune-agent && chmod +x ${AGENT_DIR}/attune-agent`];
  for (const [how, args, at] of [['Attune\'s loader', attuneLoader, AGENT_DIR], ['attune-agent install', defaultCommand, '/mnt/agent-bin']] as const) {
    const volume = join(work, `volume-${how.replace(/\W+/g, '-')}`);
    mkdirSync(volume);
    chmodSync(volume, 0o777); // an emptyDir
    const r = runc(bundleFor(images.get('agent-init')!, [...args], [{ destination: at, type: 'bind', source: volume, options: ['rbind', 'rw'] }]));
    assert.equal(r.code, 0, `${how}: ${r.stdout}${r.stderr}`);
    assert.deepEqual(readdirSync(volume), ['attune-agent'], how);
    assert.equal(sha(join(volume, 'attune-agent')), sha(built.executable), how);

    const root = ws.make('busybox');
    const v = await runInRoot(root.dir, [AGENT, '--version'], { agentBind: volume, user: { uid: NONROOT_UID, gid: NONROOT_UID } });
    assert.equal(v.code, 0, `${how}: ${describeRun(v)}`);
    assert.equal(v.stdout, `${VERSION}\n`);
  }

  const noexecDir = join(work, 'noexec-volume');
  mkdirSync(noexecDir);
  chmodSync(noexecDir, 0o777);
  const noexec = runc(bundleFor(images.get('agent-init')!, defaultCommand, [
    { destination: '/mnt/agent-bin', type: 'bind', source: noexecDir, options: ['rbind', 'rw', 'noexec'] },
  ]));
  assert.equal(noexec.code, 5, `${noexec.stdout}${noexec.stderr}`);
  assert.match(noexec.stderr, /\/mnt\/agent-bin is on a noexec mount/);
});
