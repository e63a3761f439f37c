/**
 * The ONE option table. Parsing (YAML, ATTUNE__* env, flags), defaults, validation and the README
 * configuration table are all derived from it; test/unit/config/option-table.test.ts keeps README in sync.
 *
 * Keys are Attune's YAML keys (docs/attune-compat.md §1.2). The env name is derived mechanically the way Attune's
 * `config` crate does it: ATTUNE__ + key with `.` → `__`, upper-cased.
 */

export type OptionType =
  | { kind: 'string' }
  | { kind: 'url'; schemes: readonly string[] } // may carry credentials: never echoed
  | { kind: 'identifier'; pattern: RegExp; describe: string }
  | { kind: 'int'; min: number; max: number }
  | { kind: 'bool' }
  | { kind: 'enum'; values: readonly string[] }
  | { kind: 'list' } // comma-separated in env, YAML sequence in files
  | { kind: 'map' } // YAML mapping; env: ATTUNE__WORKER__LABELS__ZONE=a
  | { kind: 'json' }; // free structure (YAML only)

export interface OptionSpec {
  key: string;
  type: OptionType;
  default: unknown;
  doc: string;
  /** Extra environment variable read after ATTUNE__* (Attune's non-prefixed variables). */
  alsoEnv?: string;
  /** CLI flag that overrides everything. */
  flag?: string;
  /** Contains credentials: values never appear in messages or logs. */
  secret?: boolean;
  /** Accepted for compatibility with Attune's config files; the agent does not use it. */
  unused?: boolean;
}

const str = { kind: 'string' } as const;
const bool = { kind: 'bool' } as const;
const int = (min: number, max: number) => ({ kind: 'int', min, max }) as const;
const MiB = 1024 * 1024;

export const OPTIONS: readonly OptionSpec[] = [
  { key: 'environment', type: str, default: 'development', doc: 'Attune environment name; selects `config.{environment}.yaml`.' },
  { key: 'service_name', type: str, default: 'attune', doc: 'Service name (compatibility).', unused: true },

  { key: 'database.url', type: { kind: 'url', schemes: ['postgres', 'postgresql'] }, secret: true,
    default: 'postgresql://postgres:postgres@localhost:5432/attune', doc: 'PostgreSQL URL of the Attune database.' },
  { key: 'database.schema', type: { kind: 'identifier', pattern: /^[A-Za-z0-9_]{1,63}$/, describe: '1-63 characters of A-Z a-z 0-9 _' },
    default: 'attune', doc: 'Schema holding Attune tables; set as `search_path` on every connection.' },
  { key: 'database.max_connections', type: int(1, 1000), default: 50, doc: 'Pool size upper bound.' },
  { key: 'database.min_connections', type: int(0, 1000), default: 5, doc: 'Pool minimum (compatibility; pg pools grow on demand).', unused: true },
  { key: 'database.connect_timeout', type: int(1, 3600), default: 30, doc: 'Seconds to wait for a database connection.' },
  { key: 'database.idle_timeout', type: int(1, 86400), default: 600, doc: 'Seconds before an idle pooled connection is closed.' },
  { key: 'database.statement_timeout', type: int(0, 3600), default: 30,
    doc: 'Seconds one statement may run (0 = no limit). (ext.)' },
  { key: 'database.lock_timeout', type: int(0, 3600), default: 10,
    doc: 'Seconds a statement waits for a lock held elsewhere (0 = no limit; tried 3 times). (ext.)' },
  { key: 'database.idle_in_transaction_timeout', type: int(0, 86400), default: 60,
    doc: 'Seconds a session may idle inside a transaction (0 = no limit). (ext.)' },
  { key: 'database.log_lock_timeout', type: int(1, 3600), default: 5,
    doc: 'Seconds a run waits for Attune\'s artifact locks, then logs to plain `execution_{id}/` files. (ext.)' },

  { key: 'message_queue.url', type: { kind: 'url', schemes: ['amqp', 'amqps'] }, secret: true,
    default: 'amqp://guest:guest@localhost:5672/%2f', doc: 'RabbitMQ URL.' },
  { key: 'message_queue.exchange', type: str, default: 'attune', doc: 'Compatibility only: topology uses Attune\'s compiled names.', unused: true },
  { key: 'message_queue.enable_dlq', type: bool, default: true, doc: 'Compatibility only (queues always carry `x-dead-letter-exchange`).', unused: true },
  { key: 'message_queue.message_ttl', type: int(0, 2 ** 31 - 1), default: 3600, doc: 'Compatibility only.', unused: true },
  { key: 'message_queue.max_message_bytes', type: int(64 * 1024, 128 * MiB), default: 4 * MiB,
    doc: 'Largest message published; bigger completions are shortened (`result_truncated`). (ext.)' },

  { key: 'server.host', type: str, default: '0.0.0.0', doc: 'Attune API host, used only to derive the API URL fallback.' },
  { key: 'server.port', type: int(1, 65535), default: 8080, doc: 'Attune API port, used only to derive the API URL fallback.' },
  { key: 'api_url', type: str, default: '', alsoEnv: 'ATTUNE_API_URL',
    doc: 'API base URL handed to actions (`ATTUNE_API_URL`); default `http://{server.host}:{server.port}`.' },

  { key: 'security.jwt_secret', type: str, default: '', secret: true, doc: 'Shared HS256 secret for worker/execution tokens.' },
  { key: 'security.encryption_key', type: str, default: '', secret: true, doc: 'Attune\'s encryption key (>= 32 chars; the API\'s): secret parameters and outputs (`execution_secret_value`).' },

  { key: 'log.level', type: { kind: 'enum', values: ['trace', 'debug', 'info', 'warn', 'error'] }, default: 'info', alsoEnv: 'RUST_LOG',
    doc: 'Log level; `RUST_LOG` style too (`attune_worker=debug,info` → info).' },
  { key: 'log.format', type: { kind: 'enum', values: ['json', 'pretty'] }, default: 'json', doc: 'Always JSON lines on stdout; `pretty` is accepted and logs JSON (pipe through pino-pretty).' },
  { key: 'log.mirror_runtime_stdout_to_stdio', type: bool, default: false, doc: 'Copy action stdout to the agent\'s log (JSON lines with `execution_id`, `stream`).' },
  { key: 'log.mirror_runtime_stderr_to_stdio', type: bool, default: false, doc: 'Copy action stderr to the agent\'s log (JSON lines with `execution_id`, `stream`).' },

  { key: 'packs_base_dir', type: str, default: '/opt/attune/packs', doc: 'Pack volume root.' },
  { key: 'runtime_envs_dir', type: str, default: '/opt/attune/runtime_envs', doc: 'Runtime environments (venvs, node_modules) root.' },
  { key: 'artifacts_dir', type: str, default: '/opt/attune/artifacts', doc: 'Artifacts and execution log files root.' },
  { key: 'packs.transport', type: { kind: 'enum', values: ['auto', 'volume', 'api'] }, default: 'auto', doc: 'How pack files arrive (only `volume` is implemented; `auto` = volume).' },
  { key: 'artifacts.transport', type: { kind: 'enum', values: ['auto', 'volume', 'api'] }, default: 'auto', doc: 'How logs/artifacts leave (only `volume` is implemented; `auto` = volume).' },
  { key: 'default_execution_timeout_seconds', type: int(1, 7 * 86400), default: 600, doc: 'Timeout when neither execution, workflow task nor action sets one.' },

  { key: 'worker.name', type: str, default: '', alsoEnv: 'ATTUNE_WORKER_NAME', flag: '--name',
    doc: 'Worker name (unique row key). `--name` > config > `ATTUNE_WORKER_NAME` > `worker-<hostname>`.' },
  { key: 'worker.worker_type', type: { kind: 'enum', values: ['local', 'remote', 'container'] }, default: 'local', alsoEnv: 'ATTUNE_WORKER_TYPE',
    doc: 'Worker type written at first registration.' },
  { key: 'worker.runtime_id', type: int(0, Number.MAX_SAFE_INTEGER), default: 0, doc: '`worker.runtime` column at first registration (0 = NULL).' },
  { key: 'worker.host', type: str, default: '', doc: 'Host written to the worker row (default: the OS hostname).' },
  { key: 'worker.port', type: int(0, 65535), default: 0, doc: 'Port written to the worker row (0 = NULL).' },
  { key: 'worker.runtimes', type: { kind: 'list' }, default: [], alsoEnv: 'ATTUNE_WORKER_RUNTIMES',
    doc: 'Runtime filter/override (aliases like `python3`, `bash`, `nodejs` accepted). Empty = everything detected.' },
  { key: 'worker.capabilities', type: { kind: 'map' }, default: {}, doc: 'Extra capability keys merged into `capabilities`.' },
  { key: 'worker.labels', type: { kind: 'map' }, default: {}, doc: 'Worker labels (`capabilities.labels`).' },
  { key: 'worker.taints', type: { kind: 'json' }, default: [], doc: 'Worker taints: list of `{key, value?, effect: no_schedule|prefer_no_schedule}`.' },
  { key: 'worker.max_concurrent_tasks', type: int(1, 1000), default: 10, doc: 'Actions run at once; prefetch is this + 2.' },
  { key: 'worker.heartbeat_interval', type: int(1, 60), default: 30, doc: 'Seconds between heartbeats (Attune treats > 90 s as stale).' },
  { key: 'worker.task_timeout', type: int(1, 86400), default: 300, doc: 'Compatibility only (unused by Attune too).', unused: true },
  { key: 'worker.max_stdout_bytes', type: int(1024, 1024 * MiB), default: 10 * MiB, doc: 'stdout capture cap per execution.' },
  { key: 'worker.max_stderr_bytes', type: int(1024, 1024 * MiB), default: 10 * MiB, doc: 'stderr capture cap per execution.' },
  { key: 'worker.execution_log_retention_policy', type: { kind: 'enum', values: ['days', 'hours', 'minutes', 'versions'] }, default: 'days', doc: 'Log artifacts\' retention when the action sets none.' },
  { key: 'worker.execution_log_retention_limit', type: int(1, 100000), default: 7, doc: 'Retention limit of the execution log artifacts, when the action sets none.' },
  { key: 'worker.shutdown_timeout', type: int(0, 3600), default: 30, doc: 'Seconds the first SIGTERM lets running actions finish before cancelling them.' },
  { key: 'worker.stream_logs', type: bool, default: true, doc: 'Compatibility only.', unused: true },
  { key: 'worker.passthrough_env', type: { kind: 'list' }, default: [], doc: 'Extra agent environment variables copied into every action (not `ATTUNE_*`).' },
  { key: 'worker.probe_timeout', type: int(1, 300), default: 5, doc: 'Seconds each interpreter version probe may take. (ext.)' },
  { key: 'worker.env_setup_timeout', type: int(1, 86400), default: 600, doc: 'Seconds one environment setup command may take (docs/environments.md).' },
  { key: 'worker.kill_grace_period', type: int(0, 3600), default: 10, doc: 'Seconds between SIGTERM and SIGKILL of an action\'s process group. (ext.)' },
  { key: 'worker.health_port', type: int(0, 65535), default: 0, doc: 'Port of the HTTP listener serving /healthz, /readyz and /metrics (0 = off; docs/lifecycle.md).' },
  { key: 'worker.health_host', type: str, default: '0.0.0.0', doc: 'Address the health/metrics listener binds. (ext.)' },
  { key: 'worker.db_retry_window', type: int(0, 86400), default: 300, doc: 'Seconds a run\'s database calls are retried during an outage (a dispatch waits ≤ 240 s unacked).' },
  { key: 'worker.result_spool_dir', type: str, default: '',
    doc: 'Result spool; empty: `{artifacts_dir}/.attune-agent-spool`.' },
  { key: 'worker.result_spool_max_files', type: int(1, 1_000_000), default: 10_000, doc: 'Result spool bound (files).' },
  { key: 'worker.result_spool_max_bytes', type: int(1024 * 1024, 64 * 1024 * MiB), default: 1024 * MiB, doc: 'Result spool bound (bytes).' },
];

export const OPTION_BY_KEY: ReadonlyMap<string, OptionSpec> = new Map(OPTIONS.map((o) => [o.key, o]));

export function envNameFor(key: string): string {
  return 'ATTUNE__' + key.split('.').map((p) => p.toUpperCase()).join('__');
}
