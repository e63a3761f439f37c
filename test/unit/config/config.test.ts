import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadRawConfig, type LoadInput } from '../../../src/config/load.ts';
import { compileConfig, compileDetectConfig, rustLogLevel } from '../../../src/config/compile.ts';
import { ConfigError } from '../../../src/config/errors.ts';

function load(env: Record<string, string>, files: Record<string, string> = {}, flags: LoadInput['flags'] = {}) {
  return compileConfig(loadRawConfig({ env, cwd: '/cfg', flags, readFile: (p) => files[p] }));
}

function configError(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof ConfigError, `expected ConfigError, got ${e}`);
    return e.message;
  }
  assert.fail('expected a ConfigError');
}

test('defaults match Attune', () => {
  const c = load({});
  assert.equal(c.database.url, 'postgresql://postgres:postgres@localhost:5432/attune');
  assert.equal(c.database.schema, 'attune');
  assert.equal(c.messageQueue.url, 'amqp://guest:guest@localhost:5672/%2f');
  assert.equal(c.worker.maxConcurrentTasks, 10);
  assert.equal(c.worker.heartbeatIntervalMs, 30_000);
  assert.equal(c.worker.shutdownTimeoutMs, 30_000);
  assert.equal(c.defaultExecutionTimeoutMs, 600_000);
  assert.equal(c.packsBaseDir, '/opt/attune/packs');
  assert.equal(c.apiUrl, 'http://127.0.0.1:8080', '0.0.0.0 is rewritten to 127.0.0.1');
  assert.equal(c.worker.maxStdoutBytes, 10 * 1024 * 1024);
  assert.ok(Object.isFrozen(c) && Object.isFrozen(c.worker));
});

test('layering: defaults < config.yaml < config.{env}.yaml < ATTUNE__ env < flags', () => {
  const files = {
    '/cfg/config.yaml': 'worker:\n  max_concurrent_tasks: 3\n  name: from-file\n  heartbeat_interval: 20\ndatabase:\n  schema: one\n',
    '/cfg/config.staging.yaml': 'worker:\n  max_concurrent_tasks: 4\npacks:\n  transport: volume\nartifacts:\n  transport: volume\n',
  };
  const c = load({ ATTUNE__ENVIRONMENT: 'staging', ATTUNE__DATABASE__SCHEMA: 'two', ATTUNE__ENVIRONMENT_UNUSED: 'x' }, files, { name: 'from-flag' });
  assert.equal(c.environment, 'staging');
  assert.equal(c.worker.maxConcurrentTasks, 4, 'environment file beats base file');
  assert.equal(c.worker.heartbeatIntervalMs, 20_000, 'base file beats defaults');
  assert.equal(c.database.schema, 'two', 'env beats files');
  assert.equal(c.worker.name, 'from-flag', 'flag beats everything');
});

test('ATTUNE_CONFIG / --config choose the base file; a named missing file is an error', () => {
  const files = { '/etc/a.yaml': 'worker:\n  max_concurrent_tasks: 7\n', '/cfg/config.yaml': 'worker:\n  max_concurrent_tasks: 2\n' };
  assert.equal(load({ ATTUNE_CONFIG: '/etc/a.yaml' }, files).worker.maxConcurrentTasks, 7);
  assert.equal(load({}, files, { config: '/etc/a.yaml' }).worker.maxConcurrentTasks, 7);
  assert.equal(load({}, files).worker.maxConcurrentTasks, 2);
  assert.match(configError(() => load({ ATTUNE_CONFIG: '/nope.yaml' }, files)), /\/nope\.yaml does not exist.*ATTUNE_CONFIG/);
});

test('non-prefixed Attune variables are fallbacks after config', () => {
  assert.equal(load({ ATTUNE_WORKER_NAME: 'pod-1' }).worker.name, 'pod-1');
  assert.equal(load({ ATTUNE_WORKER_NAME: 'pod-1', ATTUNE__WORKER__NAME: 'cfg' }).worker.name, 'cfg');
  assert.equal(load({ ATTUNE_WORKER_TYPE: 'CONTAINER' }).worker.workerType, 'container');
  // Attune ignores an unknown ATTUNE_WORKER_TYPE with a warning (docs/attune-compat.md §1.3); the agent says so at start.
  const bogus = load({ ATTUNE_WORKER_TYPE: 'bogus' });
  assert.equal(bogus.worker.workerType, 'local');
  assert.deepEqual(bogus.warnings, ['ATTUNE_WORKER_TYPE="bogus" ignored: expected one of local, remote, container; using worker.worker_type="local"']);
  assert.deepEqual(load({}).warnings, []);
  // The prefixed key is Attune's own config and stays strict.
  assert.match(configError(() => load({ ATTUNE__WORKER__WORKER_TYPE: 'bogus' })), /worker\.worker_type/);
  assert.deepEqual(load({ ATTUNE_WORKER_RUNTIMES: ' Python3, bash ,,' }).worker.runtimes, ['python3', 'bash']);
  assert.equal(load({ ATTUNE_API_URL: 'http://api:8080' }).apiUrl, 'http://api:8080');
  assert.deepEqual(load({ ATTUNE__WORKER__PASSTHROUGH_ENV: 'HTTP_PROXY, NO_PROXY' }).worker.passthroughEnv, ['HTTP_PROXY', 'NO_PROXY']);
});

test('env values are type-parsed; maps merge ATTUNE__WORKER__LABELS__*', () => {
  const c = load({ ATTUNE__LOG__MIRROR_RUNTIME_STDOUT_TO_STDIO: 'true', ATTUNE__WORKER__LABELS__ZONE: 'eu-1' }, {
    '/cfg/config.yaml': 'worker:\n  labels:\n    gpu: "true"\n  taints:\n    - key: gpu\n      effect: no_schedule\n',
  });
  assert.equal(c.log.mirrorStdout, true);
  assert.deepEqual(c.worker.labels, { gpu: 'true', zone: 'eu-1' });
  assert.deepEqual(c.worker.taints, [{ key: 'gpu', effect: 'no_schedule' }]);
});

test('RUST_LOG is honoured when log.level is not set', () => {
  assert.equal(load({ RUST_LOG: 'debug' }).log.level, 'debug');
  assert.equal(load({ RUST_LOG: 'attune_worker=trace,warn' }).log.level, 'warn');
  assert.equal(load({ RUST_LOG: 'debug', ATTUNE__LOG__LEVEL: 'error' }).log.level, 'error');
  assert.equal(rustLogLevel('attune=debug'), 'debug');
  assert.equal(rustLogLevel('warning'), 'warn');
});

test('invalid values name the key, the source, the value and what is allowed', () => {
  assert.equal(
    configError(() => load({ ATTUNE__WORKER__MAX_CONCURRENT_TASKS: 'ten' })),
    'invalid worker.max_concurrent_tasks (from ATTUNE__WORKER__MAX_CONCURRENT_TASKS): "ten" — expected a whole number from 1 to 1000',
  );
  assert.match(configError(() => load({}, { '/cfg/config.yaml': 'worker:\n  heartbeat_interval: 120\n' })), /worker\.heartbeat_interval \(from \/cfg\/config\.yaml\): "120" — expected a whole number from 1 to 60/);
  assert.match(configError(() => load({ ATTUNE__DATABASE__SCHEMA: 'bad-schema;drop' })), /database\.schema.*"bad-schema;drop".*A-Z a-z 0-9 _/);
  assert.match(configError(() => load({ ATTUNE__LOG__LEVEL: 'loud' })), /log\.level.*one of trace, debug, info, warn, error/);
  assert.match(configError(() => load({ ATTUNE__WORKER__PASSTHROUGH_ENV: 'ATTUNE_SECRET' })), /reserved/);
  assert.match(configError(() => load({ ATTUNE__WORKER__PASSTHROUGH_ENV: 'A,A' })), /listed twice/);
  assert.match(configError(() => load({}, { '/cfg/config.yaml': 'worker: [unclosed' })), /not valid YAML/);
  assert.match(configError(() => load({}, { '/cfg/config.yaml': 'worker:\n  taints:\n    - key: a\n      effect: never\n' })), /effect "never" — expected no_schedule or prefer_no_schedule/);
});

test('outside development/test the transports must be explicit (Attune validation)', () => {
  assert.match(configError(() => load({ ATTUNE__ENVIRONMENT: 'production' })), /packs\.transport must be set to volume or api.*ATTUNE__PACKS__TRANSPORT/);
  const c = load({ ATTUNE__ENVIRONMENT: 'production', ATTUNE__PACKS__TRANSPORT: 'volume', ATTUNE__ARTIFACTS__TRANSPORT: 'volume' });
  assert.equal(c.packsTransport, 'volume');
});

test('credentials never appear in configuration errors', () => {
  const secret = 'hunter2-very-secret';
  const cases: Record<string, string>[] = [
    { ATTUNE__DATABASE__URL: `mysql://admin:${secret}@db/attune` },
    { ATTUNE__DATABASE__URL: `postgres://admin:${secret}@db:notaport/attune` },
    { ATTUNE__MESSAGE_QUEUE__URL: `http://guest:${secret}@mq/` },
    { ATTUNE__SECURITY__ENCRYPTION_KEY: 'short' + secret },
  ];
  for (const env of cases) {
    const msg = configError(() => load(env));
    assert.ok(!msg.includes(secret), `message leaks the secret: ${msg}`);
    assert.match(msg, /database\.url|message_queue\.url|encryption_key/);
  }
});

test('--detect-only validates only what detection reads: a worker config that cannot start still detects', () => {
  const detect = (env: Record<string, string>) => compileDetectConfig(loadRawConfig({ env, cwd: '/cfg', flags: {}, readFile: () => undefined }));
  const broken = { ATTUNE__ENVIRONMENT: 'production', ATTUNE__DATABASE__URL: 'http://nope', ATTUNE__WORKER__MAX_CONCURRENT_TASKS: 'many' };
  assert.match(configError(() => load(broken)), /database\.url|transport|max_concurrent_tasks/);
  const d = detect({ ...broken, ATTUNE_WORKER_RUNTIMES: ' Python3, bash ,', ATTUNE__WORKER__PROBE_TIMEOUT: '2' });
  assert.deepEqual(d.runtimes, ['python3', 'bash']);
  assert.equal(d.probeTimeoutMs, 2000);
  // The keys detection does read are still validated.
  assert.match(configError(() => detect({ ATTUNE__WORKER__PROBE_TIMEOUT: '0' })), /worker\.probe_timeout/);
});

test('log.level accepts RUST_LOG-style values from ATTUNE__LOG__LEVEL too', () => {
  const level = (env: Record<string, string>) => load(env).log.level;
  assert.equal(level({ ATTUNE__LOG__LEVEL: 'attune_worker=debug,info' }), 'info');
  assert.equal(level({ ATTUNE__LOG__LEVEL: 'attune_worker=debug' }), 'debug');
  assert.equal(level({ ATTUNE__LOG__LEVEL: 'WARN' }), 'warn');
  assert.equal(level({ RUST_LOG: 'info,attune=trace' }), 'info');
});
