/**
 * The worker's identity and `capabilities` JSON (docs/attune-compat.md §3.2), built purely from config, the
 * detection result and the environment, so it is tested without a database.
 */
import type { Config } from '../config/index.ts';
import type { DetectedRuntime } from '../detect/detect.ts';
import { NATIVE, normalizeRuntimeName } from '../runtimes.ts';

type Env = Record<string, string | undefined>;

/** `worker.name` (--name > config > ATTUNE_WORKER_NAME, merged by config) → `worker-<hostname>`. */
export function resolveWorkerName(config: Readonly<Config>, hostname: string, env: Env = {}): string {
  const configured = config.worker.name.trim();
  if (configured !== '') return configured;
  const fromEnv = env.ATTUNE_WORKER_NAME?.trim();
  if (fromEnv) return fromEnv;
  return `worker-${hostname}`;
}

/** Attune parses ATTUNE_WORKER_RUNTIMES as: split on `,`, trim, lowercase, drop empties. */
export function parseRuntimeList(text: string | undefined): string[] {
  if (text === undefined) return [];
  return text.split(',').map((s) => s.trim().toLowerCase()).filter((s) => s !== '');
}

function truthy(v: string | undefined): boolean {
  return v !== undefined && /^(1|true)$/i.test(v.trim());
}

function stringList(v: unknown): string[] | undefined {
  if (!Array.isArray(v)) return undefined;
  const out = v.filter((x): x is string => typeof x === 'string').map((s) => s.trim().toLowerCase()).filter((s) => s !== '');
  return out.length > 0 ? out : undefined;
}

export interface CapabilityInput {
  /** Interpreters the agent will use (detection after the ATTUNE_WORKER_RUNTIMES filter). */
  detected: readonly DetectedRuntime[];
  /** Crate version Attune sees (`worker_version`). */
  workerVersion: string;
}

/**
 * `runtimes` priority: ATTUNE_WORKER_RUNTIMES (config.worker.runtimes, or the env var the agent set
 * to the detected names) → `worker.capabilities.runtimes` → detected names; `native` appended unless
 * an entry normalises to it. Computed keys win over same-named keys of `worker.capabilities`.
 */
export function buildCapabilities(config: Readonly<Config>, input: CapabilityInput, env: Env = {}): Record<string, unknown> {
  const w = config.worker;
  const caps: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(w.capabilities)) if (k !== 'runtimes') caps[k] = v;

  let runtimes = w.runtimes.length > 0 ? [...w.runtimes] : parseRuntimeList(env.ATTUNE_WORKER_RUNTIMES);
  if (runtimes.length === 0) runtimes = stringList(w.capabilities.runtimes) ?? input.detected.map((d) => d.name.toLowerCase());
  if (!runtimes.some((r) => normalizeRuntimeName(r) === NATIVE)) runtimes.push(NATIVE);
  caps.runtimes = runtimes;

  caps.max_concurrent_executions = w.maxConcurrentTasks;
  caps.worker_version = input.workerVersion;
  if (truthy(env.ATTUNE_AGENT_MODE)) caps.agent_mode = true;
  if (env.ATTUNE_AGENT_BINARY_NAME) caps.agent_binary_name = env.ATTUNE_AGENT_BINARY_NAME;
  if (env.ATTUNE_AGENT_BINARY_VERSION) caps.agent_binary_version = env.ATTUNE_AGENT_BINARY_VERSION;

  if (Object.keys(w.labels).length > 0) caps.labels = { ...w.labels };
  if (w.taints.length > 0) caps.taints = w.taints.map((t) => ({ ...t }));

  if (input.detected.length > 0) {
    caps.detected_interpreters = input.detected.map((d) => ({ name: d.name, path: d.path, version: d.version }));
    const versions = runtimeVersions(input.detected);
    if (Object.keys(versions).length > 0) caps.runtime_versions = versions;
  }
  return caps;
}

/**
 * `{normalised name: [versions]}`, de-duplicated, keys sorted; versions newest first by semver
 * (string order as a fallback), the order Attune's worker-mode sweep uses (§2.7).
 */
export function runtimeVersions(detected: readonly DetectedRuntime[]): Record<string, string[]> {
  const by = new Map<string, Set<string>>();
  for (const d of detected) {
    if (d.version === null) continue;
    const key = normalizeRuntimeName(d.name);
    if (!by.has(key)) by.set(key, new Set());
    by.get(key)!.add(d.version);
  }
  const out: Record<string, string[]> = {};
  for (const key of [...by.keys()].sort()) out[key] = [...by.get(key)!].sort(compareVersionsDesc);
  return out;
}

export function compareVersionsDesc(a: string, b: string): number {
  const pa = /^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?/.exec(a);
  const pb = /^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?/.exec(b);
  if (pa && pb) {
    for (let i = 1; i <= 3; i++) {
      const d = Number(pb[i] ?? 0) - Number(pa[i] ?? 0);
      if (d !== 0) return d;
    }
  }
  return a < b ? 1 : a > b ? -1 : 0;
}
