/**
 * The init-container pattern, simulated with mount namespaces and chroot (what a kubelet or Docker
 * does, minus the image pull). The agent-init image's root filesystem (the files build/image.ts
 * stages for Dockerfile.agent: the one file at /usr/local/bin/attune-agent, a static busybox
 * /bin/sh with cp and chmod, /etc/passwd) fills an empty volume in two ways, as uid 65532 with a
 * read-only root: with ATTUNE'S OWN loader command line (`/bin/sh -ec 'cp … && chmod +x …'`, the
 * volume mounted at /opt/attune/agent), and with `attune-agent install /mnt/agent-bin`. That volume
 * is then mounted read-only at /opt/attune/agent into OTHER root filesystems (busybox-only, musl,
 * Debian-like with interpreters), again non-root with a read-only root, where `--detect-only`
 * reports that root's interpreters and a worker registers with PostgreSQL and RabbitMQ and runs
 * dispatched actions end to end. A noexec volume fails the install step with a message that says so.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { chmodSync, chownSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ChannelModel } from 'amqplib';
import { build, type BuildResult } from '../../build/build.ts';
import { IMAGE_AGENT_PATH, INIT_APPLETS, stageContext, NONROOT_UID } from '../../build/image.ts';
import { AGENT, AGENT_DIR, NONROOT, addDevNodes, addHostBinary, createWorkspace, processesUnder } from '../helpers/rootfs.ts';
import { containerArgs, runContainer, show, type Mount } from '../helpers/container.ts';
import { createTestDatabase } from '../helpers/pg.ts';
import { collectExecutionMessages, connectTest, publishExecutionRequested } from '../helpers/amqp.ts';
import { createExecution, executionRow, insertAction, seedCoreRuntimes, startAgent, separateIds } from '../harness/platform.ts';

const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
const VOLUME_MOUNT = '/mnt/agent-bin';
/** Attune's loader step (its compose init-agent and chart agent-loader), for our file. */
const ATTUNE_LOADER = `cp ${IMAGE_AGENT_PATH} ${AGENT_DIR}/attune-agent && chmod +x ${AGENT_DIR}/attune-agent && ${AGENT_DIR}/attune-agent --version`;
const ws = createWorkspace('distribution');
let built: BuildResult;
/** The agent-init and agent-binary images' root filesystems. */
let initRoot: string;
let binaryRoot: string;
/** The shared volume (an emptyDir), filled by Attune's loader command line in the first test. */
let volume: string;

function sha(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** A fresh emptyDir: world-writable, like Kubernetes makes it. */
function emptyVolume(name: string): string {
  const dir = join(ws.dir, name);
  mkdirSync(dir);
  chmodSync(dir, 0o777);
  return dir;
}

/** The worker container's mounts: the agent volume read-only, writable tmpfs for /tmp. */
function workerMounts(extra: Mount[] = []): Mount[] {
  return [{ path: AGENT_DIR, host: volume, ro: true }, { path: '/tmp' }, ...extra];
}

before(async () => {
  assert.equal(process.getuid?.(), 0, 'e2e root-filesystem tests need root (chroot, mount namespaces): run them as root or in a privileged CI container');
  built = await build({ log: () => {} });
  const context = stageContext(join(ws.dir, 'agent-context'), built.executable);
  initRoot = join(context, 'rootfs-init');
  binaryRoot = join(context, 'rootfs-binary');
  // What the container runtime adds to every container: /dev nodes, /proc, and the volumes' mount points.
  for (const r of [initRoot, binaryRoot]) {
    addDevNodes(r);
    mkdirSync(join(r, 'proc'));
  }
  mkdirSync(join(initRoot, VOLUME_MOUNT), { recursive: true });
  mkdirSync(join(initRoot, AGENT_DIR), { recursive: true });
  volume = emptyVolume('agent-bin');
});
after(() => ws.dispose());

test('the images: agent-binary holds the one file only (no shell); agent-init adds a static busybox /bin/sh with cp and chmod', () => {
  const files = (root: string) => {
    const out: string[] = [];
    const walk = (rel: string) => {
      for (const n of readdirSync(join(root, rel)).sort()) {
        const r = `${rel}/${n}`;
        const st = lstatSync(join(root, r));
        if (st.isDirectory()) walk(r);
        else out.push(st.isSymbolicLink() ? `${r} -> ${readlinkSync(join(root, r))}` : r);
      }
    };
    walk('');
    return out.filter((f) => !f.startsWith('/dev/'));
  };
  assert.deepEqual(files(binaryRoot), ['/etc/group', '/etc/passwd', IMAGE_AGENT_PATH]);
  assert.deepEqual(files(initRoot), ['/bin/busybox', ...INIT_APPLETS.map((a) => `/bin/${a} -> busybox`), '/etc/group', '/etc/passwd', IMAGE_AGENT_PATH].sort());
  assert.equal(sha(join(binaryRoot, IMAGE_AGENT_PATH)), sha(built.executable));
  assert.equal(statSync(join(initRoot, IMAGE_AGENT_PATH)).mode & 0o7777, 0o555);
  const headers = spawnSync('readelf', ['-lW', join(initRoot, 'bin', 'busybox')], { encoding: 'utf8' }).stdout;
  assert.match(headers, /^\s+LOAD/m);
  assert.doesNotMatch(headers, /INTERP|DYNAMIC/, 'the init image\'s shell is static: it needs no libc');
});

test("Attune's loader command line in the agent-init image (/bin/sh -ec 'cp … && chmod +x …'), uid 65532, read-only root → the one file in the volume, and it runs there", async () => {
  const r = await runContainer(initRoot, ['/bin/sh', '-ec', ATTUNE_LOADER], { user: NONROOT, readOnlyRoot: true, proc: true, mounts: [{ path: AGENT_DIR, host: volume }] });
  assert.equal(r.code, 0, show(r));
  assert.equal(r.stdout, `${VERSION}\n`);
  assert.deepEqual(readdirSync(volume), ['attune-agent'], 'the volume holds the one file and nothing else');
  assert.equal(sha(join(volume, 'attune-agent')), sha(built.executable));
  assert.equal(statSync(join(volume, 'attune-agent')).uid, NONROOT_UID);
  assert.deepEqual(processesUnder(initRoot), []);
});

test('agent-init default command (attune-agent install /mnt/agent-bin), uid 65532, read-only root → the one file lands in the empty volume and runs there; again over it', async () => {
  const vol = emptyVolume('agent-bin-install');
  for (let round = 0; round < 2; round++) {
    const r = await runContainer(initRoot, [IMAGE_AGENT_PATH, 'install', VOLUME_MOUNT], { user: NONROOT, readOnlyRoot: true, proc: true, mounts: [{ path: VOLUME_MOUNT, host: vol }] });
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, new RegExp(`^attune-agent install: installed attune-agent ${VERSION.replace(/\./g, '\\.')} as ${VOLUME_MOUNT}/attune-agent \\([\\d.]+ MB\\); the copy runs there\\.$`, 'm'));
    assert.equal(r.stderr, '');
    assert.deepEqual(readdirSync(vol), ['attune-agent'], 'no temporary files are left behind');
    assert.equal(statSync(join(vol, 'attune-agent')).mode & 0o7777, 0o555);
    assert.equal(sha(join(vol, 'attune-agent')), sha(built.executable));
  }
});

test('agent-init install into a noexec volume fails loudly (exit 5) and says noexec, with /proc, and without (cache in a tmpfs /tmp)', async () => {
  for (const proc of [true, false]) {
    const mounts: Mount[] = [{ path: VOLUME_MOUNT, noexec: true }, ...(proc ? [] : [{ path: '/tmp' }])];
    if (!proc) mkdirSync(join(initRoot, 'tmp'), { recursive: true });
    const r = await runContainer(initRoot, [IMAGE_AGENT_PATH, 'install', VOLUME_MOUNT], { user: NONROOT, readOnlyRoot: true, proc, mounts });
    assert.equal(r.code, 5, `proc=${proc}: ${show(r)}`);
    assert.match(r.stderr, /^attune-agent install: error: .*noexec/m, `proc=${proc}`);
    // With /proc the mount table names the mount; without it, running the copy is what catches it.
    if (proc) assert.match(r.stderr, /\/mnt\/agent-bin is on a noexec mount \(\/mnt\/agent-bin\)/);
    else assert.match(r.stderr, /cannot execute \/mnt\/agent-bin\/attune-agent \(EACCES\)/);
    assert.equal(r.stdout, '');
  }
});

interface Report { runtimes: { name: string; path: string; version: string | null }[]; attune_worker_runtimes: string }

const DETECT_CASES = [
  { kind: 'busybox', expect: [['shell', '/bin/sh']], runtimes: 'shell' },
  { kind: 'musl', expect: [['shell', '/bin/sh']], runtimes: 'shell' },
  {
    kind: 'interpreters',
    expect: [['shell', '/bin/bash'], ['python', '/usr/bin/python3'], ['node', '/usr/local/bin/node'], ['java', '/usr/bin/java'], ['perl', '/usr/bin/perl']],
    runtimes: 'shell,python,node,java,perl',
  },
] as const;

for (const c of DETECT_CASES) {
  test(`the installed volume at ${AGENT_DIR} (read-only) in a ${c.kind} root, uid 65532, read-only root: --detect-only reports that root's interpreters`, async () => {
    assert.deepEqual(readdirSync(volume), ['attune-agent'], "Attune's loader test fills the volume first");
    const root = ws.make(c.kind);
    assert.deepEqual(readdirSync(join(root.dir, AGENT_DIR)), [], 'the root has no agent of its own: only the volume brings it');
    const r = await runContainer(root.dir, [AGENT, '--detect-only', '--json'], { user: NONROOT, readOnlyRoot: true, proc: true, mounts: workerMounts() });
    assert.equal(r.code, 0, show(r));
    const report = JSON.parse(r.stdout) as Report;
    assert.deepEqual(report.runtimes.map((x) => [x.name, x.path]), c.expect);
    assert.equal(report.attune_worker_runtimes, c.runtimes);
    if (c.kind === 'interpreters') for (const x of report.runtimes) assert.match(x.version ?? '', /^\d+\.\d+/, `${x.name} version`);
    if (c.kind === 'busybox') {
      // The simulation really is read-only where a hardened pod is: the root and the agent volume.
      for (const path of ['/probe', `${AGENT_DIR}/probe`]) {
        const w = await runContainer(root.dir, ['/bin/touch', path], { user: { uid: 0, gid: 0 }, readOnlyRoot: true, mounts: workerMounts() });
        assert.notEqual(w.code, 0, `${path} must not be writable: ${show(w)}`);
        assert.match(w.stderr, /Read-only file system/);
      }
    }
    assert.deepEqual(processesUnder(root.dir), []);
  });
}

test('worker from the installed volume in a Debian-like root (uid 65532, read-only root) registers and runs dispatched actions end to end', async (t) => {
  assert.deepEqual(readdirSync(volume), ['attune-agent'], "Attune's loader test fills the volume first");
  const db = await createTestDatabase('e2e_distribution');
  t.after(() => db.drop());
  await separateIds(db.pool);
  const runtimeIds = await seedCoreRuntimes(db.pool);
  const mq: ChannelModel = await connectTest('e2e-distribution');
  t.after(() => mq.close());
  const collector = await collectExecutionMessages(mq);
  t.after(() => collector.close());

  // A pack of our own: bash builtins only (the root has no coreutils) and node. whoami.sh writes to
  // its stdout by path (/proc/self/fd/1: this root has no /dev/stdout link): that works only with real
  // pipes, i.e. with the pipes addon the one file carries loaded.
  const packs = join(ws.dir, 'packs');
  mkdirSync(join(packs, 'distpack', 'actions'), { recursive: true });
  writeFileSync(join(packs, 'distpack', 'actions', 'whoami.sh'), '#!/bin/bash\nread -r -d "" params\nprintf \'{"uid":%s,"params":%s}\' "$EUID" "$params" > /proc/self/fd/1\n');
  writeFileSync(join(packs, 'distpack', 'actions', 'echo.js'), "process.stdout.write(JSON.stringify({ node: process.version, params: JSON.parse(require('node:fs').readFileSync(0, 'utf8')) }));\n");
  await insertAction(db.pool, 'distpack', { ref: 'distpack.whoami', entrypoint: 'whoami.sh', runtime: 'shell', output_format: 'json' }, runtimeIds);
  await insertAction(db.pool, 'distpack', { ref: 'distpack.echo', entrypoint: 'echo.js', runtime: 'node', output_format: 'json' }, runtimeIds);

  const root = ws.make('interpreters');
  for (const d of ['/opt/attune/packs', '/opt/attune/artifacts', '/opt/attune/runtime_envs']) mkdirSync(join(root.dir, d), { recursive: true });
  const name = `dist-${process.pid}-${randomUUID().slice(0, 8)}`;
  const env = {
    ATTUNE__DATABASE__URL: db.url,
    ATTUNE__DATABASE__SCHEMA: db.schema,
    ATTUNE__MESSAGE_QUEUE__URL: 'amqp://guest:guest@127.0.0.1:5672/%2f',
    ATTUNE__PACKS_BASE_DIR: '/opt/attune/packs',
    ATTUNE__ARTIFACTS_DIR: '/opt/attune/artifacts',
    ATTUNE__RUNTIME_ENVS_DIR: '/opt/attune/runtime_envs',
    ATTUNE__WORKER__SHUTDOWN_TIMEOUT: '5',
    ATTUNE_WORKER_NAME: name,
    ATTUNE_WORKER_TYPE: 'container',
  };
  const mounts = workerMounts([{ path: '/opt/attune/packs', host: packs, ro: true }, { path: '/opt/attune/artifacts' }, { path: '/opt/attune/runtime_envs' }]);
  const agent = startAgent({}, containerArgs(root.dir, [AGENT], { user: NONROOT, readOnlyRoot: true, proc: true, env, mounts }), { executable: '/usr/bin/unshare' });
  t.after(async () => {
    await agent.stop('SIGKILL');
  });
  await agent.waitForLog('the agent to consume', (l) => l.msg === 'consuming execution dispatches', { timeoutMs: 30_000 });

  const worker = (await db.pool.query('SELECT id, worker_type::text AS worker_type, status::text AS status, capabilities FROM worker WHERE name = $1', [name])).rows[0] as
    { id: number; worker_type: string; status: string; capabilities: Record<string, unknown> };
  assert.ok(worker, `worker row ${name}`);
  assert.equal(worker.worker_type, 'container');
  assert.equal(worker.status, 'active');
  for (const rt of ['shell', 'python', 'node', 'java', 'perl']) assert.ok((worker.capabilities.runtimes as string[]).includes(rt), `${rt} in ${JSON.stringify(worker.capabilities)}`);

  for (const [ref, check] of [
    ['distpack.whoami', (data: Record<string, unknown>) => assert.deepEqual(data, { uid: NONROOT_UID, params: { n: 1 } })],
    ['distpack.echo', (data: Record<string, unknown>) => assert.deepEqual({ ...data, node: /^v24\./.test(String(data.node)) }, { node: true, params: { n: 1 } })],
  ] as const) {
    const id = await createExecution(db.pool, { actionRef: ref, workerId: worker.id, config: { n: 1 } });
    await publishExecutionRequested(mq, worker.id, { execution_id: id, action_ref: ref, config: { n: 1 } });
    await collector.waitFor(`ExecutionCompleted of ${ref}`, (m) => m.some((x) => x.routingKey === 'execution.completed' && x.json?.payload?.execution_id === id), { timeoutMs: 30_000 });
    const row = await executionRow(db.pool, id);
    assert.equal(row.status, 'completed', `${ref}: ${JSON.stringify(row.result)}`);
    check((row.result ?? {}).data as Record<string, unknown>);
  }

  assert.ok(!agent.logs.some((l) => /socket pairs, not pipes/.test(String(l.msg))), 'the pipes addon loaded from the volume');
  const exit = await agent.stop('SIGTERM');
  assert.equal(exit.code, 0, `the agent stops cleanly; stderr: ${agent.stderr.join('')}`);
  assert.deepEqual(processesUnder(root.dir), []);
});

// ───────────────────────────── compose and docker run recipes ─────────────────────────────

const COMPOSE_FILE = new URL('../../docker/compose/docker-compose.agent.yaml', import.meta.url);

interface ComposeService {
  image: string; entrypoint?: string[]; command?: string[]; user?: string; read_only?: boolean; tmpfs?: string[];
  environment?: Record<string, string>; volumes?: string[]; depends_on?: Record<string, { condition: string }>; stop_grace_period?: string;
}

/** `${VAR:-default}` as compose interpolates it with no VAR set. */
function interpolate(text: string): string {
  return text.replace(/\$\{([A-Z0-9_]+)(?::-([^}]*))?\}/g, (_, _name: string, def?: string) => def ?? '');
}

/** ENTRYPOINT and CMD of a Dockerfile.agent stage (exec form). */
function stageCommand(stage: string): { entrypoint: string[]; cmd: string[]; user: string } {
  const text = readFileSync(new URL('../../Dockerfile.agent', import.meta.url), 'utf8');
  const start = text.indexOf(`AS ${stage}\n`);
  assert.ok(start > 0, `stage ${stage} in Dockerfile.agent`);
  const body = text.slice(start).split(/\nFROM /)[0];
  const grab = (k: string): string => /^(\S+) (.*)$/m.exec(body.split('\n').find((l) => l.startsWith(k + ' ')) ?? '')?.[2] ?? '';
  return { entrypoint: JSON.parse(grab('ENTRYPOINT') || '[]'), cmd: JSON.parse(grab('CMD') || '[]'), user: grab('USER') };
}

test('compose recipe: agent-ts-init → agent-ts-worker-ruby as the override wires them, run service by service (simulated; the merge itself: distribution-compose.test.ts)', async () => {
  const { parse } = await import('yaml');
  const { OPTIONS, envNameFor } = await import('../../src/config/options.ts');
  const compose = parse(interpolate(readFileSync(COMPOSE_FILE, 'utf8'))) as { services: Record<string, ComposeService>; volumes: Record<string, unknown> };
  const init = compose.services['agent-ts-init'];
  const worker = compose.services['agent-ts-worker-ruby'];
  assert.ok(init && worker, 'services agent-ts-init and agent-ts-worker-ruby');
  assert.equal(init.image, `attune-agent-init:${VERSION}`);
  const initCmd = stageCommand('agent-init');
  assert.deepEqual([...initCmd.entrypoint, ...initCmd.cmd], [IMAGE_AGENT_PATH, 'install', VOLUME_MOUNT], 'the image default command compose relies on');
  assert.deepEqual(init.volumes, [`agent_ts_bin:${VOLUME_MOUNT}`]);
  assert.deepEqual(worker.entrypoint, [AGENT]);
  assert.deepEqual(worker.depends_on?.['agent-ts-init'], { condition: 'service_completed_successfully' });
  // Docker's default stop timeout (10 s) would SIGKILL the agent mid-drain: the recipe covers the
  // drain (shutdown_timeout + kill_grace_period) with room for the final writes and message flush.
  assert.equal(worker.stop_grace_period, '60s');
  const drainS = ['worker.shutdown_timeout', 'worker.kill_grace_period'].reduce((n, k) => n + Number(OPTIONS.find((o) => o.key === k)!.default), 0);
  assert.ok(60 >= drainS + 15, `stop_grace_period 60 s vs drain ${drainS} s`);
  const mounts = new Map(worker.volumes!.map((v) => { const [src, dst, mode] = v.split(':'); return [dst, { src, ro: mode === 'ro' }]; }));
  assert.deepEqual(mounts.get(AGENT_DIR), { src: 'agent_ts_bin', ro: true });
  assert.deepEqual(mounts.get('/opt/attune/packs'), { src: 'packs_data', ro: true });
  for (const d of ['/opt/attune/runtime_envs', '/opt/attune/artifacts']) assert.equal(mounts.get(d)?.ro, false, d);
  assert.equal(mounts.get('/opt/attune/config/config.yaml')?.src, './config.docker.yaml');
  const env = worker.environment!;
  assert.equal(env.ATTUNE_WORKER_TYPE, 'container');
  assert.equal(env.ATTUNE_CONFIG, '/opt/attune/config/config.yaml');
  const known = new Set(OPTIONS.flatMap((o) => [envNameFor(o.key), ...(o.alsoEnv ? [o.alsoEnv] : [])]));
  for (const k of Object.keys(env).filter((x) => x.startsWith('ATTUNE__'))) assert.ok(known.has(k), `${k} is an agent option`);
  assert.equal(env.ATTUNE__PACKS_BASE_DIR, '/opt/attune/packs');

  // Simulation: named volumes are host folders; Docker copies the image's /mnt/agent-bin ownership
  // (65532, 0755: NOT world-writable) into the fresh agent_ts_bin volume.
  const vols: Record<string, string> = {};
  for (const name of ['agent_ts_bin', 'packs_data', 'runtime_envs', 'artifacts_data']) vols[name] = emptyVolume(`compose-${name}`);
  chmodSync(vols.agent_ts_bin, 0o755);
  chownSync(vols.agent_ts_bin, NONROOT_UID, NONROOT_UID);
  const [uid, gid] = initCmd.user.split(':').map(Number);
  const initRun = await runContainer(initRoot, [...initCmd.entrypoint, ...initCmd.cmd], {
    user: { uid, gid }, readOnlyRoot: init.read_only, proc: true, mounts: [{ path: VOLUME_MOUNT, host: vols.agent_ts_bin }],
  });
  assert.equal(initRun.code, 0, show(initRun));
  assert.deepEqual(readdirSync(vols.agent_ts_bin), ['attune-agent']);

  // The worker (ruby:3.3-slim stands in as a Debian root with ruby; it runs as root like that image).
  const root = ws.make('interpreters');
  addHostBinary(root.dir, '/usr/bin/ruby');
  const configFile = join(ws.dir, 'config.docker.yaml');
  writeFileSync(configFile, 'worker:\n  max_concurrent_tasks: 2\n');
  const workerMountsList: Mount[] = [...(worker.tmpfs ?? []).map((path) => ({ path }))];
  for (const [dst, { src, ro }] of mounts) {
    const host = src.startsWith('.') ? configFile : vols[src];
    if (dst.endsWith('.yaml')) {
      mkdirSync(join(root.dir, dst, '..'), { recursive: true });
      writeFileSync(join(root.dir, dst), ''); // a file bind needs a file to mount on
    } else mkdirSync(join(root.dir, dst), { recursive: true });
    workerMountsList.push({ path: dst, host, ro });
  }
  // `docker compose run --rm agent-ts-worker-ruby --detect-only --json`: the service's entrypoint, env and mounts.
  const r = await runContainer(root.dir, [...worker.entrypoint!, '--detect-only', '--json'], { env, readOnlyRoot: worker.read_only, proc: true, mounts: workerMountsList });
  assert.equal(r.code, 0, show(r));
  const report = JSON.parse(r.stdout) as Report;
  assert.deepEqual(report.runtimes.map((x) => x.name).sort(), ['ruby', 'shell']);
  assert.match(report.runtimes.find((x) => x.name === 'ruby')!.version ?? '', /^3\.\d+\.\d+/);

  // docker run --rm -v agent_ts_bin:/opt/attune/agent:ro ruby:3.3-slim /opt/attune/agent/attune-agent --detect-only
  const plain = await runContainer(root.dir, [AGENT, '--detect-only'], { proc: true, mounts: [{ path: AGENT_DIR, host: vols.agent_ts_bin, ro: true }] });
  assert.equal(plain.code, 0, show(plain));
  assert.match(plain.stdout, /^ {2}✓ ruby +\/usr\/bin\/ruby \(3\.\d+\.\d+\)$/m);
});
