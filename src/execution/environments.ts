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

export const READY_MARKER = '.attune-runtime-ready';
export const DEPS_MARKER = '.attune_deps_installed';

/** What the plan (execution/plan.ts) says about the action's environment; all paths absolute. */
export interface EnvironmentSpec {
  packRef: string;
  packDir: string;
  runtimeName: string;
  runtimeVersion: string | null;
  runtimeEnvsDir: string;
  /** `{runtime}` or `{runtime}-{version}`: the directory's name under `{runtime_envs_dir}/{pack_ref}`. */
  dirName: string;
  envDir: string;
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
    if (isWarm(state, manifest)) return { ok: true, warm: true, created: false, installed: false };
    // Executions of this agent wait for the one set-up in progress, then look again.
    for (;;) {
      const running = this.#inflight.get(spec.envDir);
      if (!running) break;
      await running;
      const again = inspect(spec);
      if (isWarm(again, await readManifest(spec))) return { ok: true, warm: false, created: false, installed: false };
    }
    const work = this.#setUp(spec, log).finally(() => this.#inflight.delete(spec.envDir));
    this.#inflight.set(spec.envDir, work);
    return work;
  }

  async #setUp(spec: EnvironmentSpec, log: Logger): Promise<EnsureResult> {
    const what = describe(spec);
    let packEnvs: SafeDir;
    try {
      packEnvs = await openDirBelow(spec.runtimeEnvsDir, [spec.packRef], { create: 0o755 });
    } catch (e) {
      return { ok: false, error: `${what}: cannot open ${join(spec.runtimeEnvsDir, spec.packRef)} (${(e as Error).message}); give the agent a writable runtime_envs_dir` };
    }
    try {
      const lock = await this.#lock(packEnvs, spec, log);
      if (!lock.ok) return lock;
      try {
        // Looked at again under the lock: another agent may have done the work meanwhile.
        const manifest = await readManifest(spec);
        let state = inspect(spec);
        let created = false;
        let installed = false;
        if (!state.isDir || !state.interpreterOk) {
          const made = await this.#create(packEnvs, spec, state.exists, log);
          if (!made.ok) return made;
          created = true;
          state = inspect(spec);
        }
        if (manifest !== null && manifest.declares && state.depsDigest !== manifest.sha256) {
          const inst = await this.#install(spec, manifest.sha256, log);
          if (!inst.ok) return inst;
          installed = true;
        }
        return { ok: true, warm: false, created, installed };
      } finally {
        await rm(packEnvs.at(lockName(spec)), { recursive: true, force: true }).catch(() => undefined);
      }
    } finally {
      await packEnvs.close().catch(() => undefined);
    }
  }

  /** create_command in a temporary sibling, checked, marked and renamed into place. */
  async #create(packEnvs: SafeDir, spec: EnvironmentSpec, replacing: boolean, log: Logger): Promise<{ ok: true } | { ok: false; error: string }> {
    const tmpName = `.${spec.dirName}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
    const tmpDir = join(spec.runtimeEnvsDir, spec.packRef, tmpName);
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
      const tmp = await openDirBelow(spec.runtimeEnvsDir, [spec.packRef, tmpName]);
      try {
        await replaceFileIn(tmp, READY_MARKER, 'ready', 0o644);
      } finally {
        await tmp.close().catch(() => undefined);
      }
      if (replacing) {
        // A broken environment (no interpreter, a dangling link, not a directory) is moved aside, then removed.
        const old = `.${spec.dirName}.old-${process.pid}-${randomBytes(4).toString('hex')}`;
        await rename(packEnvs.at(spec.dirName), packEnvs.at(old)).catch((e: NodeJS.ErrnoException) => { if (e.code !== 'ENOENT') throw e; });
        await rm(packEnvs.at(old), { recursive: true, force: true });
      }
      await rename(packEnvs.at(tmpName), packEnvs.at(spec.dirName));
      log.info({ env_dir: spec.envDir, ms: Math.round(performance.now() - started) }, `${describe(spec)}: runtime environment created`);
      return { ok: true };
    } catch (e) {
      return { ok: false, error: `${describe(spec)}: cannot create the runtime environment ${spec.envDir} (${(e as Error).message})` };
    } finally {
      await rm(packEnvs.at(tmpName), { recursive: true, force: true }).catch(() => undefined);
    }
  }

  async #install(spec: EnvironmentSpec, sha256: string, log: Logger): Promise<{ ok: true } | { ok: false; error: string }> {
    if (!spec.installCommand || spec.installCommand.length === 0) return { ok: true };
    const started = performance.now();
    const envInterp = spec.interpreterPath ? applyTemplate(spec.interpreterPath, templateVars(spec, spec.envDir, '')) : null;
    const vars = templateVars(spec, spec.envDir, envInterp && isExecutable(envInterp) ? envInterp : spec.baseInterpreter ?? '');
    const argv = spec.installCommand.map((a) => applyTemplate(a, vars));
    const r = await this.#run(argv, spec, spec.envDir, vars, log);
    if (!r.ok) return r;
    try {
      const env = await openDirBelow(spec.runtimeEnvsDir, [spec.packRef, spec.dirName]);
      try {
        await replaceFileIn(env, DEPS_MARKER, sha256, 0o644);
      } finally {
        await env.close().catch(() => undefined);
      }
    } catch (e) {
      return { ok: false, error: `${describe(spec)}: dependencies installed but ${join(spec.envDir, DEPS_MARKER)} cannot be written (${(e as Error).message})` };
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

  /** The cross-process lock: `.{dir}.lock`, made by this process, or broken when stale; waits at most the longest set-up. */
  async #lock(packEnvs: SafeDir, spec: EnvironmentSpec, log: Logger): Promise<{ ok: true } | { ok: false; error: string }> {
    const name = lockName(spec);
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
          return { ok: false, error: `${describe(spec)}: cannot take the lock ${join(spec.runtimeEnvsDir, spec.packRef, name)} (${(e as Error).message})` };
        }
      }
      const owner = await readOwner(packEnvs.at(name));
      if (this.#isStale(owner, staleAfterMs)) {
        log.warn({ lock: join(spec.runtimeEnvsDir, spec.packRef, name), owner: owner.owner }, 'breaking a stale runtime environment lock');
        const aside = `${name}.stale-${randomBytes(4).toString('hex')}`;
        // The rename is atomic: of several agents breaking it at once, one wins; the others try again.
        await rename(packEnvs.at(name), packEnvs.at(aside)).then(() => rm(packEnvs.at(aside), { recursive: true, force: true }), () => undefined);
        continue;
      }
      if (Date.now() > deadline) {
        const o = owner.owner;
        return { ok: false, error: `${describe(spec)}: the runtime environment is being set up by ${o ? `pid ${o.pid} on ${o.host}` : 'another process'} for too long (lock ${join(spec.runtimeEnvsDir, spec.packRef, name)}); remove the lock if that process is gone` };
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

function lockName(spec: EnvironmentSpec): string {
  return `.${spec.dirName}.lock`;
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

interface EnvState { exists: boolean; isDir: boolean; interpreterOk: boolean; depsDigest: string | null }

/** What is on disk (sync: a handful of stats on the warm path). */
function inspect(spec: EnvironmentSpec): EnvState {
  try {
    if (!lstatSync(spec.envDir).isDirectory()) return { exists: true, isDir: false, interpreterOk: false, depsDigest: null };
  } catch {
    return { exists: false, isDir: false, interpreterOk: false, depsDigest: null };
  }
  // Attune's workers build the legacy layout in place and write no ready marker there: a directory
  // whose interpreter works is an environment (ours never appear half-built: they are renamed in).
  // A dangling interpreter link (the image's python moved) fails here too.
  const interpreterOk = spec.interpreterPath === null || isExecutable(applyTemplate(spec.interpreterPath, templateVars(spec, spec.envDir, '')));
  let depsDigest: string | null = null;
  try {
    depsDigest = readFileSync(join(spec.envDir, DEPS_MARKER), 'utf8').trim();
  } catch {
    depsDigest = null;
  }
  return { exists: true, isDir: true, interpreterOk, depsDigest };
}

function isWarm(state: EnvState, manifest: Manifest | null): boolean {
  if (!state.isDir || !state.interpreterOk) return false;
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
