/**
 * Kubernetes objects for Attune agent workers, authored with kubernetes-models' typed classes (so
 * `tsc` rejects misspelled keys and `validate()` checks them against the Kubernetes JSON schemas).
 * `node k8s/generate.ts` renders them into the YAML files of k8s/base and k8s/examples; the unit
 * test test/unit/k8s.test.ts fails when the committed YAML and this file disagree.
 *
 * One worker = one Deployment, equivalent to an entry of Attune's Helm `agentWorkers` values
 * (templates/agent-workers.yaml): name, image, replicas, runtimes, resources, env, imagePullPolicy,
 * logLevel, runtimeClassName, nodeSelector, tolerations, stopGracePeriod (default 45).
 */
import { Deployment } from 'kubernetes-models/apps/v1';
import { ConfigMap, PersistentVolumeClaim, type IContainer, type IEnvVar, type IResourceRequirements, type IToleration } from 'kubernetes-models/v1';

/**
 * wait-for-rabbitmq: host and port from ATTUNE__MESSAGE_QUEUE__URL (amqp[s]://user:pass@host[:port]/vhost),
 * with busybox sh parameter expansion only; the URL (with its password) is never printed.
 */
export const WAIT_FOR_RABBITMQ =
  'u="${ATTUNE__MESSAGE_QUEUE__URL#*://}"; u="${u##*@}"; u="${u%%/*}"; u="${u%%\\?*}"\n' +
  'host="${u%:*}"; port="${u##*:}"\n' +
  'if [ "$host" = "$u" ]; then case "$ATTUNE__MESSAGE_QUEUE__URL" in amqps:*) port=5671 ;; *) port=5672 ;; esac; fi\n' +
  'until nc -z -w 2 "$host" "$port"; do echo "waiting for RabbitMQ at $host:$port"; sleep 2; done\n';

export const AGENT_VERSION = '0.6.0';
export const AGENT_INIT_IMAGE = `attune-agent-init:${AGENT_VERSION}`;
/** Where the worker mounts the agent volume (Attune's path; any path works for the one file). */
export const AGENT_DIR = '/opt/attune/agent';
/** Where the agent images carry the one file. */
export const IMAGE_AGENT_PATH = '/usr/local/bin/attune-agent';
export const HEALTH_PORT = 9464;
export const NONROOT = 65532;

/** What a user sets per agent worker (Attune's `agentWorkers[]`). */
export interface AgentWorkerValues {
  name: string;
  /** The user's image: any Linux x86_64 image; the agent (one file) is copied in by the agent-loader init container. */
  image: string;
  replicas?: number;
  /** → ATTUNE_WORKER_RUNTIMES (comma-joined); unset = whatever the agent detects in the image. */
  runtimes?: string[];
  resources?: IResourceRequirements;
  env?: IEnvVar[];
  imagePullPolicy?: 'Always' | 'IfNotPresent' | 'Never';
  /** → RUST_LOG (the agent reads it like the Rust agent); default info. */
  logLevel?: string;
  runtimeClassName?: string;
  nodeSelector?: Record<string, string>;
  tolerations?: IToleration[];
  /** terminationGracePeriodSeconds; default 45 (the agent drains running executions on SIGTERM). */
  stopGracePeriod?: number;
}

/** Names of the objects an Attune installation already has (the chart's `<fullname>-…`), overridable. */
export interface Platform {
  /** Secret with the database and broker URLs (ATTUNE__DATABASE__URL, ATTUNE__MESSAGE_QUEUE__URL, …). */
  secret: string;
  configMap: string;
  packsClaim: string;
  runtimeEnvsClaim: string;
  artifactsClaim: string;
  schema: string;
  apiUrl: string;
  agentInitImage: string;
}

export const DEFAULT_PLATFORM: Platform = {
  secret: 'attune-secrets',
  configMap: 'attune-config',
  packsClaim: 'attune-packs',
  runtimeEnvsClaim: 'attune-runtime-envs',
  artifactsClaim: 'attune-artifacts',
  schema: 'attune',
  apiUrl: 'http://attune-api:8080',
  agentInitImage: AGENT_INIT_IMAGE,
};

const RESTRICTED = {
  allowPrivilegeEscalation: false,
  readOnlyRootFilesystem: true,
  runAsNonRoot: true,
  capabilities: { drop: ['ALL'] },
};

export function deploymentName(w: AgentWorkerValues): string {
  return `attune-agent-worker-${w.name}`;
}

export function agentWorkerDeployment(w: AgentWorkerValues, p: Platform = DEFAULT_PLATFORM): Deployment {
  const labels = { 'app.kubernetes.io/name': 'attune-agent-worker', 'app.kubernetes.io/instance': w.name, 'app.kubernetes.io/component': 'action-worker', 'app.kubernetes.io/part-of': 'attune' };
  const env: IEnvVar[] = [
    { name: 'ATTUNE_CONFIG', value: '/opt/attune/config.yaml' },
    { name: 'ATTUNE__DATABASE__SCHEMA', value: p.schema },
    { name: 'ATTUNE_WORKER_TYPE', value: 'container' },
    { name: 'ATTUNE_WORKER_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
    { name: 'ATTUNE_API_URL', value: p.apiUrl },
    { name: 'ATTUNE__WORKER__HEALTH_PORT', value: String(HEALTH_PORT) },
    { name: 'RUST_LOG', value: w.logLevel ?? 'info' },
    ...(w.runtimes && w.runtimes.length > 0 ? [{ name: 'ATTUNE_WORKER_RUNTIMES', value: w.runtimes.join(',') }] : []),
    ...(w.env ?? []),
  ];
  const worker: IContainer = {
    name: 'worker',
    image: w.image,
    imagePullPolicy: w.imagePullPolicy ?? 'IfNotPresent',
    command: [`${AGENT_DIR}/attune-agent`],
    envFrom: [{ secretRef: { name: p.secret } }],
    env,
    ports: [{ name: 'health', containerPort: HEALTH_PORT, protocol: 'TCP' }],
    resources: w.resources ?? { requests: { cpu: '100m', memory: '256Mi' }, limits: { memory: '1Gi' } },
    securityContext: RESTRICTED,
    volumeMounts: [
      { name: 'agent-bin', mountPath: AGENT_DIR, readOnly: true },
      { name: 'config', mountPath: '/opt/attune/config.yaml', subPath: 'config.yaml', readOnly: true },
      { name: 'packs', mountPath: '/opt/attune/packs', readOnly: true },
      { name: 'runtime-envs', mountPath: '/opt/attune/runtime_envs' },
      { name: 'artifacts', mountPath: '/opt/attune/artifacts' },
      { name: 'tmp', mountPath: '/tmp' },
    ],
    startupProbe: { httpGet: { path: '/healthz', port: 'health' }, periodSeconds: 2, failureThreshold: 30 },
    livenessProbe: { httpGet: { path: '/healthz', port: 'health' }, periodSeconds: 10, timeoutSeconds: 2, failureThreshold: 6 },
    readinessProbe: { httpGet: { path: '/readyz', port: 'health' }, periodSeconds: 5, timeoutSeconds: 2, failureThreshold: 2 },
  };
  const small: IResourceRequirements = { requests: { cpu: '10m', memory: '32Mi' }, limits: { memory: '128Mi' } };
  const initContainers: IContainer[] = [
    {
      // The agent copies itself (one file, 0555) and runs the copy once, fully verified, so a noexec
      // volume, a wrong architecture or a damaged copy fails here, loudly, instead of in the worker.
      // (Attune's own loader line, `/bin/sh -ec 'cp /usr/local/bin/attune-agent …'`, works with this image too.)
      name: 'agent-loader',
      image: p.agentInitImage,
      imagePullPolicy: 'IfNotPresent',
      command: [IMAGE_AGENT_PATH, 'install', '/mnt/agent-bin'],
      resources: { requests: { cpu: '10m', memory: '64Mi' }, limits: { memory: '256Mi' } },
      securityContext: RESTRICTED,
      volumeMounts: [{ name: 'agent-bin', mountPath: '/mnt/agent-bin' }],
    },
    {
      name: 'wait-for-schema',
      image: 'postgres:16-alpine',
      imagePullPolicy: 'IfNotPresent',
      command: ['/bin/sh', '-ec'],
      args: [
        'until [ "$(psql "$ATTUNE__DATABASE__URL" -tAc "SELECT to_regclass(\'${ATTUNE__DATABASE__SCHEMA}.identity\') IS NOT NULL")" = t ]; do\n' +
          '  echo "waiting for the Attune schema ${ATTUNE__DATABASE__SCHEMA}"; sleep 2\ndone\n',
      ],
      envFrom: [{ secretRef: { name: p.secret } }],
      env: [{ name: 'ATTUNE__DATABASE__SCHEMA', value: p.schema }],
      resources: small,
      securityContext: { ...RESTRICTED, runAsUser: 70, runAsGroup: 70 },
    },
    {
      // The agent gives up on RabbitMQ after database.connect_timeout at start (exit 4): wait here instead.
      name: 'wait-for-rabbitmq',
      image: 'busybox:1.36',
      imagePullPolicy: 'IfNotPresent',
      command: ['/bin/sh', '-ec'],
      args: [WAIT_FOR_RABBITMQ],
      envFrom: [{ secretRef: { name: p.secret } }],
      resources: small,
      securityContext: RESTRICTED,
    },
    {
      name: 'wait-for-packs',
      image: 'busybox:1.36',
      imagePullPolicy: 'IfNotPresent',
      command: ['/bin/sh', '-ec'],
      args: ['until [ -f /opt/attune/packs/core/pack.yaml ]; do echo "waiting for the core pack"; sleep 2; done\n'],
      resources: small,
      securityContext: RESTRICTED,
      volumeMounts: [{ name: 'packs', mountPath: '/opt/attune/packs', readOnly: true }],
    },
  ];
  return new Deployment({
    metadata: { name: deploymentName(w), labels },
    spec: {
      replicas: w.replicas ?? 1,
      selector: { matchLabels: { 'app.kubernetes.io/name': labels['app.kubernetes.io/name'], 'app.kubernetes.io/instance': w.name } },
      // Replace pods one at a time: the old one drains its running executions first.
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
      template: {
        metadata: { labels, annotations: { 'prometheus.io/scrape': 'true', 'prometheus.io/port': String(HEALTH_PORT) } },
        spec: {
          terminationGracePeriodSeconds: w.stopGracePeriod ?? 45,
          ...(w.runtimeClassName ? { runtimeClassName: w.runtimeClassName } : {}),
          ...(w.nodeSelector ? { nodeSelector: w.nodeSelector } : {}),
          ...(w.tolerations ? { tolerations: w.tolerations } : {}),
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          securityContext: { runAsNonRoot: true, runAsUser: NONROOT, runAsGroup: NONROOT, fsGroup: NONROOT, seccompProfile: { type: 'RuntimeDefault' } },
          initContainers,
          containers: [worker],
          volumes: [
            { name: 'agent-bin', emptyDir: { sizeLimit: '256Mi' } },
            { name: 'config', configMap: { name: p.configMap } },
            { name: 'packs', persistentVolumeClaim: { claimName: p.packsClaim, readOnly: true } },
            { name: 'runtime-envs', persistentVolumeClaim: { claimName: p.runtimeEnvsClaim } },
            { name: 'artifacts', persistentVolumeClaim: { claimName: p.artifactsClaim } },
            { name: 'tmp', emptyDir: { sizeLimit: '1Gi' } },
          ],
        },
      },
    },
  });
}

/** The shared objects the base brings for a cluster without a Helm-installed Attune (same names as the chart's). */
export function baseObjects(p: Platform = DEFAULT_PLATFORM): (ConfigMap | PersistentVolumeClaim)[] {
  const config = [
    '# Attune configuration shared by the agent workers (the ATTUNE__* variables of the Secret override it).',
    'packs_base_dir: /opt/attune/packs',
    'runtime_envs_dir: /opt/attune/runtime_envs',
    'artifacts_dir: /opt/attune/artifacts',
    'worker:',
    '  max_concurrent_tasks: 4',
    '',
  ].join('\n');
  const pvc = (name: string, access: 'ReadWriteMany' | 'ReadOnlyMany', size: string): PersistentVolumeClaim =>
    new PersistentVolumeClaim({
      metadata: { name, labels: { 'app.kubernetes.io/part-of': 'attune' } },
      spec: { accessModes: [access], resources: { requests: { storage: size } } },
    });
  return [
    new ConfigMap({ metadata: { name: p.configMap, labels: { 'app.kubernetes.io/part-of': 'attune' } }, data: { 'config.yaml': config } }),
    pvc(p.packsClaim, 'ReadWriteMany', '1Gi'),
    pvc(p.runtimeEnvsClaim, 'ReadWriteMany', '10Gi'),
    pvc(p.artifactsClaim, 'ReadWriteMany', '10Gi'),
  ];
}

/** The examples shipped in k8s/examples/<dir>. */
export const EXAMPLES: { dir: string; title: string; worker: AgentWorkerValues }[] = [
  {
    dir: 'ruby',
    title: 'Ruby actions in the official ruby image',
    worker: { name: 'ruby', image: 'ruby:3.3-slim', replicas: 2, runtimes: ['ruby', 'shell'] },
  },
  {
    dir: 'python-gpu',
    title: 'Python actions on GPU nodes (NVIDIA runtime class)',
    worker: {
      name: 'python-gpu',
      image: 'pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime',
      runtimes: ['python', 'shell'],
      runtimeClassName: 'nvidia',
      nodeSelector: { 'nvidia.com/gpu.present': 'true' },
      tolerations: [{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }],
      resources: { requests: { cpu: '1', memory: '4Gi' }, limits: { memory: '16Gi', 'nvidia.com/gpu': '1' } },
      env: [{ name: 'NVIDIA_VISIBLE_DEVICES', value: 'all' }],
      logLevel: 'debug',
      stopGracePeriod: 300,
    },
  },
  {
    dir: 'custom-image',
    title: 'Your own image (anything x86_64: glibc, musl/alpine, distroless)',
    worker: {
      name: 'custom',
      image: 'registry.example.com/team/actions-runtime:1.4.2',
      imagePullPolicy: 'Always',
      env: [{ name: 'HTTPS_PROXY', value: 'http://proxy.example.com:3128' }],
    },
  },
];
