/**
 * Pack lifecycle events on `worker.{id}.packs` (docs/attune-compat.md §4.7 item 3):
 * - `PackRegistered`: the pack's runtime environments (venv + dependencies, …) are made now, for
 *   each of its runtimes this worker has, so its first execution finds them ready. The environment
 *   is planned exactly as an execution plans it (runtime row, the version an action without a
 *   constraint would get, the pack dir of the release or the legacy layout), so it is the one the
 *   first execution looks for. A failure is logged and acked: the first execution retries it.
 * - `PackDeleted`: `{runtime_envs_dir}/{pack_ref}` (every environment of the pack, legacy layout)
 *   and the message's `runtime_environment_paths` are removed, without following a link and never
 *   outside runtime_envs_dir (a path that would leave it is refused and logged).
 * A pack_ref that fails Attune's pack-ref rule rejects the message (nack, no requeue); any other
 * message type is logged and acked, as Attune's worker does.
 */
import { readFile, rm } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import type { Logger } from 'pino';
import type { ActionRow, ExecutionRow, RuntimeRow, RuntimeVersionRow } from '../model.ts';
import type { Envelope } from '../protocol/envelope.ts';
import { decodePackDeleted, decodePackRegistered, type PackDeleted, type PackRegistered } from '../protocol/pack-messages.ts';
import type { Disposition } from '../mq/consumer.ts';
import { PACK_REF, PACK_REF_RULE, resolveActionSource } from '../execution/pack-files.ts';
import { chooseRuntimeVersion, detectedForRuntime } from '../execution/runtime-version.ts';
import { planExecution, type DetectedInterpreter, type ExecutionPlan, type PlanConfig } from '../execution/plan.ts';
import type { RuntimeEnvironments } from '../execution/environments.ts';
import { openDirBelow, openDirFrom } from '../execution/safe-fs.ts';
import { CACHE_DIR, PACK_REF_MARKER } from '../execution/runtime-cache-key.ts';
import { REAL_FACTS } from './run-execution.ts';

/** A runtime row with its live versions. */
export interface RuntimeWithVersions {
  runtime: RuntimeRow;
  versions: readonly RuntimeVersionRow[];
}

export interface PackEventsDeps {
  config: PlanConfig;
  detected: readonly DetectedInterpreter[];
  baselineEnv: Readonly<Record<string, string>>;
  environments: RuntimeEnvironments;
  verifiedReleases: Set<string>;
  /** The runtime rows whose lower(name) is one of `names` (pg: db/pack-runtimes.ts). */
  loadRuntimes: (names: readonly string[]) => Promise<RuntimeWithVersions[]>;
  /**
   * Attune's refresh on PackRegistered: the runtime_version rows verified on this worker again and
   * `capabilities.runtime_versions` rewritten (db/pack-runtimes.ts refreshRuntimeVersionsCapability).
   * Returns what is advertised now.
   */
  refreshRuntimeVersions?: () => Promise<Record<string, string[]>>;
  log: Logger;
}

/** What planning an execution of a pack needs (a subset of PackEventsDeps; worker/pack-tests.ts uses it too). */
export type PackPlanDeps = Pick<PackEventsDeps, 'config' | 'detected' | 'baselineEnv' | 'verifiedReleases'>;

/** The pack as PackRegistered names it. */
export type PackIdent = Pick<PackRegistered, 'pack_id' | 'pack_ref' | 'release_id' | 'release_digest'>;

/**
 * The plan an execution of one of the pack's actions without a version constraint gets for this
 * runtime (the default/newest version this image has, the pack dir of the pinned release or
 * `{packs_base_dir}/{pack_ref}`, or `packDir` when given): its `environment` is the one that
 * execution looks for, its `interpreter` what it would run (the environment's once that is ready).
 */
export async function planPackRuntime(
  d: PackPlanDeps, p: PackIdent, { runtime, versions }: RuntimeWithVersions, packDirOverride?: string,
): Promise<{ ok: true; plan: ExecutionPlan } | { ok: false; error: string }> {
  const action: ActionRow = {
    id: 0, ref: `${p.pack_ref}.pack_registered`, pack: p.pack_id, pack_ref: p.pack_ref, entrypoint: 'pack_registered', runtime: runtime.id,
    runtime_version_constraint: null, param_schema: null, out_schema: null, is_adhoc: false, parameter_delivery: 'stdin',
    parameter_format: 'json', output_format: 'text', timeout_seconds: null, log_retention_policy: null, log_retention_limit: null,
  };
  const execution: ExecutionRow = {
    id: 0, action: null, action_ref: action.ref, pack_release: p.release_id, pack_release_digest: p.release_digest, executable_snapshot: null,
    config: {}, env_vars: null, parent: null, enforcement: null, executor: null, permission_set_refs: null, worker: null,
    status: 'running', trace_tag: null, result: null, started_at: null, timeout_seconds: null, workflow_task: null,
  };
  let packDir = packDirOverride;
  if (packDir === undefined) {
    // Adhoc for the lookup: the pack directory (a pinned release verified) is found without an action file.
    const located = await resolveActionSource({ packsBaseDir: d.config.packsBaseDir, action: { ...action, is_adhoc: true }, execution, verifiedReleases: d.verifiedReleases });
    if (!located.ok) return { ok: false, error: located.error };
    packDir = located.source.packDir;
  }
  const choice = chooseRuntimeVersion(versions, null, { actionRef: action.ref, runtime, detected: d.detected });
  if (!choice.ok) return { ok: false, error: choice.error };
  const planned = planExecution({
    execution, action, runtime, runtimeVersion: choice.version, config: d.config, detected: d.detected,
    baselineEnv: d.baselineEnv, source: { kind: 'file', path: join(packDir, 'actions', action.entrypoint), packDir, packDirExists: true },
    tempDir: '/nonexistent', facts: REAL_FACTS, nowSeconds: Math.floor(Date.now() / 1000),
  });
  return planned.ok ? { ok: true, plan: planned.plan } : { ok: false, error: planned.error.message };
}

/** What one PackRegistered did per runtime (logged; returned for tests). */
export type PreparedEnvironment = { runtime: string; env_dir: string | null; outcome: 'ready' | 'none' | 'failed'; error?: string };

export class PackEvents {
  readonly #d: PackEventsDeps;

  constructor(deps: PackEventsDeps) {
    this.#d = deps;
  }

  /** The consumer's handler: one envelope of `worker.{id}.packs`. */
  async onMessage(env: Envelope<unknown>): Promise<Disposition> {
    const log = this.#d.log.child({ message_id: env.message_id, message_type: env.message_type });
    if (env.message_type === 'PackRegistered' || env.message_type === 'PackDeleted') {
      const decoded = env.message_type === 'PackRegistered' ? decodePackRegistered(env.payload) : decodePackDeleted(env.payload);
      if (!decoded.ok) {
        log.warn(`dropping ${env.message_type} (nack, no requeue): ${decoded.error}`);
        return 'nack-drop';
      }
      const ref = decoded.value.pack_ref;
      if (!PACK_REF.test(ref)) {
        log.warn({ pack_ref: ref }, `dropping ${env.message_type} (nack, no requeue): pack_ref ${JSON.stringify(ref)} is not a pack ref (${PACK_REF_RULE})`);
        return 'nack-drop';
      }
      if (env.message_type === 'PackRegistered') await this.packRegistered(decoded.value as PackRegistered, log);
      else await this.packDeleted(decoded.value as PackDeleted, log);
      return 'ack';
    }
    log.info(`ignoring a ${env.message_type} message on the packs queue (acked)`);
    return 'ack';
  }

  /** Make the pack's environments for the runtimes this worker has. */
  async packRegistered(p: PackRegistered, log: Logger): Promise<PreparedEnvironment[]> {
    const names = [...new Set(p.runtime_names.map((n) => n.toLowerCase()))];
    const rows = names.length > 0 ? await this.#d.loadRuntimes(names) : [];
    const mine = rows.filter((r) => detectedForRuntime(r.runtime, this.#d.detected).length > 0);
    // As Attune's worker: when the pack names a runtime this worker runs, its version rows (new
    // ones come with the pack) are verified here and the worker's capabilities refreshed, so the
    // executor can pick them; then the environments below are planned with them.
    if (mine.length > 0 && this.#d.refreshRuntimeVersions) {
      try {
        const advertised = await this.#d.refreshRuntimeVersions();
        log.info({ pack_ref: p.pack_ref, runtime_versions: advertised }, `pack ${p.pack_ref} registered: runtime versions verified, capabilities.runtime_versions refreshed`);
      } catch (e) {
        log.warn({ pack_ref: p.pack_ref }, `pack ${p.pack_ref} registered: cannot refresh capabilities.runtime_versions (${(e as Error).message}); the worker keeps advertising what it did`);
      }
    }
    const done: PreparedEnvironment[] = [];
    for (const r of mine) done.push(await this.#prepare(p, r, log));
    log.info({ pack_ref: p.pack_ref, pack_id: p.pack_id, version: p.version, release_digest: p.release_digest, runtime_names: p.runtime_names, environments: done },
      `pack ${p.pack_ref} registered: ${done.filter((d) => d.outcome === 'ready').length} runtime environment(s) ready, ${done.filter((d) => d.outcome === 'failed').length} failed` +
      (rows.length > mine.length ? ` (${rows.length - mine.length} runtime(s) not on this worker)` : ''));
    return done;
  }

  async #prepare(p: PackRegistered, { runtime, versions }: RuntimeWithVersions, log: Logger): Promise<PreparedEnvironment> {
    const name = runtime.name.toLowerCase();
    const fail = (error: string): PreparedEnvironment => {
      log.warn({ pack_ref: p.pack_ref, runtime: name }, `pack ${p.pack_ref}, runtime ${name}: runtime environment not made ahead (the first execution tries again): ${error}`);
      return { runtime: name, env_dir: null, outcome: 'failed', error };
    };
    const planned = await planPackRuntime(this.#d, p, { runtime, versions });
    if (!planned.ok) return fail(planned.error);
    const spec = planned.plan.environment;
    if (!spec) return { runtime: name, env_dir: null, outcome: 'none' };
    const r = await this.#d.environments.ensure(spec, log);
    if (!r.ok) return fail(r.error);
    return { runtime: name, env_dir: spec.envDir, outcome: 'ready' };
  }

  /** `sha256/{key}` environments whose `.attune-pack-ref` names the pack (Attune's purge removes them too). */
  async #ownedCacheEntries(packRef: string): Promise<string[][]> {
    let cache;
    try {
      cache = await openDirBelow(this.#d.config.runtimeEnvsDir, [CACHE_DIR]);
    } catch {
      return [];
    }
    const owned: string[][] = [];
    try {
      for (const e of await cache.entries()) {
        if (!e.isDirectory() || e.name.startsWith('.')) continue;
        try {
          const env = await openDirFrom(cache, [e.name]);
          try {
            if ((await readFile(env.at(PACK_REF_MARKER), 'utf8')).trim() === packRef) owned.push([CACHE_DIR, e.name]);
          } finally {
            await env.close().catch(() => undefined);
          }
        } catch {
          /* no marker (or not readable): not this pack's */
        }
      }
    } finally {
      await cache.close().catch(() => undefined);
    }
    return owned;
  }

  /** Remove the pack's environments under runtime_envs_dir; returns what was refused. */
  async packDeleted(p: PackDeleted, log: Logger): Promise<{ removed: string[]; refused: string[] }> {
    const root = this.#d.config.runtimeEnvsDir;
    const removed: string[] = [];
    const refused: string[] = [];
    const targets: string[][] = [[p.pack_ref], ...(await this.#ownedCacheEntries(p.pack_ref))];
    for (const rel of p.runtime_environment_paths) {
      const parts = rel.split('/').filter((s) => s !== '');
      if (isAbsolute(rel) || parts.length === 0 || parts.some((s) => s === '.' || s === '..' || s.includes('\0'))) {
        refused.push(rel);
        log.warn({ pack_ref: p.pack_ref, path: rel }, `PackDeleted of ${p.pack_ref}: refusing runtime environment path ${JSON.stringify(rel)}: not a path below runtime_envs_dir=${root}`);
        continue;
      }
      targets.push(parts);
    }
    for (const parts of targets) {
      const shown = join(root, ...parts);
      let parent;
      try {
        parent = await openDirBelow(root, parts.slice(0, -1));
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') continue; // nothing there
        refused.push(parts.join('/'));
        log.warn({ pack_ref: p.pack_ref, path: shown }, `PackDeleted of ${p.pack_ref}: not removing ${shown}: ${(e as Error).message}`);
        continue;
      }
      try {
        // rm does not follow a link it meets: a link is removed, never what it points at.
        await rm(parent.at(parts[parts.length - 1]), { recursive: true, force: true });
        removed.push(shown);
      } catch (e) {
        log.warn({ pack_ref: p.pack_ref, path: shown }, `PackDeleted of ${p.pack_ref}: cannot remove ${shown}: ${(e as Error).message}; remove it by hand`);
      } finally {
        await parent.close().catch(() => undefined);
      }
    }
    log.info({ pack_ref: p.pack_ref, pack_id: p.pack_id, removed, refused }, `pack ${p.pack_ref} deleted: its runtime environments removed from ${root}`);
    return { removed, refused };
  }
}
