/**
 * The Kubernetes manifests in k8s/: the committed YAML is what k8s/agent-worker.ts renders, every
 * object validates against the Kubernetes JSON schemas (kubernetes-models), each kustomization
 * renders (resources only) into a consistent set (volumes, claims, config map, ports), and each
 * Attune `agentWorkers` value lands where the Helm chart puts it.
 */
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { Deployment } from 'kubernetes-models/apps/v1';
import { ConfigMap, PersistentVolumeClaim, type IContainer, type IEnvVar } from 'kubernetes-models/v1';
import { EXAMPLES, HEALTH_PORT, WAIT_FOR_RABBITMQ, agentWorkerDeployment, type AgentWorkerValues } from '../../k8s/agent-worker.ts';
import { K8S_DIR, renderFiles } from '../../k8s/generate.ts';
import { loadConfig } from '../../src/config/index.ts';

type Obj = { apiVersion: string; kind: string; metadata: { name: string }; [k: string]: unknown };

/** Kubernetes kinds the manifests may contain, with the class whose validate() checks the schema. */
const KINDS: Record<string, (o: Obj) => { validate(): void }> = {
  'apps/v1/Deployment': (o) => new Deployment(o as never),
  'v1/ConfigMap': (o) => new ConfigMap(o as never),
  'v1/PersistentVolumeClaim': (o) => new PersistentVolumeClaim(o as never),
};

function yamlFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...yamlFiles(p));
    else if (/\.ya?ml$/.test(name)) out.push(p);
  }
  return out;
}

function parseDocs(path: string): Obj[] {
  const docs = parseAllDocuments(readFileSync(path, 'utf8'));
  for (const d of docs) assert.deepEqual(d.errors, [], `${path}: YAML errors`);
  return docs.map((d) => d.toJS() as Obj).filter((o) => o !== null);
}

function validate(o: Obj, where: string): void {
  const make = KINDS[`${o.apiVersion}/${o.kind}`];
  assert.ok(make, `${where}: unexpected ${o.apiVersion} ${o.kind}`);
  assert.doesNotThrow(() => make(o).validate(), `${where}: ${o.kind} ${o.metadata?.name} fails the Kubernetes schema`);
}

/** `kubectl apply -k` for kustomizations that only list resources (checked here): files and directories, depth first. */
function renderKustomization(dir: string, seen = new Set<string>()): Obj[] {
  const file = join(dir, 'kustomization.yaml');
  assert.ok(existsSync(file), `${dir} has no kustomization.yaml`);
  const [k] = parseDocs(file) as unknown as [{ apiVersion: string; kind: string; resources: string[] }];
  assert.deepEqual(Object.keys(k).sort(), ['apiVersion', 'kind', 'resources'], `${file}: only resources are used (so this render is exact)`);
  assert.equal(k.apiVersion, 'kustomize.config.k8s.io/v1beta1');
  assert.equal(k.kind, 'Kustomization');
  const out: Obj[] = [];
  for (const r of k.resources) {
    const p = resolve(dir, r);
    assert.ok(existsSync(p), `${file}: resource ${r} does not exist`);
    assert.ok(!seen.has(p), `${file}: ${r} included twice`);
    seen.add(p);
    out.push(...(statSync(p).isDirectory() ? renderKustomization(p, seen) : parseDocs(p)));
  }
  return out;
}

const env = (c: IContainer, name: string): IEnvVar | undefined => c.env?.find((e) => e.name === name);

test('the committed YAML is exactly what k8s/agent-worker.ts renders (run `npm run k8s` after editing it)', () => {
  const files = renderFiles();
  for (const [rel, text] of files) assert.equal(readFileSync(join(K8S_DIR, rel), 'utf8'), text, `k8s/${rel} is stale`);
  const committed = yamlFiles(K8S_DIR).map((p) => relative(K8S_DIR, p));
  assert.deepEqual(committed.sort(), [...files.keys()].sort(), 'no YAML in k8s/ that the generator does not write');
});

test('every Kubernetes object in k8s/**/*.yaml validates against the Kubernetes schemas', () => {
  let n = 0;
  for (const path of yamlFiles(K8S_DIR)) {
    for (const o of parseDocs(path)) {
      if (o.kind === 'Kustomization') continue;
      validate(o, relative(K8S_DIR, path));
      n++;
    }
  }
  assert.equal(n, 4 + EXAMPLES.length, 'ConfigMap + 3 PVCs + one Deployment per example');
});

test('the schema validation is real: wrong types, bad enums and missing fields are rejected', () => {
  const good = agentWorkerDeployment(EXAMPLES[0].worker).toJSON() as unknown as Obj;
  const mutate = (f: (d: { spec: { replicas: unknown; template: { spec: { containers: Record<string, unknown>[]; terminationGracePeriodSeconds: unknown } } } }) => void): Obj => {
    const d = JSON.parse(JSON.stringify(good));
    f(d);
    return d;
  };
  const bad = [
    mutate((d) => (d.spec.template.spec.containers[0].imagePullPolicy = 'Sometimes')),
    mutate((d) => (d.spec.replicas = 'two')),
    mutate((d) => delete d.spec.template.spec.containers[0].name),
    mutate((d) => (d.spec.template.spec.terminationGracePeriodSeconds = '45s')),
  ];
  for (const b of bad) assert.throws(() => new Deployment(b as never).validate());
  assert.doesNotThrow(() => new Deployment(good as never).validate());
});

for (const ex of EXAMPLES) {
  test(`kubectl apply -k k8s/examples/${ex.dir}: consistent objects, agent-loader → worker wiring, non-root, read-only root, probes`, () => {
    const objs = renderKustomization(join(K8S_DIR, 'examples', ex.dir));
    for (const o of objs) validate(o, `examples/${ex.dir}`);
    const deployments = objs.filter((o) => o.kind === 'Deployment') as unknown as Deployment[];
    assert.equal(deployments.length, 1);
    const d = deployments[0];
    const names = new Set(objs.map((o) => `${o.kind}/${o.metadata.name}`));
    assert.equal(names.size, objs.length, 'no duplicate objects');
    const pod = d.spec!.template.spec!;
    assert.deepEqual(d.spec!.selector.matchLabels, Object.fromEntries(Object.entries(d.spec!.template.metadata!.labels!).filter(([k]) => k in d.spec!.selector.matchLabels!)), 'selector matches the pod labels');

    // Volumes: each mount refers to a volume, each claim/config map to an object of the render.
    const volumes = new Map(pod.volumes!.map((v) => [v.name, v]));
    const all = [...pod.initContainers!, ...pod.containers];
    for (const c of all) for (const m of c.volumeMounts ?? []) assert.ok(volumes.has(m.name), `${c.name} mounts unknown volume ${m.name}`);
    for (const v of pod.volumes!) {
      assert.ok(all.some((c) => c.volumeMounts?.some((m) => m.name === v.name)), `volume ${v.name} is unused`);
      if (v.persistentVolumeClaim) assert.ok(names.has(`PersistentVolumeClaim/${v.persistentVolumeClaim.claimName}`), `claim ${v.persistentVolumeClaim.claimName}`);
      if (v.configMap) assert.ok(names.has(`ConfigMap/${v.configMap.name}`), `config map ${v.configMap.name}`);
    }
    assert.deepEqual(volumes.get('agent-bin')!.emptyDir && Object.keys(volumes.get('agent-bin')!), ['name', 'emptyDir']);

    // Init containers: agent-loader copies the agent into agent-bin; then the schema, broker and packs waits.
    assert.deepEqual(pod.initContainers!.map((c) => c.name), ['agent-loader', 'wait-for-schema', 'wait-for-rabbitmq', 'wait-for-packs']);
    assert.equal(pod.initContainers![2].args![0], WAIT_FOR_RABBITMQ);
    const loader = pod.initContainers![0];
    assert.deepEqual(loader.command, ['/usr/local/bin/attune-agent', 'install', '/mnt/agent-bin']);
    assert.deepEqual(loader.volumeMounts, [{ name: 'agent-bin', mountPath: '/mnt/agent-bin' }]);
    assert.match(loader.image!, /^attune-agent-init:\d+\.\d+\.\d+$/);
    assert.match(String(pod.initContainers![1].args), /to_regclass\('\$\{ATTUNE__DATABASE__SCHEMA\}\.identity'\)/);
    assert.match(String(pod.initContainers![3].args), /\/opt\/attune\/packs\/core\/pack\.yaml/);

    // The worker: the user's image, the agent from the read-only volume, Attune's env and mounts.
    assert.equal(pod.containers.length, 1);
    const w = pod.containers[0];
    assert.equal(w.image, ex.worker.image);
    assert.deepEqual(w.command, ['/opt/attune/agent/attune-agent']);
    const mounts = Object.fromEntries(w.volumeMounts!.map((m) => [m.mountPath, m]));
    assert.deepEqual(mounts['/opt/attune/agent'], { name: 'agent-bin', mountPath: '/opt/attune/agent', readOnly: true });
    assert.equal(mounts['/opt/attune/packs'].readOnly, true);
    assert.equal(volumes.get('packs')!.persistentVolumeClaim!.readOnly, true);
    assert.ok(!mounts['/opt/attune/runtime_envs'].readOnly && !mounts['/opt/attune/artifacts'].readOnly && !mounts['/tmp'].readOnly);
    assert.equal(mounts['/opt/attune/config.yaml'].subPath, 'config.yaml');
    assert.deepEqual(env(w, 'ATTUNE_WORKER_NAME')!.valueFrom, { fieldRef: { fieldPath: 'metadata.name' } });
    assert.equal(env(w, 'ATTUNE_WORKER_TYPE')!.value, 'container');
    assert.equal(env(w, 'ATTUNE_CONFIG')!.value, '/opt/attune/config.yaml');
    assert.equal(env(w, 'ATTUNE_WORKER_RUNTIMES')?.value, ex.worker.runtimes?.join(','));
    assert.equal(pod.terminationGracePeriodSeconds, ex.worker.stopGracePeriod ?? 45);

    // Security: non-root everywhere, read-only root file systems, no privilege escalation.
    assert.equal(pod.securityContext!.runAsNonRoot, true);
    assert.ok(pod.securityContext!.runAsUser! > 0);
    for (const c of all) {
      assert.equal(c.securityContext?.readOnlyRootFilesystem, true, `${c.name} readOnlyRootFilesystem`);
      assert.equal(c.securityContext?.allowPrivilegeEscalation, false, `${c.name} allowPrivilegeEscalation`);
      assert.deepEqual(c.securityContext?.capabilities?.drop, ['ALL'], `${c.name} drops capabilities`);
    }

    // Probes hit the agent's health endpoints on the port it is told to listen on.
    assert.deepEqual(w.ports, [{ name: 'health', containerPort: HEALTH_PORT, protocol: 'TCP' }]);
    assert.equal(env(w, 'ATTUNE__WORKER__HEALTH_PORT')!.value, String(HEALTH_PORT));
    assert.deepEqual([w.livenessProbe!.httpGet, w.readinessProbe!.httpGet, w.startupProbe!.httpGet], [
      { path: '/healthz', port: 'health' }, { path: '/readyz', port: 'health' }, { path: '/healthz', port: 'health' },
    ]);

    // The config map's config.yaml is a configuration the agent accepts.
    const cm = objs.find((o) => o.kind === 'ConfigMap') as unknown as ConfigMap;
    const dir = mkdtempSync(join(tmpdir(), 'attune-k8s-'));
    try {
      writeFileSync(join(dir, 'config.yaml'), cm.data!['config.yaml']);
      const config = loadConfig({ env: {}, cwd: dir, flags: { config: join(dir, 'config.yaml') }, implicitFiles: false });
      assert.equal(config.packsBaseDir, mounts['/opt/attune/packs'].mountPath);
      assert.equal(config.artifactsDir, mounts['/opt/attune/artifacts'].mountPath);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test('python-gpu runs on the nvidia runtime class with a GPU, toleration and node selector', () => {
  const objs = renderKustomization(join(K8S_DIR, 'examples', 'python-gpu'));
  const pod = (objs.find((o) => o.kind === 'Deployment') as unknown as Deployment).spec!.template.spec!;
  assert.equal(pod.runtimeClassName, 'nvidia');
  assert.equal(pod.containers[0].resources!.limits!['nvidia.com/gpu'], '1');
  assert.deepEqual(pod.tolerations, [{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }]);
});

test('each agentWorkers value maps where Attune\'s chart puts it; defaults when unset', () => {
  const all: AgentWorkerValues = {
    name: 'w1', image: 'img:1', replicas: 3, runtimes: ['python', 'shell'], resources: { limits: { cpu: '2' } },
    env: [{ name: 'FOO', value: 'bar' }], imagePullPolicy: 'Never', logLevel: 'debug', runtimeClassName: 'gvisor',
    nodeSelector: { pool: 'a' }, tolerations: [{ key: 'k', operator: 'Equal', value: 'v', effect: 'NoExecute' }], stopGracePeriod: 90,
  };
  const d = agentWorkerDeployment(all);
  d.validate();
  const pod = d.spec!.template.spec!;
  const w = pod.containers[0];
  assert.equal(d.metadata!.name, 'attune-agent-worker-w1');
  assert.equal(d.spec!.replicas, 3);
  assert.equal(env(w, 'ATTUNE_WORKER_RUNTIMES')!.value, 'python,shell');
  assert.deepEqual(w.resources, { limits: { cpu: '2' } });
  assert.equal(w.env!.at(-1)!.name, 'FOO', 'user env comes last (wins over defaults)');
  assert.equal(w.imagePullPolicy, 'Never');
  assert.equal(env(w, 'RUST_LOG')!.value, 'debug');
  assert.equal(pod.runtimeClassName, 'gvisor');
  assert.deepEqual(pod.nodeSelector, { pool: 'a' });
  assert.deepEqual(pod.tolerations, all.tolerations);
  assert.equal(pod.terminationGracePeriodSeconds, 90);

  const min = agentWorkerDeployment({ name: 'w2', image: 'img:2' });
  const mpod = min.spec!.template.spec!;
  assert.equal(min.spec!.replicas, 1);
  assert.equal(mpod.terminationGracePeriodSeconds, 45);
  assert.equal(env(mpod.containers[0], 'RUST_LOG')!.value, 'info');
  assert.equal(env(mpod.containers[0], 'ATTUNE_WORKER_RUNTIMES'), undefined, 'unset runtimes: the agent detects them');
  for (const k of ['runtimeClassName', 'nodeSelector', 'tolerations'] as const) assert.equal(mpod[k], undefined, `${k} unset`);
});

test('wait-for-rabbitmq takes host and port from the broker URL (busybox sh; nc stubbed), never prints the password', () => {
  // Attune's chart uses busybox:1.36's `nc -z`; Debian's busybox-static has no -z, so the parsing is
  // tested with a shell-function nc that records its arguments and fails the first time.
  const run = (url: string) => spawnSync('busybox', ['sh', '-ec', `n=0; nc() { n=$((n+1)); echo "nc $*" >&2; [ $n -gt 1 ]; }; sleep() { :; }\n${WAIT_FOR_RABBITMQ}`], {
    env: { ATTUNE__MESSAGE_QUEUE__URL: url, PATH: '/usr/bin:/bin' }, encoding: 'utf8', timeout: 10_000,
  });
  for (const [url, target] of [
    ['amqp://guest:s3cret@rabbitmq:5672/%2f', 'rabbitmq 5672'],
    ['amqp://rabbitmq.attune.svc', 'rabbitmq.attune.svc 5672'],
    ['amqps://u:p@w:d@mq.example.com/vh?heartbeat=10', 'mq.example.com 5671'],
    ['amqp://u:s3cret@10.0.0.7:5673?x=1', '10.0.0.7 5673'],
  ]) {
    const r = run(url);
    assert.equal(r.status, 0, `${url}: ${r.stdout}${r.stderr}`);
    assert.equal(r.stderr, `nc -z -w 2 ${target}\nnc -z -w 2 ${target}\n`, url);
    assert.equal(r.stdout, `waiting for RabbitMQ at ${target.replace(' ', ':')}\n`, url);
    assert.doesNotMatch(r.stdout + r.stderr, /s3cret/);
  }
});
