/**
 * Attune rows and JSON shapes the agent reads (docs/attune-compat.md §5.4, §5.12). Column names are Attune's;
 * BIGINT ids arrive from `pg` as strings and are converted to numbers at the db edge
 * (Attune ids fit in 2^53).
 */
export type ExecutionStatus =
  | 'requested' | 'scheduling' | 'scheduled' | 'running' | 'completed'
  | 'failed' | 'canceling' | 'cancelled' | 'timeout' | 'abandoned';

/** The statuses a worker ends a run with (its one terminal write). */
export type TerminalStatus = Extract<ExecutionStatus, 'completed' | 'failed' | 'timeout' | 'cancelled'>;

const TERMINAL: ReadonlySet<ExecutionStatus> = new Set<ExecutionStatus>(['completed', 'failed', 'timeout', 'cancelled', 'abandoned']);

/** An execution in a status it never leaves: the worker's four, and Attune's `abandoned`. */
export function isTerminalStatus(status: ExecutionStatus): boolean {
  return TERMINAL.has(status);
}

export interface ExecutionRow {
  id: number;
  action: number | null;
  action_ref: string;
  pack_release: number | null;
  pack_release_digest: string | null;
  executable_snapshot: ExecutableSnapshot | null;
  config: Record<string, unknown> | null;
  env_vars: unknown;
  parent: number | null;
  enforcement: number | null;
  executor: number | null;
  permission_set_refs: string[] | null;
  worker: number | null;
  status: ExecutionStatus;
  trace_tag: string | null;
  result: unknown;
  started_at: Date | null;
  timeout_seconds: number | null;
  workflow_task: { timeout_seconds?: number | null; [k: string]: unknown } | null;
}

export interface ExecutableSnapshot {
  release?: { id?: number; digest?: string; content_path?: string } | null;
  executable?: { action?: ActionRow | null; runtime?: RuntimeRow | null; runtime_versions?: RuntimeVersionRow[] } | null;
}

export interface ActionRow {
  id: number;
  ref: string;
  pack: number | null;
  pack_ref: string;
  entrypoint: string;
  runtime: number | null;
  runtime_version_constraint: string | null;
  param_schema: unknown;
  out_schema: unknown;
  is_adhoc: boolean;
  parameter_delivery: 'stdin' | 'file';
  parameter_format: 'json' | 'dotenv' | 'yaml';
  output_format: 'text' | 'json' | 'yaml' | 'jsonl';
  timeout_seconds: number | null;
  log_retention_policy: string | null;
  log_retention_limit: number | null;
}

/** The refs of an execution's `enforcement` row (ATTUNE_RULE, ATTUNE_TRIGGER). */
export interface EnforcementRefs {
  id: number;
  rule_ref: string;
  trigger_ref: string;
}

/** The release a dispatch names (docs/attune-compat.md §4.7); null fields are not checked. */
export interface DispatchRelease {
  releaseId: number | null;
  releaseDigest: string | null;
}

export interface EnvVarSpec { value: string; operation?: 'set' | 'prepend' | 'append'; separator?: string }

export interface RuntimeExecutionConfig {
  interpreter?: { binary?: string; args?: string[]; file_extension?: string | null };
  inline_execution?: { strategy?: 'direct' | 'temp_file'; extension?: string | null; inject_shell_helpers?: boolean };
  environment?: { env_type?: string; dir_name?: string; create_command?: string[]; interpreter_path?: string | null } | null;
  dependencies?: { manifest_file?: string; install_command?: string[] } | null;
  env_vars?: Record<string, string | EnvVarSpec>;
}

export interface RuntimeRow {
  id: number;
  ref: string;
  pack: number | null;
  pack_ref: string | null;
  description: string | null;
  name: string;
  aliases: string[];
  distributions: unknown;
  installation: unknown;
  execution_config: RuntimeExecutionConfig;
  auto_detected: boolean;
  detection_config: unknown;
}

export interface RuntimeVersionRow {
  id: number;
  runtime: number;
  runtime_ref: string;
  version: string;
  execution_config: RuntimeExecutionConfig;
  /** `{verification: {commands: [...]}, …}` (db/version-verify.ts reads it). */
  distributions?: unknown;
  is_default: boolean;
  available: boolean | null;
}

export interface WorkerRow {
  id: number;
  name: string;
  worker_type: 'local' | 'remote' | 'container';
  worker_role: 'action' | 'sensor';
  status: 'active' | 'inactive' | 'busy' | 'error';
  capabilities: Record<string, unknown> | null;
  last_heartbeat: Date | null;
}

/** An `execution_secret_value` row as read (docs/attune-compat.md §5.5): the encrypted value behind a redaction marker. */
export interface StoredSecretValue {
  json_path: string;
  encrypted_value: unknown;
  encryption_key_hash: string | null;
}

/** An `execution_secret_value` row to write (docs/attune-compat.md §5.9). */
export interface PreparedSecretValue {
  json_path: string;
  encrypted_value: string;
  encryption_key_hash: string;
  source_kind: string;
  source_ref: string | null;
}
