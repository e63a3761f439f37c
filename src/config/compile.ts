/**
 * Validate the layered raw values once and freeze them into the typed Config the rest of the agent
 * reads. Durations are converted to milliseconds and named *Ms. Every error names the key, where the
 * value came from, the bad value (never for secret keys) and what is allowed.
 */
import { join } from 'node:path';
import { OPTIONS, envNameFor, type OptionSpec } from './options.ts';
import { ConfigError } from './errors.ts';
import { describeOrigin, type RawConfig, type RawValue } from './load.ts';

export interface Taint { key: string; value?: string; effect: 'no_schedule' | 'prefer_no_schedule' }

export interface Config {
  environment: string;
  /** Accepted-but-ignored settings, logged as warnings at start. */
  warnings: string[];
  database: {
    url: string; schema: string; maxConnections: number; connectTimeoutMs: number; idleTimeoutMs: number;
    /** Session settings of every connection (0 = no limit). */
    statementTimeoutMs: number; lockTimeoutMs: number; idleInTransactionTimeoutMs: number;
    /** lock_timeout inside the log-version allocation. */
    logLockTimeoutMs: number;
  };
  messageQueue: { url: string; maxMessageBytes: number };
  apiUrl: string;
  security: { jwtSecret: string; encryptionKey: string };
  log: { level: 'trace' | 'debug' | 'info' | 'warn' | 'error'; mirrorStdout: boolean; mirrorStderr: boolean };
  packsBaseDir: string;
  runtimeEnvsDir: string;
  artifactsDir: string;
  packsTransport: 'auto' | 'volume' | 'api';
  artifactsTransport: 'auto' | 'volume' | 'api';
  defaultExecutionTimeoutMs: number;
  worker: {
    /** Empty when unset: the name is resolved at registration (`worker-<hostname>`). */
    name: string;
    workerType: 'local' | 'remote' | 'container';
    runtimeId: number | null;
    host: string;
    port: number | null;
    /** ATTUNE_WORKER_RUNTIMES as given (trimmed, lowercased, empties dropped). Empty = no filter. */
    runtimes: string[];
    capabilities: Record<string, unknown>;
    labels: Record<string, string>;
    taints: Taint[];
    maxConcurrentTasks: number;
    heartbeatIntervalMs: number;
    maxStdoutBytes: number;
    maxStderrBytes: number;
    logRetentionPolicy: string;
    logRetentionLimit: number;
    shutdownTimeoutMs: number;
    passthroughEnv: string[];
    probeTimeoutMs: number;
    killGracePeriodMs: number;
    envSetupTimeoutMs: number;
    healthPort: number;
    healthHost: string;
    dbRetryWindowMs: number;
    /** Resolved: `{artifactsDir}/.attune-agent-spool` when unset. */
    resultSpoolDir: string;
    resultSpoolMaxFiles: number;
    resultSpoolMaxBytes: number;
  };
}

export function compileConfig(raw: RawConfig): Readonly<Config> {
  const v = (key: string): unknown => coerce(spec(key), raw.get(key)!);
  const s = (key: string) => v(key) as string;
  const n = (key: string) => v(key) as number;
  const b = (key: string) => v(key) as boolean;
  // Validate every option, used or not, so a typo'd value fails loudly at start.
  for (const o of OPTIONS) v(o.key);

  const environment = s('environment');
  const passthroughEnv = validatePassthrough(v('worker.passthrough_env') as string[], raw.get('worker.passthrough_env')!);
  const warnings: string[] = [];
  for (const o of OPTIONS) {
    const ig = raw.get(o.key)!.ignored;
    if (!ig) continue;
    const allowed = o.type.kind === 'enum' ? o.type.values.join(', ') : 'a valid value';
    warnings.push(`${ig.origin}=${JSON.stringify(ig.value)} ignored: expected one of ${allowed}; using ${o.key}=${JSON.stringify(v(o.key))}`);
  }
  const cfg: Config = {
    environment,
    warnings,
    database: {
      url: s('database.url'),
      schema: s('database.schema'),
      maxConnections: n('database.max_connections'),
      connectTimeoutMs: n('database.connect_timeout') * 1000,
      idleTimeoutMs: n('database.idle_timeout') * 1000,
      statementTimeoutMs: n('database.statement_timeout') * 1000,
      lockTimeoutMs: n('database.lock_timeout') * 1000,
      idleInTransactionTimeoutMs: n('database.idle_in_transaction_timeout') * 1000,
      logLockTimeoutMs: n('database.log_lock_timeout') * 1000,
    },
    messageQueue: { url: s('message_queue.url'), maxMessageBytes: n('message_queue.max_message_bytes') },
    apiUrl: resolveApiUrl(s('api_url'), s('server.host'), n('server.port')),
    security: { jwtSecret: s('security.jwt_secret'), encryptionKey: s('security.encryption_key') },
    log: {
      level: v('log.level') as Config['log']['level'],
      mirrorStdout: b('log.mirror_runtime_stdout_to_stdio'),
      mirrorStderr: b('log.mirror_runtime_stderr_to_stdio'),
    },
    packsBaseDir: s('packs_base_dir'),
    runtimeEnvsDir: s('runtime_envs_dir'),
    artifactsDir: s('artifacts_dir'),
    packsTransport: v('packs.transport') as Config['packsTransport'],
    artifactsTransport: v('artifacts.transport') as Config['artifactsTransport'],
    defaultExecutionTimeoutMs: n('default_execution_timeout_seconds') * 1000,
    worker: {
      name: s('worker.name').trim(),
      workerType: v('worker.worker_type') as Config['worker']['workerType'],
      runtimeId: n('worker.runtime_id') || null,
      host: s('worker.host'),
      port: n('worker.port') || null,
      runtimes: normaliseRuntimes(v('worker.runtimes') as string[]),
      capabilities: v('worker.capabilities') as Record<string, unknown>,
      labels: validateLabels(v('worker.labels') as Record<string, unknown>, raw.get('worker.labels')!),
      taints: validateTaints(v('worker.taints'), raw.get('worker.taints')!),
      maxConcurrentTasks: n('worker.max_concurrent_tasks'),
      heartbeatIntervalMs: n('worker.heartbeat_interval') * 1000,
      maxStdoutBytes: n('worker.max_stdout_bytes'),
      maxStderrBytes: n('worker.max_stderr_bytes'),
      logRetentionPolicy: s('worker.execution_log_retention_policy'),
      logRetentionLimit: n('worker.execution_log_retention_limit'),
      shutdownTimeoutMs: n('worker.shutdown_timeout') * 1000,
      passthroughEnv,
      probeTimeoutMs: n('worker.probe_timeout') * 1000,
      killGracePeriodMs: n('worker.kill_grace_period') * 1000,
      envSetupTimeoutMs: n('worker.env_setup_timeout') * 1000,
      healthPort: n('worker.health_port'),
      healthHost: s('worker.health_host').trim() || '0.0.0.0',
      dbRetryWindowMs: n('worker.db_retry_window') * 1000,
      resultSpoolDir: s('worker.result_spool_dir').trim() || join(s('artifacts_dir'), '.attune-agent-spool'),
      resultSpoolMaxFiles: n('worker.result_spool_max_files'),
      resultSpoolMaxBytes: n('worker.result_spool_max_bytes'),
    },
  };
  validateCrossFields(cfg, raw);
  return deepFreeze(cfg);
}

/** What `--detect-only` needs: the runtime filter, the probe timeout and the probes' environment. */
export interface DetectConfig {
  runtimes: string[];
  probeTimeoutMs: number;
  passthroughEnv: string[];
}

/**
 * Only the keys detection reads are validated: `--detect-only` is the debugging tool for images
 * whose worker configuration may be incomplete or wrong (a production environment without
 * transports, a bad database URL), and it must still report what the image has.
 */
export function compileDetectConfig(raw: RawConfig): Readonly<DetectConfig> {
  const v = (key: string): unknown => coerce(spec(key), raw.get(key)!);
  return deepFreeze({
    runtimes: normaliseRuntimes(v('worker.runtimes') as string[]),
    probeTimeoutMs: (v('worker.probe_timeout') as number) * 1000,
    passthroughEnv: validatePassthrough(v('worker.passthrough_env') as string[], raw.get('worker.passthrough_env')!),
  });
}

function normaliseRuntimes(list: string[]): string[] {
  return list.map((r) => r.trim().toLowerCase()).filter((r) => r !== '');
}

function spec(key: string): OptionSpec {
  const o = OPTIONS.find((x) => x.key === key);
  if (!o) throw new Error(`internal: no option ${key}`);
  return o;
}

function shown(o: OptionSpec, value: unknown): string {
  if (o.secret) return '<redacted>';
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  return JSON.stringify(text && text.length > 80 ? text.slice(0, 77) + '...' : text);
}

function bad(o: OptionSpec, rv: RawValue, allowed: string): ConfigError {
  return new ConfigError(`invalid ${describeOrigin(o, rv)}: ${shown(o, rv.value)} — expected ${allowed}`);
}

/** Type-parse like the `config` crate: env values are strings and are converted here. */
function coerce(o: OptionSpec, rv: RawValue): unknown {
  const val = rv.value;
  const t = o.type;
  switch (t.kind) {
    case 'string':
      if (val === null || val === undefined) return '';
      if (typeof val === 'string' || typeof val === 'number' || typeof val === 'boolean') return String(val);
      throw bad(o, rv, 'a string');
    case 'url': {
      if (typeof val !== 'string' || val.trim() === '') throw bad(o, rv, `a URL with scheme ${t.schemes.join(' or ')}`);
      let u: URL;
      try {
        u = new URL(val);
      } catch {
        throw bad(o, rv, `a URL with scheme ${t.schemes.join(' or ')} (it does not parse as a URL)`);
      }
      const scheme = u.protocol.replace(/:$/, '');
      if (!t.schemes.includes(scheme)) throw new ConfigError(`invalid ${describeOrigin(o, rv)}: scheme "${scheme}" — expected ${t.schemes.join(' or ')}`);
      return val;
    }
    case 'identifier':
      if (typeof val !== 'string' || !t.pattern.test(val)) throw bad(o, rv, t.describe);
      return val;
    case 'int': {
      const num = typeof val === 'number' ? val : typeof val === 'string' && /^\s*-?\d+\s*$/.test(val) ? Number(val) : NaN;
      if (!Number.isInteger(num) || num < t.min || num > t.max) throw bad(o, rv, `a whole number from ${t.min} to ${t.max}`);
      return num;
    }
    case 'bool': {
      if (typeof val === 'boolean') return val;
      if (typeof val === 'string' && /^(true|1|yes|on)$/i.test(val.trim())) return true;
      if (typeof val === 'string' && /^(false|0|no|off)$/i.test(val.trim())) return false;
      throw bad(o, rv, 'true or false');
    }
    case 'enum': {
      let s = typeof val === 'string' ? val.trim().toLowerCase() : val;
      // RUST_LOG-style directives (`attune_worker=debug,info`) are accepted from every source.
      if (o.key === 'log.level' && (rv.origin === 'RUST_LOG' || (typeof val === 'string' && /[=,]/.test(val)))) s = rustLogLevel(String(val));
      if (typeof s !== 'string' || !t.values.includes(s)) throw bad(o, rv, `one of ${t.values.join(', ')}`);
      return s;
    }
    case 'list':
      if (Array.isArray(val)) return val.map((x) => String(x));
      if (typeof val === 'string') return val.split(',').map((x) => x.trim()).filter((x) => x !== '');
      throw bad(o, rv, 'a comma-separated list or a YAML sequence');
    case 'map':
      if (val === null || val === undefined) return {};
      if (typeof val === 'object' && !Array.isArray(val)) return val;
      throw bad(o, rv, 'a mapping');
    case 'json':
      if (typeof val === 'string') {
        try {
          return JSON.parse(val);
        } catch {
          throw bad(o, rv, 'JSON');
        }
      }
      return val;
  }
}

/** `RUST_LOG=attune_worker=debug,info` → `info`; `debug` → `debug`; `warning` → `warn`. */
export function rustLogLevel(text: string): string {
  const parts = text.split(',').map((p) => p.trim().toLowerCase()).filter(Boolean);
  const bare = parts.filter((p) => !p.includes('='));
  const pick = bare.length > 0 ? bare[bare.length - 1] : parts.length > 0 ? parts[0].split('=')[1] : 'info';
  if (pick === 'warning') return 'warn';
  if (pick === 'off') return 'error';
  return pick;
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
function validatePassthrough(names: string[], rv: RawValue): string[] {
  const o = spec('worker.passthrough_env');
  const seen = new Set<string>();
  for (const name of names) {
    if (!ENV_NAME.test(name)) throw new ConfigError(`invalid ${describeOrigin(o, rv)}: ${JSON.stringify(name)} is not an environment variable name (letters, digits, _; not starting with a digit)`);
    if (name.toUpperCase().startsWith('ATTUNE_')) throw new ConfigError(`invalid ${describeOrigin(o, rv)}: ${JSON.stringify(name)} — ATTUNE_* names are reserved for the execution context`);
    if (seen.has(name)) throw new ConfigError(`invalid ${describeOrigin(o, rv)}: ${JSON.stringify(name)} is listed twice`);
    seen.add(name);
  }
  return names;
}

function validateLabels(labels: Record<string, unknown>, rv: RawValue): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(labels)) {
    if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') {
      throw new ConfigError(`invalid ${describeOrigin(spec('worker.labels'), rv)}: label ${JSON.stringify(k)} must be a string`);
    }
    out[k] = String(v);
  }
  return out;
}

function validateTaints(value: unknown, rv: RawValue): Taint[] {
  const o = spec('worker.taints');
  if (value === null || value === undefined) return [];
  if (!Array.isArray(value)) throw bad(o, rv, 'a list of {key, value?, effect}');
  return value.map((t, i) => {
    const x = t as Record<string, unknown>;
    if (!x || typeof x !== 'object' || typeof x.key !== 'string' || x.key === '') {
      throw new ConfigError(`invalid ${describeOrigin(o, rv)}: taint #${i + 1} needs a non-empty "key"`);
    }
    if (x.effect !== 'no_schedule' && x.effect !== 'prefer_no_schedule') {
      throw new ConfigError(`invalid ${describeOrigin(o, rv)}: taint ${JSON.stringify(x.key)} effect ${JSON.stringify(x.effect)} — expected no_schedule or prefer_no_schedule`);
    }
    const taint: Taint = { key: x.key, effect: x.effect };
    if (x.value !== undefined && x.value !== null) taint.value = String(x.value);
    return taint;
  });
}

function validateCrossFields(cfg: Config, raw: RawConfig): void {
  if (cfg.security.encryptionKey !== '' && cfg.security.encryptionKey.length < 32) {
    throw new ConfigError(`invalid ${describeOrigin(spec('security.encryption_key'), raw.get('security.encryption_key')!)}: must be at least 32 characters when set`);
  }
  // Attune: outside development/test, a worker must choose its transports explicitly.
  if (!['development', 'test'].includes(cfg.environment)) {
    for (const key of ['packs.transport', 'artifacts.transport'] as const) {
      const rv = raw.get(key)!;
      if (rv.value === 'auto' || rv.source === 'default') {
        throw new ConfigError(`${key} must be set to volume or api when environment is ${JSON.stringify(cfg.environment)} (set it in the config file or ${envNameFor(key)})`);
      }
    }
  }
  if (cfg.packsTransport === 'api' || cfg.artifactsTransport === 'api') {
    throw new ConfigError('packs.transport/artifacts.transport "api" is not supported by attune-agent yet: use "volume" (mount the packs and artifacts volumes)');
  }
}

function resolveApiUrl(explicit: string, host: string, port: number): string {
  const url = explicit.trim() !== '' ? explicit.trim() : `http://${host}:${port}`;
  return url.replace('://0.0.0.0', '://127.0.0.1').replace('://[::]', '://127.0.0.1');
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}
