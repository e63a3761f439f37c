/**
 * Rows + config + what this image has → exactly how to run the action (docs/attune-compat.md §5.4–5.7). Pure:
 * the few filesystem facts it needs (is this an executable file, where is this name on PATH) are
 * injected, so every decision is unit-testable.
 *
 * Interpreter choice: the runtime's `execution_config.interpreter.binary` (a runtime_version's
 * config when one was chosen and its interpreter exists here); if that binary is not in this image
 * but the agent detected an interpreter of the same normalised runtime, that one is used (an
 * image's python lives in /usr/local/bin, Attune's core runtime says /usr/bin/python3). Runtime
 * `native` (or no interpreter binary) runs the action file itself.
 */
import { basename, extname, join } from 'node:path';
import type { ActionRow, EnforcementRefs, ExecutionRow, RuntimeExecutionConfig, RuntimeRow, RuntimeVersionRow } from '../model.ts';
import type { Config } from '../config/index.ts';
import { NATIVE, normalizeRuntimeName, runtimeOfExtension, runtimeSpec } from '../runtimes.ts';
import { buildChildEnv, applyTemplate, type TemplateVars } from './context-env.ts';
import { escapeSingleQuoted, formatParameters, parameterFileExtension, stdinPayload, type ParameterFormat } from './params.ts';
import { executionTokenClaims, packRefOf, signHs256 } from './jwt.ts';
import { PACK_REF, PACK_REF_RULE, type ActionSource } from './pack-files.ts';
import type { EnvironmentSpec } from './environments.ts';
import { CACHE_DIR, runtimeCacheKey, SHA256_OF_NOTHING, thisWorkerIdentity, type CacheIdentity } from './runtime-cache-key.ts';

export interface PlanFacts {
  /** Exists, is a regular file (after symlinks) and is executable by the agent. */
  isExecutableFile(path: string): boolean;
  /** Absolute path of `name` on the given PATH, or null. */
  which(name: string, pathEnv: string): string | null;
  /** SHA-256 (hex) of a regular file's bytes, or null when it cannot be read (the sha256 layout's dependency digest). */
  sha256OfFile?(path: string): string | null;
}

export interface DetectedInterpreter {
  name: string;
  path: string;
  version?: string | null;
}

export type PlanConfig = Pick<Config, 'packsBaseDir' | 'runtimeEnvsDir' | 'artifactsDir' | 'apiUrl' | 'defaultExecutionTimeoutMs'> & {
  security: Pick<Config['security'], 'jwtSecret'>;
};

export interface PlanInput {
  execution: ExecutionRow;
  action: ActionRow;
  runtime: RuntimeRow | null;
  /** The runtime_version picked for this execution, if the runtime has versions. */
  runtimeVersion?: RuntimeVersionRow | null;
  config: PlanConfig;
  detected: readonly DetectedInterpreter[];
  baselineEnv: Readonly<Record<string, string>>;
  source: ActionSource;
  enforcement?: Pick<EnforcementRefs, 'rule_ref' | 'trigger_ref'> | null;
  /** A private per-execution temp directory (created by the caller) for parameter/inline files. */
  tempDir: string;
  facts: PlanFacts;
  nowSeconds: number;
  /** Platform and image format of the `sha256/{key}` layout (default: this machine, as Attune's musl worker). */
  cacheIdentity?: CacheIdentity;
}

export interface PlannedFile {
  path: string;
  content: string;
  mode: number;
}

export interface ExecutionPlan {
  argv: string[];
  env: Record<string, string>;
  cwd: string | null;
  /** Text for stdin (already with its trailing newline), or null: stdin is closed at once. */
  stdin: string | null;
  paramFile: PlannedFile | null;
  inlineFile: PlannedFile | null;
  timeoutMs: number;
  /** lower(runtime.name) like Attune, or the heuristic choice when the action has no runtime. */
  runtimeName: string;
  /** Normalised runtime (shell, python, node, …, native). */
  runtimeKind: string;
  interpreter: string | null;
  runtimeVersion: string | null;
  /** The pack's runtime environment (execution/environments.ts makes it ready), or null: the runtime declares none. */
  environment: EnvironmentSpec | null;
  warnings: string[];
}

export type PlanErrorCode =
  | 'bad-parameters' | 'bad-env-vars' | 'bad-env-dir' | 'no-executor' | 'no-interpreter' | 'not-executable' | 'inline-unsupported';

/** Why the action cannot run here. `stage` decides the result text (prepare vs execution failure). */
export class PlanError {
  readonly code: PlanErrorCode;
  readonly stage: 'prepare' | 'execute';
  readonly message: string;
  constructor(code: PlanErrorCode, stage: 'prepare' | 'execute', message: string) {
    this.code = code;
    this.stage = stage;
    this.message = message;
  }
}

export type PlanResult = { ok: true; plan: ExecutionPlan } | { ok: false; error: PlanError };

export function planExecution(input: PlanInput): PlanResult {
  const { execution, action, source, facts } = input;
  const warnings: string[] = [];
  const pathEnv = input.baselineEnv.PATH ?? '';

  // ---- parameters
  const params = execution.config ?? {};
  if (typeof params !== 'object' || Array.isArray(params)) {
    return fail('bad-parameters', 'prepare', `execution ${execution.id}: config (the parameters) must be a JSON object`);
  }
  const format: ParameterFormat = action.parameter_format ?? 'json';
  const delivery = action.parameter_delivery ?? 'stdin';
  let formatted: string;
  try {
    formatted = formatParameters(params, format);
  } catch (e) {
    return fail('bad-parameters', 'prepare', `cannot format parameters as ${format}: ${(e as Error).message}`);
  }

  // ---- runtime and interpreter
  const kind = runtimeKind(input.runtime, source);
  const spec = runtimeSpec(kind);
  const runtimeName = input.runtime ? input.runtime.name.toLowerCase() : kind;
  let execConfig: RuntimeExecutionConfig = input.runtime?.execution_config ?? {};
  if (!input.runtime && spec) {
    execConfig = { interpreter: { binary: spec.binaries[0], args: [...spec.interpreterArgs] } };
  }
  let runtimeVersion: string | null = null;
  let interpreter: string | null = null;
  const packRef = packRefOf(action.ref);
  // Both name directories under runtime_envs_dir: nothing that could leave it.
  if (!PACK_REF.test(packRef)) {
    return fail('bad-env-dir', 'prepare', `action ref ${JSON.stringify(action.ref)}: its pack part ${JSON.stringify(packRef)} is not a pack ref (${PACK_REF_RULE}), so it names no runtime environment directory under runtime_envs_dir`);
  }
  if (runtimeName === '' || runtimeName === '.' || runtimeName === '..' || /[/\0]/.test(runtimeName)) {
    return fail('bad-env-dir', 'prepare', `runtime name ${JSON.stringify(runtimeName)} cannot name a directory under runtime_envs_dir=${input.config.runtimeEnvsDir}; fix the runtime's name`);
  }
  // A pinned release (the row's pack_release_digest, Attune's ATTUNE_PACK_RELEASE_DIGEST): Attune's
  // content-addressed `sha256/{key}` layout, for the chosen version and for its fallback alike.
  // Otherwise the legacy layout (contract §5.4): `{pack}/{runtime}`, or `{pack}/{runtime}-{version}`.
  const cacheKey = keyOf(input, runtimeName, execConfig);
  const envParent = cacheKey ? CACHE_DIR : packRef;
  let envDirName = cacheKey ?? runtimeName;
  let envDir = join(input.config.runtimeEnvsDir, envParent, envDirName);
  let baseInterpreter: string | null = null;
  const pick = (cfg: RuntimeExecutionConfig, allowDetected: boolean, dir: string, notes = warnings) =>
    resolveInterpreter(cfg, kind, source.packDir, dir, allowDetected ? input.detected : [], facts, pathEnv, notes);

  if (input.runtimeVersion) {
    const versionDirName = cacheKey ?? `${runtimeName}-${input.runtimeVersion.version}`;
    const versionEnvDir = join(input.config.runtimeEnvsDir, envParent, versionDirName);
    const versionConfig = input.runtimeVersion.execution_config ?? {};
    const v = /^[A-Za-z0-9._+-]+$/.test(input.runtimeVersion.version) && !input.runtimeVersion.version.startsWith('.')
      ? pick(versionConfig, false, versionEnvDir) : { interpreter: null };
    if (v.interpreter !== null) {
      execConfig = mergeConfig(execConfig, versionConfig);
      interpreter = v.interpreter;
      runtimeVersion = input.runtimeVersion.version;
      envDirName = versionDirName;
      envDir = versionEnvDir;
      baseInterpreter = pick({ ...versionConfig, environment: undefined }, false, versionEnvDir, []).interpreter;
    } else {
      warnings.push(`runtime version ${input.runtimeVersion.version} of ${runtimeName}: interpreter not available here; using the runtime's default interpreter`);
    }
  }
  const binary = execConfig.interpreter?.binary ?? '';
  const native = kind === NATIVE || (binary === '' && !spec);
  if (!native && interpreter === null) {
    interpreter = pick(execConfig, true, envDir).interpreter;
    baseInterpreter = pick({ ...execConfig, environment: undefined }, true, envDir, []).interpreter;
    if (interpreter === null) {
      const wanted = basename(binary || spec?.binaries[0] || kind);
      const have = input.detected.map((d) => d.name);
      return fail('no-interpreter', 'execute',
        `${kind} action ${action.ref}: no interpreter '${wanted}' in this image; detected: ${have.length ? have.join(', ') : 'none'}` +
        ` (install ${wanted} in the image, or run this action on a worker that has it)`);
    }
  }

  const templateVars: TemplateVars = {
    pack_dir: source.packDir,
    env_dir: envDir,
    interpreter: interpreter ?? '',
    manifest_path: execConfig.dependencies?.manifest_file ? join(source.packDir, execConfig.dependencies.manifest_file) : '',
  };

  // ---- argv (+ inline file)
  const interpArgs = (execConfig.interpreter?.args ?? []).map((a) => applyTemplate(a, templateVars));
  let argv: string[];
  let inlineFile: PlannedFile | null = null;
  let sendParamsOnStdin = true;
  if (native) {
    if (source.kind === 'inline') {
      return fail('inline-unsupported', 'execute', `native action ${action.ref} has no file and inline code needs an interpreter runtime (shell, python, …)`);
    }
    if (!facts.isExecutableFile(source.path)) {
      return fail('not-executable', 'execute', `native action ${action.ref}: ${source.path} is not an executable file (chmod +x it, or give the action an interpreter runtime)`);
    }
    argv = [source.path];
  } else if (source.kind === 'file') {
    argv = [interpreter!, ...interpArgs, source.path];
  } else {
    const inline = execConfig.inline_execution ?? {};
    const flag = spec?.inlineFlag;
    if ((inline.strategy ?? 'direct') === 'direct' && flag && !inline.inject_shell_helpers) {
      argv = [interpreter!, flag, source.code];
    } else {
      const ext = dotted(inline.extension ?? execConfig.interpreter?.file_extension ?? spec?.fileExtension ?? '');
      const content = inline.inject_shell_helpers ? shellHelperWrapper(params, source.code) : source.code;
      inlineFile = { path: join(input.tempDir, `inline_${execution.id}${ext}`), content, mode: 0o500 };
      argv = [interpreter!, ...interpArgs, inlineFile.path];
      // With shell helpers the parameters are shell variables in the wrapper, not stdin.
      if (inline.inject_shell_helpers) sendParamsOnStdin = false;
    }
  }

  // ---- timeout and token
  const timeoutMs = effectiveTimeoutMs(execution, action, input.config.defaultExecutionTimeoutMs);
  let apiToken: string | null = null;
  const permissionSets = execution.permission_set_refs ?? [];
  if (permissionSets.length > 0 && input.config.security.jwtSecret !== '') {
    if (execution.executor === null || execution.executor === undefined) {
      return fail('no-executor', 'prepare', `execution ${execution.id} has permission sets but no executor identity, so no ATTUNE_API_TOKEN can be issued`);
    }
    apiToken = signHs256(executionTokenClaims({
      executionId: execution.id,
      executor: execution.executor,
      actionRef: action.ref,
      permissionSetRefs: permissionSets,
      timeoutSeconds: Math.ceil(timeoutMs / 1000),
      nowSeconds: input.nowSeconds,
    }), input.config.security.jwtSecret);
  } else if (permissionSets.length > 0) {
    warnings.push('execution has permission sets but security.jwt_secret is not set: ATTUNE_API_TOKEN omitted');
  }

  // ---- parameters delivery and environment
  const paramFile: PlannedFile | null = delivery === 'file'
    ? { path: join(input.tempDir, `parameters${parameterFileExtension(format)}`), content: formatted, mode: 0o400 }
    : null;
  const env = buildChildEnv({
    baseline: input.baselineEnv,
    execution,
    apiUrl: input.config.apiUrl,
    artifactsDir: input.config.artifactsDir,
    runtimeEnvsDir: input.config.runtimeEnvsDir,
    apiToken,
    enforcement: input.enforcement,
    runtimeEnvVars: execConfig.env_vars,
    templateVars,
    parameterDelivery: delivery,
    parameterFormat: format,
    parameterFile: paramFile?.path ?? null,
  });
  if (!env.ok) return fail('bad-env-vars', 'prepare', env.error);
  warnings.push(...env.warnings);

  return {
    ok: true,
    plan: {
      argv,
      env: env.env,
      cwd: source.packDirExists ? source.packDir : null,
      stdin: delivery === 'stdin' && sendParamsOnStdin ? stdinPayload(formatted) : null,
      paramFile,
      inlineFile,
      timeoutMs,
      runtimeName,
      runtimeKind: kind,
      interpreter,
      runtimeVersion,
      // Like Attune: no `environment` (or env_type `none`), no set-up at all, dependencies or not.
      environment: execConfig.environment && execConfig.environment.env_type !== 'none' ? {
        packRef, packDir: source.packDir, runtimeName, runtimeVersion, runtimeEnvsDir: input.config.runtimeEnvsDir,
        parentDir: envParent, dirName: envDirName, envDir, cacheKey,
        createCommand: execConfig.environment.create_command ?? null,
        interpreterPath: execConfig.environment.interpreter_path ?? null,
        manifestFile: execConfig.dependencies?.manifest_file ?? null,
        installCommand: execConfig.dependencies?.install_command ?? null,
        envVars: execConfig.env_vars ?? null,
        baseInterpreter,
        interpreterBinary: execConfig.interpreter?.binary ?? '',
      } : null,
      warnings,
    },
  };
}

/**
 * Attune's `sha256/{key}` (execution/runtime-cache-key.ts) when the execution is pinned to a
 * release, else null. Its inputs as Attune's worker takes them: the version its executor chose
 * (even when that version's interpreter is missing and the base runtime runs), and the manifest of
 * that version's own execution_config (Attune replaces the whole config with it), else the runtime's.
 */
function keyOf(input: PlanInput, runtimeName: string, execConfig: RuntimeExecutionConfig): string | null {
  const release = input.execution.pack_release_digest;
  if (!release) return null;
  const cfg = input.runtimeVersion ? (input.runtimeVersion.execution_config ?? {}) : execConfig;
  const manifest = cfg.dependencies?.manifest_file;
  const dependencyDigest = manifest ? (input.facts.sha256OfFile?.(join(input.source.packDir, manifest)) ?? SHA256_OF_NOTHING) : SHA256_OF_NOTHING;
  const id = input.cacheIdentity ?? THIS_WORKER;
  return runtimeCacheKey({
    releaseDigest: release, dependencyDigest, runtimeName, runtimeVersion: input.runtimeVersion?.version ?? 'default',
    platform: id.platform, workerImageFormat: id.workerImageFormat, usizeBytes: id.usizeBytes,
  });
}

const THIS_WORKER = thisWorkerIdentity();

function fail(code: PlanErrorCode, stage: 'prepare' | 'execute', message: string): PlanResult {
  return { ok: false, error: new PlanError(code, stage, message) };
}

/** Normalised runtime: from the row's name (or an alias), else guessed from the file extension. */
export function runtimeKind(runtime: RuntimeRow | null, source: ActionSource): string {
  if (runtime) {
    for (const n of [runtime.name, ...(runtime.aliases ?? [])]) {
      const k = normalizeRuntimeName(n);
      if (runtimeSpec(k) || k === NATIVE) return k;
    }
    return normalizeRuntimeName(runtime.name);
  }
  if (source.kind === 'inline') return 'shell';
  return runtimeOfExtension(extname(source.path))?.name ?? NATIVE;
}

/** execution → workflow task → action → configured default; non-positive values are skipped. */
export function effectiveTimeoutMs(
  execution: Pick<ExecutionRow, 'timeout_seconds' | 'workflow_task'>,
  action: Pick<ActionRow, 'timeout_seconds'>,
  defaultMs: number,
): number {
  for (const v of [execution.timeout_seconds, execution.workflow_task?.timeout_seconds, action.timeout_seconds]) {
    const n = typeof v === 'string' ? Number(v) : v;
    if (typeof n === 'number' && Number.isFinite(n) && n > 0) return n * 1000;
  }
  return defaultMs;
}

function resolveInterpreter(
  cfg: RuntimeExecutionConfig,
  kind: string,
  packDir: string,
  envDir: string,
  detected: readonly DetectedInterpreter[],
  facts: PlanFacts,
  pathEnv: string,
  warnings: string[],
): { interpreter: string | null } {
  // A prepared runtime environment (venv, …) that already exists wins (environments are not created here).
  const envInterp = cfg.environment?.interpreter_path;
  if (envInterp) {
    const p = applyTemplate(envInterp, { pack_dir: packDir, env_dir: envDir, interpreter: '', manifest_path: '' });
    if (facts.isExecutableFile(p)) return { interpreter: p };
  }
  const binary = cfg.interpreter?.binary ?? '';
  if (binary !== '') {
    const found = binary.includes('/') ? (facts.isExecutableFile(binary) ? binary : null) : facts.which(binary, pathEnv);
    if (found) return { interpreter: found };
  }
  const d = detected.find((x) => normalizeRuntimeName(x.name) === kind);
  if (d) {
    if (binary !== '') warnings.push(`interpreter '${binary}' is not in this image; using the detected ${kind} interpreter ${d.path}`);
    return { interpreter: d.path };
  }
  return { interpreter: null };
}

function mergeConfig(base: RuntimeExecutionConfig, over: RuntimeExecutionConfig): RuntimeExecutionConfig {
  // Attune replaces the whole config with the version's; keep the base's parts the version lacks.
  return {
    ...base,
    ...over,
    interpreter: { ...base.interpreter, ...over.interpreter },
  };
}

function dotted(ext: string): string {
  return ext === '' || ext.startsWith('.') ? ext : `.${ext}`;
}

/** Attune's inline wrapper: non-exported PARAM_<NAME> and <name> shell variables, then the code. */
export function shellHelperWrapper(params: Record<string, unknown>, code: string): string {
  let script = '#!/bin/bash\nset -e\n\n# Action parameters\n';
  for (const [key, value] of Object.entries(params)) {
    const text = typeof value === 'string' ? value
      : typeof value === 'number' || typeof value === 'boolean' ? String(value)
        : JSON.stringify(value);
    const escaped = escapeSingleQuoted(text);
    const ident = shellIdentifier(key);
    script += `PARAM_${ident.toUpperCase()}='${escaped}'\n${ident}='${escaped}'\n`;
  }
  return `${script}\n# Action code\n${code}`;
}

function shellIdentifier(key: string): string {
  const s = key.replace(/[^A-Za-z0-9_]/g, '_');
  return /^[0-9]/.test(s) || s === '' ? `_${s}` : s;
}
