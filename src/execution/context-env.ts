/**
 * The action's environment (docs/attune-compat.md §5.6), pure. Built from nothing, in this order (later wins):
 *   1. the baseline (PATH, HOME, locale, TZ, TMPDIR + worker.passthrough_env), captured at start;
 *   2. the ATTUNE_* execution context;
 *   3. the runtime's `execution_config.env_vars` (templated; set/prepend/append);
 *   4. ATTUNE_PARAMETER_DELIVERY / _FORMAT / _FILE;
 *   5. the execution's own `env_vars` (an object of strings).
 * Runtime and execution variables may not override ATTUNE_* names (ignored with a warning).
 */
import type { EnforcementRefs, EnvVarSpec, ExecutionRow } from '../model.ts';
import type { ParameterDelivery, ParameterFormat } from './params.ts';
import { packRefOf } from './jwt.ts';

export interface TemplateVars {
  pack_dir: string;
  env_dir: string;
  interpreter: string;
  manifest_path: string;
}

export interface ContextEnvInput {
  baseline: Readonly<Record<string, string>>;
  execution: Pick<ExecutionRow, 'id' | 'action_ref' | 'pack_release_digest' | 'trace_tag' | 'config' | 'env_vars'>;
  apiUrl: string;
  artifactsDir: string;
  runtimeEnvsDir: string;
  apiToken?: string | null;
  enforcement?: Pick<EnforcementRefs, 'rule_ref' | 'trigger_ref'> | null;
  runtimeEnvVars?: Readonly<Record<string, string | EnvVarSpec>> | null;
  templateVars: TemplateVars;
  parameterDelivery: ParameterDelivery;
  parameterFormat: ParameterFormat;
  parameterFile: string | null;
}

export type ContextEnvResult =
  | { ok: true; env: Record<string, string>; warnings: string[] }
  | { ok: false; error: string };

const RESERVED_PREFIX = 'ATTUNE_';

export function buildChildEnv(input: ContextEnvInput): ContextEnvResult {
  const warnings: string[] = [];
  const ex = input.execution;
  const env: Record<string, string> = { ...input.baseline };

  env.ATTUNE_EXEC_ID = String(ex.id);
  env.ATTUNE_ACTION = ex.action_ref;
  env.ATTUNE_API_URL = input.apiUrl;
  env.ATTUNE_ARTIFACTS_DIR = input.artifactsDir;
  env.ATTUNE_RUNTIME_ENVS_DIR = input.runtimeEnvsDir;
  env.ATTUNE_PACK_REF = packRefOf(ex.action_ref);
  if (ex.pack_release_digest) env.ATTUNE_PACK_RELEASE_DIGEST = ex.pack_release_digest;
  if (ex.trace_tag) env.ATTUNE_TRACE_TAG = ex.trace_tag;
  if (input.apiToken) env.ATTUNE_API_TOKEN = input.apiToken;
  if (input.enforcement?.rule_ref) env.ATTUNE_RULE = input.enforcement.rule_ref;
  if (input.enforcement?.trigger_ref) env.ATTUNE_TRIGGER = input.enforcement.trigger_ref;
  const context = ex.config?.context;
  if (context !== null && typeof context === 'object' && !Array.isArray(context)) {
    for (const [key, value] of Object.entries(context as Record<string, unknown>)) {
      env[`ATTUNE_CONTEXT_${key.toUpperCase()}`] = contextValue(value);
    }
  }

  for (const [name, spec] of Object.entries(input.runtimeEnvVars ?? {})) {
    if (name.startsWith(RESERVED_PREFIX)) {
      warnings.push(`runtime env_vars: ignoring ${name} (ATTUNE_* names are set by the agent)`);
      continue;
    }
    env[name] = resolveEnvVar(spec, input.templateVars, env[name]);
  }

  env.ATTUNE_PARAMETER_DELIVERY = input.parameterDelivery;
  env.ATTUNE_PARAMETER_FORMAT = input.parameterFormat;
  if (input.parameterDelivery === 'file' && input.parameterFile !== null) env.ATTUNE_PARAMETER_FILE = input.parameterFile;

  const own = ex.env_vars;
  if (own !== null && own !== undefined) {
    if (typeof own !== 'object' || Array.isArray(own)) {
      return { ok: false, error: `execution ${ex.id}: env_vars must be a JSON object of strings, got ${describeType(own)}` };
    }
    for (const [name, value] of Object.entries(own as Record<string, unknown>)) {
      if (typeof value !== 'string') {
        return { ok: false, error: `execution ${ex.id}: env_vars.${name} must be a string, got ${describeType(value)}` };
      }
      if (name === '' || name.includes('=') || name.includes('\0') || value.includes('\0')) {
        return { ok: false, error: `execution ${ex.id}: env_vars.${JSON.stringify(name)} is not a valid environment variable (no '=', no NUL, not empty)` };
      }
      if (name.startsWith(RESERVED_PREFIX)) {
        warnings.push(`execution env_vars: ignoring ${name} (ATTUNE_* names are set by the agent)`);
        continue;
      }
      env[name] = value;
    }
  }
  return { ok: true, env, warnings };
}

/** Strings, numbers and booleans raw; everything else as JSON. */
function contextValue(v: unknown): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return JSON.stringify(v) ?? 'null';
}

export function applyTemplate(text: string, vars: TemplateVars): string {
  return text
    .replaceAll('{pack_dir}', vars.pack_dir)
    .replaceAll('{env_dir}', vars.env_dir)
    .replaceAll('{interpreter}', vars.interpreter)
    .replaceAll('{manifest_path}', vars.manifest_path);
}

/** `set` replaces; `prepend`/`append` join with the separator (default ':') when a value exists. */
export function resolveEnvVar(spec: string | EnvVarSpec, vars: TemplateVars, current: string | undefined): string {
  if (typeof spec === 'string') return applyTemplate(spec, vars);
  const value = applyTemplate(String(spec.value ?? ''), vars);
  const sep = spec.separator ?? ':';
  const have = current !== undefined && current !== '';
  switch (spec.operation ?? 'set') {
    case 'prepend':
      return have ? `${value}${sep}${current}` : value;
    case 'append':
      return have ? `${current}${sep}${value}` : value;
    default:
      return value;
  }
}

function describeType(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}
