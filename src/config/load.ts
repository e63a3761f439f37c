/**
 * Configuration layering exactly as Attune's `Config::load()` (docs/attune-compat.md §1.2):
 *   defaults < base YAML (ATTUNE_CONFIG / --config, else ./config.yaml) < config.{environment}.yaml
 *   < ATTUNE__SECTION__KEY env < Attune's non-prefixed env (only where the key is still unset) < flags.
 * Pure apart from the file reads, which go through `readFile` so tests can feed strings.
 */
import { parse as parseYaml } from 'yaml';
import { OPTIONS, OPTION_BY_KEY, envNameFor, type OptionSpec } from './options.ts';
import { ConfigError } from './errors.ts';

export type Source = 'default' | 'file' | 'env' | 'flag';
export interface RawValue {
  value: unknown;
  source: Source;
  origin: string;
  /** A plain Attune variable that was set but ignored because its value is not allowed (warned at start). */
  ignored?: { origin: string; value: string };
}
export type RawConfig = Map<string, RawValue>;

export interface LoadInput {
  env: Record<string, string | undefined>;
  cwd: string;
  flags: { config?: string; name?: string };
  /** Returns file text, or undefined if the file does not exist. Throws on other read errors. */
  readFile: (path: string) => string | undefined;
}

export function loadRawConfig(input: LoadInput): RawConfig {
  const raw: RawConfig = new Map();
  for (const o of OPTIONS) raw.set(o.key, { value: o.default, source: 'default', origin: 'default' });

  const basePath = input.flags.config ?? input.env.ATTUNE_CONFIG ?? joinPath(input.cwd, 'config.yaml');
  const explicit = input.flags.config !== undefined || input.env.ATTUNE_CONFIG !== undefined;
  const base = input.readFile(basePath);
  if (base === undefined && explicit) {
    // Attune skips a missing file silently; an operator who names a file wants to know it is absent.
    throw new ConfigError(`config file ${basePath} does not exist (set by ${input.flags.config !== undefined ? '--config' : 'ATTUNE_CONFIG'}); fix the path or unset it`);
  }
  if (base !== undefined) applyYaml(raw, base, basePath);

  const environment = input.env.ATTUNE__ENVIRONMENT ?? 'development';
  const envPath = joinPath(input.cwd, `config.${environment}.yaml`);
  const envFile = input.readFile(envPath);
  if (envFile !== undefined) applyYaml(raw, envFile, envPath);

  applyPrefixedEnv(raw, input.env);
  for (const o of OPTIONS) {
    if (!o.alsoEnv) continue;
    const v = input.env[o.alsoEnv];
    if (v === undefined || v.trim() === '') continue;
    const cur = raw.get(o.key)!;
    // Attune: config value first, then the plain variable as fallback (docs/attune-compat.md §3.2).
    if (cur.source !== 'default') continue;
    // Attune ignores an unknown ATTUNE_WORKER_TYPE with a warning instead of refusing to start (§1.3).
    if (o.type.kind === 'enum' && o.key !== 'log.level' && !o.type.values.includes(v.trim().toLowerCase())) {
      raw.set(o.key, { ...cur, ignored: { origin: o.alsoEnv, value: v } });
      continue;
    }
    raw.set(o.key, { value: v, source: 'env', origin: o.alsoEnv });
  }
  if (input.flags.name !== undefined) raw.set('worker.name', { value: input.flags.name, source: 'flag', origin: '--name' });
  return raw;
}

function joinPath(dir: string, file: string): string {
  return dir.endsWith('/') ? dir + file : `${dir}/${file}`;
}

function applyYaml(raw: RawConfig, text: string, path: string): void {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    throw new ConfigError(`config file ${path} is not valid YAML: ${(e as Error).message.split('\n')[0]}`);
  }
  if (doc === null || doc === undefined) return;
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new ConfigError(`config file ${path} must be a YAML mapping at the top level`);
  walk(doc as Record<string, unknown>, '');

  function walk(obj: Record<string, unknown>, prefix: string): void {
    for (const [k, v] of Object.entries(obj)) {
      const key = prefix + k;
      const spec = OPTION_BY_KEY.get(key);
      if (spec) {
        raw.set(key, { value: v, source: 'file', origin: path });
      } else if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
        walk(v as Record<string, unknown>, key + '.');
      }
      // Unknown keys are ignored like Attune does: one config.yaml serves every Attune service.
    }
  }
}

function applyPrefixedEnv(raw: RawConfig, env: Record<string, string | undefined>): void {
  const maps = OPTIONS.filter((o) => o.type.kind === 'map');
  for (const o of OPTIONS) {
    const name = envNameFor(o.key);
    const v = env[name];
    if (v !== undefined) raw.set(o.key, { value: v, source: 'env', origin: name });
  }
  // ATTUNE__WORKER__LABELS__ZONE=a → worker.labels.zone = a (merged over file values).
  for (const o of maps) {
    const prefix = envNameFor(o.key) + '__';
    const entries = Object.entries(env).filter(([k, v]) => k.startsWith(prefix) && v !== undefined);
    if (entries.length === 0) continue;
    const cur = raw.get(o.key)!;
    const base = cur.value && typeof cur.value === 'object' && !Array.isArray(cur.value) ? { ...(cur.value as object) } : {};
    for (const [k, v] of entries) (base as Record<string, unknown>)[k.slice(prefix.length).toLowerCase()] = v;
    raw.set(o.key, { value: base, source: 'env', origin: prefix + '*' });
  }
}

export function describeOrigin(spec: OptionSpec, rv: RawValue): string {
  return rv.source === 'default' ? `${spec.key} (default)` : `${spec.key} (from ${rv.origin})`;
}
