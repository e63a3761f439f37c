/**
 * `worker.{id}.packtests` (docs/attune-compat.md "Pack tests"): a `PackTestRequested` from Attune's
 * executor runs the pack's test suite on this worker and records the outcome, as Attune's worker
 * `handle_pack_test` does for the volume pack transport:
 *
 *  1. the `pack_install` must exist, be `running` and assigned to this worker (else ignored: stale
 *     or misrouted); its ref/version/trigger must match the message, and the candidate mode (token
 *     hash ⇔ candidate_path ⇔ token) too (else failed); a wrong candidate token is ignored;
 *  2. the pack dir: `{packs_base_dir}/{pack_ref}`, or the staged candidate, which must resolve to
 *     `{packs_base_dir}/.pack-test-{install id}` (removed afterwards, with the attempt's environment
 *     `{runtime_envs_dir}/.pack-test-attempts/{id}`);
 *  3. pack.yaml missing → failed; no `testing` section, or `enabled: false` → succeeded (`activating`
 *     unless the trigger is `manual`); an invalid policy → failed;
 *  4. python runners get the pack's environment (execution/environments.ts, as an execution of the
 *     pack would), then each runner runs as a real process group (execution/process.ts) with the
 *     cleared baseline environment, its timeout (default 300 s; the group is killed) and 1 MiB of
 *     each stream kept (worker/test-executor.ts);
 *  5. a `pack_test_execution` row when the pack still exists with the install's pack_id, then the
 *     install finished with the result snapshot: succeeded/activating, or failed with "Pack tests
 *     did not pass (p/t passed)".
 *
 * One request at a time (the consumer's prefetch is 1); executions go on meanwhile. On shutdown a
 * running suite is killed and the message requeued (the install stays `running` for the next start).
 */
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, readdirSync, rmSync } from 'node:fs';
import { readFile, realpath, rm } from 'node:fs/promises';
import { dirname, isAbsolute, join } from 'node:path';
import type { Logger } from 'pino';
import { parse as parseYaml } from 'yaml';
import type { Envelope } from '../protocol/envelope.ts';
import { decodePackTestRequested, type PackTestRequested } from '../protocol/pack-messages.ts';
import type { DeliveryInfo, Disposition } from '../mq/consumer.ts';
import { PACK_REF, PACK_REF_RULE } from '../execution/pack-files.ts';
import { runProcess } from '../execution/process.ts';
import type { RuntimeEnvironments } from '../execution/environments.ts';
import { locateBinary } from '../detect/detect.ts';
import { detectedForRuntime } from '../execution/runtime-version.ts';
import type { FinishStatus, PackInstallRow, PackTestExecutionInsert } from '../db/pack-installs.ts';
import { planPackRuntime, type PackPlanDeps, type RuntimeWithVersions } from './pack-events.ts';
import {
  MAX_TEST_OUTPUT_BYTES, acceptsResult, executePackTests, parseTestConfig, validatePolicy,
  type CommandOutput, type PackTestResult, type RunnerCommand, type RunnerInterpreters,
} from './test-executor.ts';

/** Attune's PACK_INSTALL_ACTIVE_TTL_SECS: attempt data older than an install may live is stale. */
export const PACK_INSTALL_ACTIVE_TTL_MS = 7 * 60 * 60 * 1000;
export const ATTEMPTS_DIR = '.pack-test-attempts';

export interface PackTestsDb {
  findInstall(id: number): Promise<PackInstallRow | null>;
  finishRunning(id: number, f: { status: FinishStatus; testExecutionId: number | null; testResult: unknown; errorMessage: string | null }): Promise<boolean>;
  findPackIdByRef(ref: string): Promise<number | null>;
  insertTestExecution(r: PackTestExecutionInsert): Promise<number>;
  loadRuntimeByRef(ref: string): Promise<RuntimeWithVersions | null>;
}

export interface PackTestsDeps extends PackPlanDeps {
  workerId: number;
  db: PackTestsDb;
  environments: Pick<RuntimeEnvironments, 'ensure'>;
  log: Logger;
}

/** How one request ended (logged; returned for tests). */
export type PackTestOutcome =
  | { kind: 'ignored'; reason: string }
  | { kind: 'finished'; status: FinishStatus; message: string | null; testExecutionId: number | null; result: PackTestResult | null; updated: boolean }
  | { kind: 'aborted' };

/** Attune's hash_integration_token: SHA-256, base64url without padding. */
export function hashIntegrationToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('base64url');
}

/** A Node filesystem error as Rust's io::Error prints it ("No such file or directory (os error 2)"). */
export function rustIoError(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  const known: Record<string, [string, number]> = {
    ENOENT: ['No such file or directory', 2], EACCES: ['Permission denied', 13], ENOTDIR: ['Not a directory', 20],
    ELOOP: ['Too many levels of symbolic links', 40], ENOEXEC: ['Exec format error', 8], ETXTBSY: ['Text file busy', 26],
    EISDIR: ['Is a directory', 21], EPERM: ['Operation not permitted', 1],
  };
  const k = code ? known[code] : undefined;
  return k ? `${k[0]} (os error ${k[1]})` : (e as Error).message;
}

class Aborted extends Error {}

export class PackTests {
  readonly #d: PackTestsDeps;
  readonly #stop = new AbortController();

  constructor(deps: PackTestsDeps) {
    this.#d = deps;
  }

  /** Shutdown: a running suite's process group is killed; its message goes back to the queue. */
  stop(): void {
    this.#stop.abort('shutdown');
  }

  /** The consumer's handler: one envelope of `worker.{id}.packtests`. */
  async onMessage(env: Envelope<unknown>, delivery: DeliveryInfo): Promise<Disposition> {
    const log = this.#d.log.child({ message_id: env.message_id, message_type: env.message_type });
    if (this.#stop.signal.aborted) return 'nack-requeue'; // shutting down: for the next start
    if (env.message_type !== 'PackTestRequested') {
      log.info(`ignoring a ${env.message_type} message on the pack tests queue (acked)`);
      return 'ack';
    }
    const decoded = decodePackTestRequested(env.payload);
    if (!decoded.ok) {
      log.warn(`dropping PackTestRequested (nack, no requeue): ${decoded.error}`);
      return 'nack-drop';
    }
    const p = decoded.value;
    const fields = { pack_install_id: p.pack_install_id, pack_ref: p.pack_ref, pack_version: p.pack_version, trigger_reason: p.trigger_reason };
    if (!PACK_REF.test(p.pack_ref)) {
      log.warn(fields, `dropping PackTestRequested (nack, no requeue): pack_ref ${JSON.stringify(p.pack_ref)} is not a pack ref (${PACK_REF_RULE})`);
      return 'nack-drop';
    }
    try {
      const outcome = await this.handle(p, log.child(fields));
      return outcome.kind === 'aborted' ? 'nack-requeue' : 'ack';
    } catch (e) {
      // The database answered with an error: retried once; the second time the install is failed
      // with the error as Attune's consumer records it, and the message dropped.
      const message = `Database error: ${(e as Error).message}`;
      log.error({ ...fields, err: (e as Error).message }, `pack tests of ${p.pack_ref}: cannot read or write pack_install ${p.pack_install_id}: ${(e as Error).message}` +
        (delivery.redelivered ? ' (dropped)' : ' (requeued once)'));
      if (!delivery.redelivered) return 'nack-requeue';
      await this.#d.db.finishRunning(p.pack_install_id, { status: 'failed', testExecutionId: null, testResult: null, errorMessage: message }).catch(() => undefined);
      return 'nack-drop';
    }
  }

  /** handle_pack_test for the volume transport. Throws on a database error. */
  async handle(p: PackTestRequested, log: Logger): Promise<PackTestOutcome> {
    const d = this.#d;
    const install = await d.db.findInstall(p.pack_install_id);
    if (!install) {
      log.warn(`pack tests of ${p.pack_ref}: pack_install ${p.pack_install_id} does not exist; ignored (acked)`);
      return { kind: 'ignored', reason: 'missing install' };
    }
    if (install.status !== 'running' || install.assigned_worker_id !== d.workerId) {
      log.info({ status: install.status, assigned_worker_id: install.assigned_worker_id },
        `pack tests of ${p.pack_ref}: stale or misrouted request (pack_install ${p.pack_install_id} is ${install.status}, assigned to worker ${install.assigned_worker_id}); ignored (acked)`);
      return { kind: 'ignored', reason: 'stale or misrouted' };
    }
    const fail = (message: string) => this.#finish(p, log, 'failed', message, null, null);
    if (install.pack_ref !== p.pack_ref || install.pack_version !== p.pack_version || install.trigger_reason !== p.trigger_reason) {
      return fail('Pack test delivery did not match its install record');
    }
    const expectsCandidate = install.candidate_access_token_hash !== null;
    if (expectsCandidate !== (p.candidate_path !== null) || expectsCandidate !== (p.candidate_access_token !== null)) {
      return fail('Pack test delivery did not match the claimed candidate mode');
    }
    if (install.candidate_access_token_hash !== null && p.candidate_access_token !== null
      && hashIntegrationToken(p.candidate_access_token) !== install.candidate_access_token_hash) {
      log.warn(`pack tests of ${p.pack_ref}: the candidate token does not match pack_install ${p.pack_install_id}; ignored (acked)`);
      return { kind: 'ignored', reason: 'invalid candidate token' };
    }
    let packDir = join(d.config.packsBaseDir, p.pack_ref);
    const cleanup: string[] = [];
    if (p.candidate_path !== null) {
      const resolved = await resolveCandidate(d.config.packsBaseDir, p.pack_install_id, p.candidate_path);
      if (!resolved.ok) return fail(resolved.error);
      packDir = p.candidate_path;
      cleanup.push(p.candidate_path, join(d.config.runtimeEnvsDir, ATTEMPTS_DIR, String(p.pack_install_id)));
    }
    try {
      log.info(`Running pack tests for '${p.pack_ref}' v${p.pack_version} (install ${p.pack_install_id})`);
      return await this.#run(p, install, packDir, log);
    } finally {
      for (const path of cleanup) {
        await rm(path, { recursive: true, force: true }).catch((e: Error) => log.warn({ path }, `cannot remove pack test attempt data ${path}: ${e.message}`));
      }
    }
  }

  async #run(p: PackTestRequested, install: PackInstallRow, packDir: string, log: Logger): Promise<PackTestOutcome> {
    const d = this.#d;
    const fail = (message: string) => this.#finish(p, log, 'failed', message, null, null);
    const succeed = (testExecutionId: number | null, result: PackTestResult | null) =>
      this.#finish(p, log, p.trigger_reason === 'manual' ? 'succeeded' : 'activating', null, testExecutionId, result);
    const yamlPath = join(packDir, 'pack.yaml');
    if (!existsSync(yamlPath)) return fail(`pack.yaml not found for pack '${p.pack_ref}' on worker`);
    let text: string;
    try {
      text = await readFile(yamlPath, 'utf8');
    } catch (e) {
      return fail(`Internal error: Failed to read pack.yaml for '${p.pack_ref}': ${rustIoError(e)}`);
    }
    let doc: unknown;
    try {
      doc = parseYaml(text);
    } catch (e) {
      return fail(`Internal error: Failed to parse pack.yaml for '${p.pack_ref}': ${(e as Error).message}`);
    }
    const testing = doc !== null && typeof doc === 'object' && !Array.isArray(doc) ? (doc as Record<string, unknown>).testing : undefined;
    // No testing configuration: a successful (no-op) run, so the install is not blocked.
    if (testing === undefined) return succeed(null, null);
    const parsed = parseTestConfig(testing);
    if (!parsed.ok) return fail(`Internal error: Failed to parse test configuration for '${p.pack_ref}': ${parsed.error}`);
    const config = parsed.value;
    const policy = validatePolicy(config);
    if (policy) return fail(policy);
    if (!config.enabled) return succeed(null, null);

    const interpreters: RunnerInterpreters = { sh: shell('sh', d.baselineEnv), bash: shell('bash', d.baselineEnv), python: 'python3' };
    let pythonBinDir: string | null = null;
    if (config.runners.some(([, r]) => r.type === 'unittest' || r.type === 'pytest')) {
      const prepared = await this.#python(p, packDir, log);
      if (!prepared.ok) return fail(prepared.error);
      if (prepared.interpreter) {
        interpreters.python = prepared.interpreter;
        if (isAbsolute(prepared.interpreter)) pythonBinDir = dirname(prepared.interpreter);
      }
    }
    let executed;
    try {
      executed = await executePackTests(
        { packDir, packRef: p.pack_ref, packVersion: p.pack_version, config, interpreters, pythonBinDir },
        { exists: existsSync, run: (cmd) => this.#runCommand(cmd, packDir, log), now: () => new Date(), monotonicMs: () => performance.now() },
      );
    } catch (e) {
      if (e instanceof Aborted) {
        log.warn(`pack tests of ${p.pack_ref} (pack_install ${p.pack_install_id}) stopped by the agent's shutdown; the request goes back to the queue`);
        return { kind: 'aborted' };
      }
      throw e;
    }
    if (!executed.ok) return fail(`Test execution failed: ${executed.error}`);
    const result = executed.result;
    const passed = acceptsResult(config, result);
    // The test-run row only for the pack this install is about, while it still exists.
    let testExecutionId: number | null = null;
    if (install.pack_id !== null && (await d.db.findPackIdByRef(p.pack_ref)) === install.pack_id) {
      testExecutionId = await d.db.insertTestExecution({ packId: install.pack_id, packVersion: p.pack_version, triggerReason: p.trigger_reason, result });
    }
    if (passed) return succeed(testExecutionId, result);
    return this.#finish(p, log, 'failed', `Pack tests did not pass (${result.passed}/${result.totalTests} passed)`, testExecutionId, result);
  }

  /**
   * The python of `unittest`/`pytest` runners: the pack's environment made ready as an execution of
   * the pack makes it (Attune's prepare_python_test_runtime; for a candidate, a private environment
   * under `.pack-test-attempts/{id}`), its interpreter when it has one, else the image's python.
   * null interpreter: this image has no python (the runner then fails to start, saying so).
   */
  async #python(p: PackTestRequested, packDir: string, log: Logger): Promise<{ ok: true; interpreter: string | null } | { ok: false; error: string }> {
    const d = this.#d;
    let packId = 0;
    if (p.candidate_path === null) {
      const id = await d.db.findPackIdByRef(p.pack_ref);
      if (id === null) return { ok: false, error: `Not found: pack with ref=${p.pack_ref}` };
      packId = id;
    }
    const rv = await d.db.loadRuntimeByRef('core.python');
    if (!rv) return { ok: false, error: 'Not found: runtime with ref=core.python' };
    if (detectedForRuntime(rv.runtime, d.detected).length === 0) return { ok: true, interpreter: null };
    // A candidate has no pack row yet: its environment is private to the attempt, planned with
    // `{runtime_envs_dir}/.pack-test-attempts/{id}` as the runtime_envs_dir (so every path of it is
    // the plan's own: `…/{id}/{pack_ref}/{runtime}`, one level below Attune's `…/{id}/{runtime}`),
    // and removed with the attempt.
    const planDeps = p.candidate_path === null ? d
      : { ...d, config: { ...d.config, runtimeEnvsDir: join(d.config.runtimeEnvsDir, ATTEMPTS_DIR, String(p.pack_install_id)) } };
    const plan = () => planPackRuntime(planDeps, { pack_id: packId, pack_ref: p.pack_ref, release_id: null, release_digest: null }, rv, packDir);
    let planned = await plan();
    if (!planned.ok) return { ok: false, error: `Internal error: ${planned.error}` };
    const spec = planned.plan.environment;
    if (!spec) return { ok: true, interpreter: planned.plan.interpreter };
    const ready = await d.environments.ensure(spec, log);
    if (!ready.ok) return { ok: false, error: `Internal error: ${ready.error}` };
    // As an execution does (worker/run-execution.ts): unless the environment was ready at once, the
    // plan is made again, so it names the environment's interpreter.
    if (!ready.warm) {
      planned = await plan();
      if (!planned.ok) return { ok: false, error: `Internal error: ${planned.error}` };
    }
    return { ok: true, interpreter: planned.plan.interpreter };
  }

  /** One runner as a real process group: the cleared baseline env, HOME = the pack dir, its timeout. */
  async #runCommand(cmd: RunnerCommand, packDir: string, log: Logger): Promise<CommandOutput> {
    const base = this.#d.baselineEnv;
    const path = base.PATH ?? '/usr/local/bin:/usr/bin:/bin';
    const env = { ...base, PATH: cmd.binDir ? `${cmd.binDir}:${path}` : path, HOME: packDir, LANG: 'C.UTF-8', LC_ALL: 'C.UTF-8' };
    log.info({ runner: cmd.runnerName, type: cmd.runnerType, command: cmd.command, args: cmd.args, timeout_s: cmd.timeoutS }, `pack test runner ${cmd.runnerName}: running \`${[cmd.command, ...cmd.args].join(' ')}\``);
    const r = await runProcess({
      argv: [cmd.command, ...cmd.args], env, cwd: packDir, stdin: null, timeoutMs: cmd.timeoutS * 1000,
      // Attune SIGKILLs the runner's group at once when its time is up.
      killGracePeriodMs: 0, maxStdoutBytes: MAX_TEST_OUTPUT_BYTES, maxStderrBytes: MAX_TEST_OUTPUT_BYTES,
    }, { signal: this.#stop.signal, logger: log });
    if (r.kind === 'spawn-error') {
      const message = `${rustIoError({ code: r.code, message: r.message })}${this.#missingInterpreter(cmd)}`;
      log.warn({ runner: cmd.runnerName }, `pack test runner ${cmd.runnerName}: cannot start ${cmd.command}: ${message}`);
      return { kind: 'spawn-error', message };
    }
    if (r.cancelled) throw new Aborted();
    if (r.timedOut) {
      log.warn({ runner: cmd.runnerName, timeout_s: cmd.timeoutS }, `pack test runner ${cmd.runnerName}: killed at its timeout of ${cmd.timeoutS} s`);
      return { kind: 'timeout', timeoutS: cmd.timeoutS };
    }
    return { kind: 'exited', exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr, durationMs: r.durationMs };
  }

  /** Why a runner's interpreter could not start on this image, naming what detection found. */
  #missingInterpreter(cmd: RunnerCommand): string {
    const what = cmd.runnerType === 'script' ? (cmd.command.endsWith('/sh') || cmd.command === 'sh' ? 'sh' : 'bash') : 'python';
    const found = this.#d.detected.map((x) => `${x.name} ${x.path}`).join(', ') || 'none';
    return ` (attune-agent: this image has no ${what} for the ${cmd.runnerType} runner ${cmd.runnerName}; interpreters detected: ${found})`;
  }

  async #finish(p: PackTestRequested, log: Logger, status: FinishStatus, message: string | null, testExecutionId: number | null, result: PackTestResult | null): Promise<PackTestOutcome> {
    const updated = await this.#d.db.finishRunning(p.pack_install_id, { status, testExecutionId, testResult: result, errorMessage: message });
    const counts = result ? ` (${result.passed}/${result.totalTests} passed)` : '';
    const line = `pack tests of ${p.pack_ref} ${p.pack_version} (pack_install ${p.pack_install_id}): ${status}${counts}${message ? `: ${message}` : ''}` +
      (updated ? '' : ' — the install was no longer running; nothing written');
    if (status === 'failed') log.warn({ status, test_execution_id: testExecutionId }, line);
    else log.info({ status, test_execution_id: testExecutionId }, line);
    return { kind: 'finished', status, message, testExecutionId, result, updated };
  }
}

/** Attune's resolve_pack_test_dir: the candidate must be `{packs_base_dir}/.pack-test-{id}` once links are resolved. */
export async function resolveCandidate(packsBaseDir: string, installId: number, candidatePath: string): Promise<{ ok: true; dir: string } | { ok: false; error: string }> {
  let root: string;
  try {
    root = await realpath(packsBaseDir);
  } catch (e) {
    return { ok: false, error: `Internal error: Failed to resolve configured pack root: ${rustIoError(e)}` };
  }
  let candidate: string;
  try {
    candidate = await realpath(candidatePath);
  } catch (e) {
    return { ok: false, error: `Internal error: Failed to resolve pack test candidate: ${rustIoError(e)}` };
  }
  if (candidate !== join(root, `.pack-test-${installId}`)) {
    return { ok: false, error: `Internal error: Pack test candidate path is outside the configured pack root: ${candidatePath}` };
  }
  return { ok: true, dir: candidatePath };
}

/** `/bin/{name}` when it is there (Attune's fixed paths), else `name` on the baseline PATH (as detection finds it). */
function shell(name: 'sh' | 'bash', baseline: Readonly<Record<string, string>>): string {
  return locateBinary(name, baseline) ?? `/bin/${name}`;
}

/**
 * Attune's cleanup_stale_pack_test_attempts, at start: attempt directories (numeric names) under
 * `root` older than an install may live are removed. Returns what was removed.
 */
export function cleanupStalePackTestAttempts(root: string, nowMs: number, log: Logger): string[] {
  let names: string[];
  try {
    names = readdirSync(root);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    if (!/^[+-]?\d+$/.test(name)) continue;
    const path = join(root, name);
    try {
      const st = lstatSync(path);
      if (!st.isDirectory() || nowMs - st.mtimeMs <= PACK_INSTALL_ACTIVE_TTL_MS) continue;
      rmSync(path, { recursive: true, force: true });
      removed.push(path);
    } catch (e) {
      log.warn({ path }, `cannot remove stale pack test attempt data ${path}: ${(e as Error).message}`);
    }
  }
  return removed;
}
