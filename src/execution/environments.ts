/**
 * Runtime environments of packs (contract §5.4): a virtualenv, a node_modules directory, … under
 * `{runtime_envs_dir}/{pack_ref}/{runtime}[-{version}]` (the legacy layout Attune's own workers use,
 * so an environment they built on a shared volume is found), made ready before an action runs.
 *
 * - Made only when the pack needs one: its dependency manifest (requirements.txt, package.json)
 *   exists and declares something, or the directory exists already (then it is checked, and
 *   rebuilt when its interpreter is missing or a dangling link). A pack without dependencies runs
 *   on the image's interpreter, as before (Attune makes a venv for it anyway, and only warns when
 *   that fails).
 * - An existing directory whose interpreter works is used as it is, with or without
 *   `.attune-runtime-ready`: Attune's workers build this layout in place without that marker.
 * - Creation: `create_command` runs in a temporary sibling which, once its interpreter exists and
 *   `.attune-runtime-ready` is written, is renamed into place: a failed or killed creation leaves
 *   no half-built environment behind. Then `install_command` runs in the environment unless
 *   `.attune_deps_installed` holds the manifest's sha256 (written only after a successful install,
 *   so a failed install is retried by the next execution).
 * - One creation per environment: executions of this agent share one promise; agents sharing the
 *   volume take `.{dir}.lock` (an atomic mkdir, which works on network filesystems too) holding
 *   the owner's pid, host and start time. A lock whose owner is dead on this host, or older than
 *   the longest set-up can take, is stale and broken.
 * - Setup commands run in the pack dir with the cleared baseline env + the runtime's env_vars +
 *   HOME, XDG_*, PIP_CACHE_DIR inside the environment and PIP_CONFIG_FILE=/dev/null, each limited to
 *   `worker.env_setup_timeout` (process group killed), with a bounded output tail for the message.
 * Directories are created, renamed and removed through safe-fs (no link below runtime_envs_dir is
 * followed).
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { accessSync, constants, lstatSync, readFileSync, statSync } from 'node:fs';
import { mkdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { EnvVarSpec } from '../model.ts';
import { applyTemplate, resolveEnvVar, type TemplateVars } from './context-env.ts';
import { openDirBelow, openDirFrom, replaceFileIn, type SafeDir } from './safe-fs.ts';
import { PACK_REF_MARKER } from './runtime-cache-key.ts';

export const READY_MARKER = '.attune-runtime-ready';
export const DEPS_MARKER = '.attune_deps_installed';

/** What the plan (execution/plan.ts) says about the action's environment; all paths absolute. */
export interface EnvironmentSpec {
  packRef: string;
  packDir: string;
  runtimeName: string;
  runtimeVersion: string | null;
  runtimeEnvsDir: string;
  /** The directory below runtime_envs_dir holding the environment: `{pack_ref}` (legacy layout) or `sha256`. */
  parentDir: string;
  /** `{runtime}` or `{runtime}-{version}` (legacy), or the key (`sha256/{key}`): the directory's name in parentDir. */
  dirName: string;
  envDir: string;
  /** Attune's content-addressed key (execution/runtime-cache-key.ts) of a pinned release's environment, or null: legacy layout. */
  cacheKey: string | null;
  createCommand: readonly string[] | null;
  /** Template (`{env_dir}/bin/python3.11`), or null: the environment has no interpreter of its own. */
  interpreterPath: string | null;
  manifestFile: string | null;
  installCommand: readonly string[] | null;
  envVars: Readonly<Record<string, string | EnvVarSpec>> | null;
  /** The image's interpreter (`{interpreter}` of create_command; what runs create_command's own binary). */
  baseInterpreter: string | null;
  /** The runtime's `interpreter.binary` (create_command's first word, when it names it, runs baseInterpreter). */
  interpreterBinary: string;
}

export type EnsureResult =
  /** warm: ready at the first look (the plan made before already saw it as it is). */
  | { ok: true; warm: boolean; created: boolean; installed: boolean }
  | { ok: false; error: string };

export interface EnvironmentsOptions {
  setupTimeoutMs: number;
  baselineEnv: Readonly<Record<string, string>>;
  /** Bytes of a setup command's output kept for the failure message (the tail). */
  maxOutputBytes?: number;
  /** Milliseconds between looks at another process's lock. */
  lockPollMs?: number;
}

const OUTPUT_TAIL_CHARS = 2000;

export class RuntimeEnvironments {
  readonly #opts: Required<EnvironmentsOptions>;
  readonly #inflight = new Map<string, Promise<EnsureResult>>();
  readonly #host = hostname();

  constructor(opts: EnvironmentsOptions) {
    this.#opts = { maxOutputBytes: 64 * 1024, lockPollMs: 100, ...opts };
  }

  /** The environment ready for the action (or nothing to do), or why it cannot be. */
  async ensure(spec: EnvironmentSpec, log: Logger): Promise<EnsureResult> {
    const manifest = await readManifest(spec);
    const state = inspect(spec);
    const wantsDeps = manifest !== null && manifest.declares;
    if (!state.exists && !wantsDeps) return { ok: true, warm: true, created: false, installed: false };
    if (isWarm(spec, state, manifest)) {
      if (spec.cacheKey && state.packRef !== spec.packRef) await this.#markPackRef(spec, log);
      return { ok: true, warm: true, created: false, installed: false };
    }
    // Executions of this agent wait for the one set-up in progress, then look again.
    for (;;) {
      const running = this.#inflight.get(spec.envDir);
      if (!running) break;
      await running;
      const again = inspect(spec);
      if (isWarm(spec, again, await readManifest(spec))) return { ok: true, warm: false, created: false, installed: false };
    }
    const work = this.#setUp(spec, log).finally(() => this.#inflight.delete(spec.envDir));
    this.#inflight.set(spec.envDir, work);
    return work;
  }

  async #setUp(spec: EnvironmentSpec, log: Logger): Promise<EnsureResult> {
    const what = describe(spec);
    let packEnvs: SafeDir;
    try {
      packEnvs = await openDirBelow(spec.runtimeEnvsDir, [spec.parentDir], { create: 0o755 });
    } catch (e) {
      return { ok: false, error: `${what}: cannot open ${join(spec.runtimeEnvsDir, spec.parentDir)} (${(e as Error).message}); give the agent a writable runtime_envs_dir` };
    }
    try {
      const lock = await this.#lock(packEnvs, lockTarget(spec), log, true);
      if (!lock.ok) return lock;
      try {
        // Under the lock, whatever a killed set-up of this environment left beside it is garbage.
        await sweepSiblings(packEnvs, spec.dirName, log);
        // Looked at again under the lock: another agent may have done the work meanwhile.
        const manifest = await readManifest(spec);
        let state = inspect(spec);
        if (spec.cacheKey) {
          // Attune's content-addressed layout: complete (dependencies included) before it is renamed
          // into place with the key as its ready marker, so no worker ever uses it half-built.
          if (isWarm(spec, state, manifest)) {
            if (state.packRef !== spec.packRef) await this.#markPackRef(spec, log);
            return { ok: true, warm: false, created: false, installed: false };
          }
          const made = await this.#create(packEnvs, spec, state.exists, log, manifest);
          if (!made.ok) return made;
          return { ok: true, warm: false, created: true, installed: made.installed };
        }
        let created = false;
        let installed = false;
        if (!state.isDir || !state.interpreterOk) {
          const made = await this.#create(packEnvs, spec, state.exists, log, null);
          if (!made.ok) return made;
          created = true;
          state = inspect(spec);
        }
        if (manifest !== null && manifest.declares && state.depsDigest !== manifest.sha256) {
          const inst = await this.#install(spec, packEnvs, spec.dirName, spec.envDir, manifest.sha256, log);
          if (!inst.ok) return inst;
          installed = true;
        }
        return { ok: true, warm: false, created, installed };
      } finally {
        await rm(packEnvs.at(lockName(spec.dirName)), { recursive: true, force: true }).catch(() => undefined);
      }
    } finally {
      await packEnvs.close().catch(() => undefined);
    }
  }

  /**
   * create_command in a temporary sibling, checked, marked and renamed into place. `manifest`
   * (the sha256 layout only): its dependencies are installed in the sibling too, before the rename.
   */
  async #create(packEnvs: SafeDir, spec: EnvironmentSpec, replacing: boolean, log: Logger, manifest: Manifest | null): Promise<{ ok: true; installed: boolean } | { ok: false; error: string }> {
    const tmpName = `.${spec.dirName}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
    const tmpDir = join(spec.runtimeEnvsDir, spec.parentDir, tmpName);
    let installed = false;
    const started = performance.now();
    try {
      await mkdir(packEnvs.at(tmpName), { mode: 0o755 });
      if (spec.createCommand && spec.createCommand.length > 0) {
        const vars = templateVars(spec, tmpDir, spec.baseInterpreter ?? '');
        const argv = spec.createCommand.map((a) => applyTemplate(a, vars));
        if (spec.baseInterpreter && argv[0] === spec.interpreterBinary) argv[0] = spec.baseInterpreter;
        const r = await this.#run(argv, spec, tmpDir, vars, log);
        if (!r.ok) return r;
        if (spec.interpreterPath) {
          const interp = applyTemplate(spec.interpreterPath, vars);
          if (!isExecutable(interp)) {
            return { ok: false, error: `${describe(spec)}: \`${argv.join(' ')}\` succeeded but made no interpreter at ${interp} (check the runtime's environment.interpreter_path)` };
          }
        }
      }
      if (manifest !== null && manifest.declares) {
        const inst = await this.#install(spec, packEnvs, tmpName, tmpDir, manifest.sha256, log);
        if (!inst.ok) return inst;
        installed = !!spec.installCommand && spec.installCommand.length > 0;
      }
      const tmp = await openDirBelow(spec.runtimeEnvsDir, [spec.parentDir, tmpName]);
      try {
        // Attune's sha256 layout is ready only when the marker holds the key; `.attune-pack-ref`
        // names the owner for Attune's PackDeleted purge.
        if (spec.cacheKey) await replaceFileIn(tmp, PACK_REF_MARKER, spec.packRef, 0o644);
        await replaceFileIn(tmp, READY_MARKER, spec.cacheKey ?? 'ready', 0o644);
      } finally {
        await tmp.close().catch(() => undefined);
      }
      if (replacing) {
        // A broken environment (no interpreter, a dangling link, not a directory) is moved aside, then removed.
        const old = `.${spec.dirName}.old-${process.pid}-${randomBytes(4).toString('hex')}`;
        await rename(packEnvs.at(spec.dirName), packEnvs.at(old)).catch((e: NodeJS.ErrnoException) => { if (e.code !== 'ENOENT') throw e; });
        await rm(packEnvs.at(old), { recursive: true, force: true });
      }
      try {
        await rename(packEnvs.at(tmpName), packEnvs.at(spec.dirName));
      } catch (e) {
        // Attune's workers take no lock of ours: one may have published this key meanwhile (its publish accepts ours the same way).
        if (!spec.cacheKey || !isWarm(spec, inspect(spec), manifest)) throw e;
        log.info({ env_dir: spec.envDir }, `${describe(spec)}: another worker published this runtime environment meanwhile; using it`);
        return { ok: true, installed: false };
      }
      log.info({ env_dir: spec.envDir, ms: Math.round(performance.now() - started) }, `${describe(spec)}: runtime environment created`);
      return { ok: true, installed };
    } catch (e) {
      return { ok: false, error: `${describe(spec)}: cannot create the runtime environment ${spec.envDir} (${(e as Error).message})` };
    } finally {
      await rm(packEnvs.at(tmpName), { recursive: true, force: true }).catch(() => undefined);
    }
  }

  /** install_command in the environment `dirName` of packEnvs (at `dirPath`), then its marker. */
  async #install(spec: EnvironmentSpec, packEnvs: SafeDir, dirName: string, dirPath: string, sha256: string, log: Logger): Promise<{ ok: true } | { ok: false; error: string }> {
    if (!spec.installCommand || spec.installCommand.length === 0) return { ok: true };
    const started = performance.now();
    const envInterp = spec.interpreterPath ? applyTemplate(spec.interpreterPath, templateVars(spec, dirPath, '')) : null;
    // Never the image's interpreter when the environment should have its own: pip would install the
    // pack's dependencies into the image's python (shared by every pack) instead of the environment.
    if (envInterp && !isExecutable(envInterp)) {
      return { ok: false, error: `${describe(spec)}: the environment has no interpreter at ${envInterp}; dependencies not installed (remove ${dirPath} to have it created again)` };
    }
    const vars = templateVars(spec, dirPath, envInterp ?? spec.baseInterpreter ?? '');
    const argv = spec.installCommand.map((a) => applyTemplate(a, vars));
    const r = await this.#run(argv, spec, dirPath, vars, log);
    if (!r.ok) return r;
    try {
      const env = await openDirFrom(packEnvs, [dirName]);
      try {
        await replaceFileIn(env, DEPS_MARKER, sha256, 0o644);
      } finally {
        await env.close().catch(() => undefined);
      }
    } catch (e) {
      return { ok: false, error: `${describe(spec)}: dependencies installed but ${join(dirPath, DEPS_MARKER)} cannot be written (${(e as Error).message})` };
    }
    log.info({ env_dir: spec.envDir, ms: Math.round(performance.now() - started), manifest: spec.manifestFile }, `${describe(spec)}: dependencies installed`);
    return { ok: true };
  }

  /** One setup command: time-limited, its process group killed at the limit, its output's tail kept. */
  #run(argv: string[], spec: EnvironmentSpec, envDir: string, vars: TemplateVars, log: Logger): Promise<{ ok: true } | { ok: false; error: string }> {
    const env = setupEnv(this.#opts.baselineEnv, spec.envVars, vars, envDir);
    const shown = `\`${argv.join(' ')}\``;
    const limit = this.#opts.maxOutputBytes;
    log.info({ env_dir: spec.envDir, argv }, `${describe(spec)}: running ${shown}`);
    return new Promise((resolve) => {
      let out = Buffer.alloc(0);
      const keep = (b: Buffer) => {
        out = Buffer.concat([out, b]);
        if (out.length > limit) out = out.subarray(out.length - limit);
      };
      let timedOut = false;
      const child = spawn(argv[0], argv.slice(1), { cwd: spec.packDir, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
      child.stdout.on('data', keep);
      child.stderr.on('data', keep);
      const timer = setTimeout(() => {
        timedOut = true;
        try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* already gone */ }
      }, this.#opts.setupTimeoutMs);
      child.on('error', (e: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        const why = e.code === 'ENOENT' ? `${argv[0]} is not in this image (PATH=${env.PATH ?? ''})` : e.message;
        resolve({ ok: false, error: `${describe(spec)}: ${shown} could not start: ${why}` });
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        if (code === 0 && !timedOut) return resolve({ ok: true });
        const tail = outputTail(out);
        const how = timedOut ? `timed out after ${Math.round(this.#opts.setupTimeoutMs / 1000)} s (worker.env_setup_timeout)`
          : signal ? `killed by ${signal}` : `exit ${code}`;
        resolve({ ok: false, error: `${describe(spec)}: ${shown} failed (${how})${tail ? `: ${tail}` : ''}${hint(tail)}` });
      });
    });
  }

  /**
   * At start: what set-ups killed mid-way (the agent SIGKILLed, the pod evicted) left below
   * runtime_envs_dir, in every `{pack_ref}/` and `sha256/`: stale locks (owner dead on this host,
   * or older than the longest set-up) are broken and the temporaries of an environment are
   * removed once its lock is taken (not waited for: an environment being set up now is skipped).
   * Returns how many were removed.
   */
  async sweep(runtimeEnvsDir: string, log: Logger): Promise<number> {
    let root: SafeDir;
    try {
      root = await openDirBelow(runtimeEnvsDir, []);
    } catch {
      return 0; // nothing made yet
    }
    let removed = 0;
    try {
      for (const d of await root.entries()) {
        if (!d.isDirectory()) continue; // a link is not followed
        let sub: SafeDir;
        try {
          sub = await openDirFrom(root, [d.name]);
        } catch {
          continue;
        }
        try {
          const envs = new Set<string>();
          for (const e of await sub.entries()) {
            const of = leftoverOf(e.name) ?? (e.isDirectory() ? /^\.(.+)\.lock$/.exec(e.name)?.[1] : undefined);
            if (of) envs.add(of);
          }
          for (const dirName of envs) {
            const target: LockTarget = { runtimeEnvsDir, parentDir: d.name, dirName, envDir: join(runtimeEnvsDir, d.name, dirName), what: `runtime environment ${join(d.name, dirName)}` };
            const lock = await this.#lock(sub, target, log, false);
            if (!lock.ok) continue;
            try {
              removed += await sweepSiblings(sub, dirName, log);
            } finally {
              await rm(sub.at(lockName(dirName)), { recursive: true, force: true }).catch(() => undefined);
            }
          }
        } finally {
          await sub.close().catch(() => undefined);
        }
      }
    } catch (e) {
      log.warn({ runtime_envs_dir: runtimeEnvsDir }, `cannot look for interrupted runtime environment set-ups: ${(e as Error).message}`);
    } finally {
      await root.close().catch(() => undefined);
    }
    return removed;
  }

  /** Attune writes `.attune-pack-ref` into a ready sha256 environment at each execution; an environment built without it gets it here. */
  async #markPackRef(spec: EnvironmentSpec, log: Logger): Promise<void> {
    try {
      const env = await openDirBelow(spec.runtimeEnvsDir, [spec.parentDir, spec.dirName]);
      try {
        await replaceFileIn(env, PACK_REF_MARKER, spec.packRef, 0o644);
      } finally {
        await env.close().catch(() => undefined);
      }
    } catch (e) {
      log.warn({ env_dir: spec.envDir }, `${describe(spec)}: cannot write ${join(spec.envDir, PACK_REF_MARKER)} (${(e as Error).message}); Attune's PackDeleted will not find this environment`);
    }
  }

  /**
   * The cross-process lock: `.{dir}.lock`, made by this process, or broken when stale; waits at
   * most the longest set-up (`wait`), or not at all (`busy`: a live owner holds it).
   */
  async #lock(packEnvs: SafeDir, spec: LockTarget, log: Logger, wait: boolean): Promise<{ ok: true } | { ok: false; error: string; busy?: boolean }> {
    const name = lockName(spec.dirName);
    const staleAfterMs = 2 * this.#opts.setupTimeoutMs + 60_000;
    const deadline = Date.now() + staleAfterMs;
    let waited = false;
    for (;;) {
      try {
        await mkdir(packEnvs.at(name), { mode: 0o755 });
        const owner: LockOwner = { pid: process.pid, host: this.#host, started_ms: Date.now() };
        const lockDir = await openDirFrom(packEnvs, [name]);
        try {
          await replaceFileIn(lockDir, 'owner', JSON.stringify(owner), 0o644);
        } finally {
          await lockDir.close().catch(() => undefined);
        }
        if (waited) log.debug({ env_dir: spec.envDir }, 'runtime environment lock acquired after waiting');
        return { ok: true };
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') {
          return { ok: false, error: `${spec.what}: cannot take the lock ${join(spec.runtimeEnvsDir, spec.parentDir, name)} (${(e as Error).message})` };
        }
      }
      const owner = await readOwner(packEnvs.at(name));
      if (this.#isStale(owner, staleAfterMs)) {
        log.warn({ lock: join(spec.runtimeEnvsDir, spec.parentDir, name), owner: owner.owner }, 'breaking a stale runtime environment lock');
        const aside = `${name}.stale-${randomBytes(4).toString('hex')}`;
        // The rename is atomic: of several agents breaking it at once, one wins; the others try again.
        await rename(packEnvs.at(name), packEnvs.at(aside)).then(() => rm(packEnvs.at(aside), { recursive: true, force: true }), () => undefined);
        continue;
      }
      if (!wait) return { ok: false, busy: true, error: `${spec.what}: the runtime environment is being set up by another process` };
      if (Date.now() > deadline) {
        const o = owner.owner;
        return { ok: false, error: `${spec.what}: the runtime environment is being set up by ${o ? `pid ${o.pid} on ${o.host}` : 'another process'} for too long (lock ${join(spec.runtimeEnvsDir, spec.parentDir, name)}); remove the lock if that process is gone` };
      }
      waited = true;
      await new Promise((r) => setTimeout(r, this.#opts.lockPollMs));
    }
  }

  #isStale(o: { owner: LockOwner | null; mtimeMs: number | null }, staleAfterMs: number): boolean {
    if (o.mtimeMs === null) return false; // gone meanwhile: the next mkdir will tell
    if (!o.owner) return Date.now() - o.mtimeMs > 10_000; // its maker died between mkdir and writing the owner
    if (Date.now() - o.owner.started_ms > staleAfterMs) return true;
    return o.owner.host === this.#host && !pidAlive(o.owner.pid);
  }
}

interface LockOwner { pid: number; host: string; started_ms: number }

async function readOwner(lockPath: string): Promise<{ owner: LockOwner | null; mtimeMs: number | null }> {
  let mtimeMs: number | null = null;
  try {
    mtimeMs = (await stat(lockPath)).mtimeMs;
    const o = JSON.parse(await readFile(join(lockPath, 'owner'), 'utf8')) as LockOwner;
    return { owner: typeof o.pid === 'number' && typeof o.host === 'string' && typeof o.started_ms === 'number' ? o : null, mtimeMs };
  } catch {
    return { owner: null, mtimeMs };
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function lockName(dirName: string): string {
  return `.${dirName}.lock`;
}

/** What the lock needs to know of the environment it guards. */
interface LockTarget { runtimeEnvsDir: string; parentDir: string; dirName: string; envDir: string; what: string }

function lockTarget(spec: EnvironmentSpec): LockTarget {
  return { runtimeEnvsDir: spec.runtimeEnvsDir, parentDir: spec.parentDir, dirName: spec.dirName, envDir: spec.envDir, what: describe(spec) };
}

/**
 * What a set-up of this agent leaves beside an environment while it runs: `.{dir}.tmp-{pid}-{hex8}`
 * (the sibling being built), `.{dir}.old-{pid}-{hex8}` (a broken one moved aside) and
 * `.{dir}.lock.stale-{hex8}` (a stale lock moved aside). Attune's own temporaries
 * (`.runtime.{uuid}.tmp`, `.{key}.{uuid}.tmp`) name no owner and are left alone.
 */
const LEFTOVER = /^\.(.+)\.(?:(?:tmp|old)-\d+-[0-9a-f]{8}|lock\.stale-[0-9a-f]{8})$/;

/** The environment a leftover belongs to, or null: not one of ours. */
export function leftoverOf(name: string): string | null {
  const m = LEFTOVER.exec(name);
  return m ? m[1] : null;
}

/**
 * Remove what killed set-ups of `dirName` left in packEnvs. Only called under that environment's
 * lock: temporaries are made only under it, so any there now belongs to a set-up that is over.
 * Removal goes through the open directory; rm never follows a link it meets (a link is removed).
 */
async function sweepSiblings(packEnvs: SafeDir, dirName: string, log: Logger): Promise<number> {
  let removed = 0;
  let names: string[];
  try {
    names = (await packEnvs.entries()).map((d) => d.name);
  } catch {
    return 0;
  }
  for (const name of names) {
    if (leftoverOf(name) !== dirName) continue;
    try {
      await rm(packEnvs.at(name), { recursive: true, force: true });
      removed++;
      log.info({ path: join(packEnvs.path, name) }, 'removed what an interrupted runtime environment set-up left behind');
    } catch (e) {
      log.warn({ path: join(packEnvs.path, name) }, `cannot remove what an interrupted runtime environment set-up left behind: ${(e as Error).message}`);
    }
  }
  return removed;
}

export function describe(spec: Pick<EnvironmentSpec, 'packRef' | 'runtimeName' | 'runtimeVersion'>): string {
  return `pack ${spec.packRef}, runtime ${spec.runtimeName}${spec.runtimeVersion ? ` ${spec.runtimeVersion}` : ''}`;
}

interface Manifest { sha256: string; declares: boolean }

async function readManifest(spec: EnvironmentSpec): Promise<Manifest | null> {
  if (!spec.manifestFile) return null;
  let bytes: Buffer;
  try {
    bytes = await readFile(join(spec.packDir, spec.manifestFile));
  } catch {
    return null;
  }
  return { sha256: createHash('sha256').update(bytes).digest('hex'), declares: declaresDependencies(spec.manifestFile, bytes.toString('utf8')) };
}

/**
 * Whether a manifest asks for anything: a package.json without dependency fields (one that only
 * sets `"type"`, say) or a requirements.txt of comments needs no environment.
 */
export function declaresDependencies(manifestFile: string, text: string): boolean {
  if (manifestFile.endsWith('package.json')) {
    try {
      const j = JSON.parse(text) as Record<string, unknown>;
      return ['dependencies', 'optionalDependencies', 'devDependencies', 'peerDependencies', 'bundleDependencies']
        .some((k) => j[k] !== null && typeof j[k] === 'object' && Object.keys(j[k] as object).length > 0);
    } catch {
      return true; // let the installer say what is wrong with it
    }
  }
  if (manifestFile.endsWith('.txt')) {
    return text.split('\n').some((l) => { const t = l.trim(); return t !== '' && !t.startsWith('#'); });
  }
  return text.trim() !== '';
}

interface EnvState {
  exists: boolean; isDir: boolean; interpreterOk: boolean; depsDigest: string | null;
  /** sha256 layout: `.attune-runtime-ready` (the key when complete) and `.attune-pack-ref`, trimmed. */
  ready: string | null; packRef: string | null;
}

const ABSENT: EnvState = { exists: false, isDir: false, interpreterOk: false, depsDigest: null, ready: null, packRef: null };

function readTrimmed(path: string): string | null {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return null;
  }
}

/** What is on disk (sync: a handful of stats on the warm path). */
function inspect(spec: EnvironmentSpec): EnvState {
  try {
    if (!lstatSync(spec.envDir).isDirectory()) return { ...ABSENT, exists: true };
  } catch {
    return ABSENT;
  }
  // Attune's workers build the legacy layout in place and write no ready marker there: a directory
  // whose interpreter works is an environment (ours never appear half-built: they are renamed in).
  // A dangling interpreter link (the image's python moved) fails here too.
  const interpreterOk = spec.interpreterPath === null || isExecutable(applyTemplate(spec.interpreterPath, templateVars(spec, spec.envDir, '')));
  const depsDigest = readTrimmed(join(spec.envDir, DEPS_MARKER));
  const keyed = spec.cacheKey !== null;
  return {
    exists: true, isDir: true, interpreterOk, depsDigest,
    ready: keyed ? readTrimmed(join(spec.envDir, READY_MARKER)) : null,
    packRef: keyed ? readTrimmed(join(spec.envDir, PACK_REF_MARKER)) : null,
  };
}

function isWarm(spec: EnvironmentSpec, state: EnvState, manifest: Manifest | null): boolean {
  if (!state.isDir || !state.interpreterOk) return false;
  // sha256 layout: ready exactly when Attune's is_ready says so (the marker holds the key, which
  // covers the manifest's digest: a changed manifest is another key, another directory).
  if (spec.cacheKey) return state.ready === spec.cacheKey;
  return manifest === null || !manifest.declares || state.depsDigest === manifest.sha256;
}

/** A regular file (after links) this process may execute. */
export function isExecutable(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false;
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function templateVars(spec: EnvironmentSpec, envDir: string, interpreter: string): TemplateVars {
  return {
    pack_dir: spec.packDir,
    env_dir: envDir,
    interpreter,
    manifest_path: spec.manifestFile ? join(spec.packDir, spec.manifestFile) : '',
  };
}

/** Contract §5.4: baseline + runtime env_vars + the setup variables, all inside the environment. */
export function setupEnv(
  baseline: Readonly<Record<string, string>>,
  envVars: Readonly<Record<string, string | EnvVarSpec>> | null,
  vars: TemplateVars,
  envDir: string,
): Record<string, string> {
  const env: Record<string, string> = { ...baseline };
  for (const [name, spec] of Object.entries(envVars ?? {})) {
    if (name.startsWith('ATTUNE_')) continue;
    env[name] = resolveEnvVar(spec, vars, env[name]);
  }
  const home = join(envDir, '.attune-setup');
  env.HOME = home;
  env.XDG_CONFIG_HOME = join(home, 'config');
  env.XDG_CACHE_HOME = join(home, 'cache');
  env.PIP_CACHE_DIR = join(home, 'cache', 'pip');
  env.PIP_CONFIG_FILE = '/dev/null';
  return env;
}

function outputTail(buf: Buffer): string {
  const text = buf.toString('utf8').trim();
  return text.length > OUTPUT_TAIL_CHARS ? `…${text.slice(text.length - OUTPUT_TAIL_CHARS)}` : text;
}

/** The missing piece, when the output says which. */
function hint(tail: string): string {
  if (/ensurepip is not available|No module named venv|python3(\.\d+)?-venv/.test(tail)) {
    return ' (this image\'s python cannot create virtual environments: install python3-venv (Debian/Ubuntu) or a python with ensurepip)';
  }
  if (/No module named pip/.test(tail)) return ' (this image\'s python has no pip: install python3-pip, or a python with ensurepip)';
  return '';
}
