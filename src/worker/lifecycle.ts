/**
 * The worker's life (docs/attune-compat.md §1.4, §6): health listener → detect → database check and schema probe
 * → auto-register runtimes → register the worker row → recover executions left running → heartbeat
 * → services (the executions service, built by main.ts for the registered worker) → wait for
 * SIGTERM/SIGINT → stop services (drain, while still heartbeating) → stop heartbeat → deregister.
 * Returns the exit code. The adapters it is handed (pool, health listener) are closed by their
 * owner, main.ts, once it returns.
 */
import type pg from 'pg';
import type { Config } from '../config/index.ts';
import { detectRuntimes, type DetectionResult } from '../detect/detect.ts';
import { workerRuntimesValue } from '../detect/report.ts';
import { baselineEnvironment } from '../execution/environment.ts';
import { sweepParameterDirs } from '../execution/param-dirs.ts';
import { safeFsMode } from '../execution/safe-fs.ts';
import { EXIT, exitCodeForSignal } from '../exit-codes.ts';
import type { Logger } from '../observe/logger.ts';
import type { HealthServer, Readiness } from '../observe/health.ts';
import type { AgentMetrics } from '../observe/metrics.ts';
import { killChildProcessGroups } from '../native/pid1.ts';
import { AGENT_VERSION } from '../version.ts';
import { dbError, poolTarget, verifyDatabase } from '../db/pool.ts';
import { probeSchema, schemaWarnings, type SchemaCapabilities } from '../db/schema.ts';
import { formatTarget } from '../db/errors.ts';
import { registerDetectedRuntimes } from '../db/runtimes.ts';
import { buildCapabilities, deregisterWorker, registerWorker, resolveWorkerName, type RegisteredWorker } from '../db/registration.ts';
import { recoverInterruptedExecutions, type RecoveredExecution } from '../db/recovery.ts';
import { spooledExecutionIds } from './result-spool.ts';
import { Heartbeat } from '../db/heartbeat.ts';

export interface AgentContext {
  config: Readonly<Config>;
  log: Logger;
  pool: pg.Pool;
  /** What this Attune schema has (probed once, right after the database check). */
  schema: SchemaCapabilities;
  env: Record<string, string | undefined>;
  detection: DetectionResult;
  worker: RegisteredWorker;
  /** Executions finished at start-up (running → failed, canceling → cancelled): publish their messages. */
  recovered: RecoveredExecution[];
  heartbeat: Heartbeat;
  /** Null unless `worker.health_port` is set (prom-client is then loaded). */
  metrics: AgentMetrics | null;
}

/** A part of the agent started after registration and stopped (drained) before deregistration. */
export interface AgentService {
  name: string;
  start(ctx: AgentContext): Promise<void>;
  /**
   * Called once per started service, in reverse order, on the first SIGTERM/SIGINT; the heartbeat
   * keeps beating meanwhile. Must stop taking new work synchronously, before its first await.
   */
  stop(ctx: AgentContext, reason: string): Promise<void>;
  /** Second signal while stopping: cut the drain short (cancel running work now); stop() then finishes. */
  hurry?(ctx: AgentContext): void;
  /** Readiness checks this service contributes to /readyz (e.g. broker connected, consuming). */
  health?(): Record<string, boolean>;
}

/** Parameter files a killed agent left behind are removed; a filesystem without /proc is reported. */
async function startupHousekeeping(log: Logger): Promise<void> {
  const swept = await sweepParameterDirs();
  if (swept.removed.length > 0) log.info({ removed: swept.removed }, 'removed parameter directories left by an agent that was killed');
  for (const e of swept.errors) log.warn(e);
  if (safeFsMode() === 'path') {
    log.warn('/proc is not mounted: files under artifacts_dir are checked one path component at a time, which an action racing the agent could still redirect; mount /proc in the container');
  }
}

/** Where the agent is in its life; /readyz is ready only while `running`. */
export type Phase = 'starting' | 'running' | 'draining' | 'stopping';

/** The adapters and parts the worker's life is given (main.ts builds them). */
export interface WorkerDeps {
  log: Logger;
  /** ATTUNE_WORKER_RUNTIMES is set in it when unset (docs/attune-compat.md §1.4 step 5). */
  env: Record<string, string | undefined>;
  hostname: string;
  /** The Attune database; checked first, never closed here. */
  pool: pg.Pool;
  /** Null unless `worker.health_port` is set. */
  health: HealthServer | null;
  metrics: AgentMetrics | null;
  /** The services of the registered worker, started in order after registration. */
  services(ctx: AgentContext): readonly AgentService[];
  /** In-process shutdown trigger (tests); the process signals SIGTERM/SIGINT always work. */
  shutdown?: AbortSignal;
  /** Logged first (e.g. the PID 1 check in main.ts). */
  startupWarnings?: readonly string[];
  /** Third signal: exit the process now with this code (main.ts: process.exit). */
  exitNow(code: number): void;
}

export async function runWorker(config: Readonly<Config>, opts: WorkerDeps): Promise<number> {
  const { env, hostname, pool, metrics, health } = opts;
  let log = opts.log;
  for (const w of opts.startupWarnings ?? []) log.warn(w);
  const graceNeeded = (config.worker.shutdownTimeoutMs + config.worker.killGracePeriodMs) / 1000;
  if (graceNeeded > 40) {
    log.warn({ shutdown_timeout_s: config.worker.shutdownTimeoutMs / 1000, kill_grace_period_s: config.worker.killGracePeriodMs / 1000 }, `a drain can take ${graceNeeded} s plus the final writes: keep terminationGracePeriodSeconds above that (Attune's charts use 45 s)`);
  }
  const startedAt = Date.now();
  let phase: Phase = 'starting';
  const started: AgentService[] = [];
  let ctx: AgentContext | null = null;
  let heartbeatRef: Heartbeat | null = null;
  let registered = false;
  let forcedCode: number | null = null;
  // Listen from the very start: a SIGTERM during start-up must not kill the agent half-registered.
  const shutdown = waitForShutdown(log, opts.shutdown, {
    onSecond: (sig) => {
      forcedCode = exitCodeForSignal(sig);
      log.warn({ signal: sig }, 'second signal: cancelling running actions now (reason shutdown); the agent exits once their results are written');
      for (const s of started) if (ctx) s.hurry?.(ctx);
    },
    onThird: (sig) => {
      const groups = killChildProcessGroups();
      log.error({ signal: sig, killed_process_groups: groups }, 'third signal: exiting at once (results of running actions are not written)');
      opts.exitNow(exitCodeForSignal(sig));
    },
  });

  const dbUp = (): boolean => {
    const hb = heartbeatRef?.state();
    return hb !== undefined && hb.lastSuccessAt !== null && !(hb.lastFailureAt !== null && hb.lastFailureAt > hb.lastSuccessAt);
  };
  const readiness = (): Readiness => {
    const hb = heartbeatRef?.state();
    const checks: Record<string, boolean> = { registered: registered && hb?.rowMissing !== true, database: dbUp() };
    for (const s of started) Object.assign(checks, s.health?.() ?? {});
    checks.not_draining = phase === 'running';
    return { ready: Object.values(checks).every(Boolean), checks };
  };
  metrics?.watch({
    heartbeatAgeSeconds: () => (Date.now() - (heartbeatRef?.state().lastSuccessAt ?? startedAt)) / 1000,
    databaseUp: () => (heartbeatRef ? dbUp() : undefined),
    draining: () => phase === 'draining' || phase === 'stopping',
    ready: () => readiness().ready,
  });
  try {
    if (health) {
      try {
        await health.start(readiness);
      } catch (e) {
        log.error({ err: (e as Error).message, port: config.worker.healthPort }, 'cannot listen on worker.health_port; exiting');
        return EXIT.STARTUP;
      }
    }
    const detection = await detect(config, env, log);
    await startupHousekeeping(log);

    const target = poolTarget(pool)!;
    let schema: SchemaCapabilities;
    try {
      await verifyDatabase(pool, config.database.schema);
      schema = await probeSchema(pool, config.database.schema);
    } catch (e) {
      const err = dbError(pool, e);
      log.error({ err: err.message, retryable: err.retryable }, 'cannot use the Attune database; exiting');
      return EXIT.STARTUP;
    }
    log.info({ database: `${formatTarget(target)}/${target.database}`, user: target.user, schema: config.database.schema }, 'database ready');
    for (const w of schemaWarnings(schema)) log.warn(w);

    if (shutdown.requested()) {
      log.info('shutdown requested during start-up; exiting before registration');
      return EXIT.OK;
    }
    await registerDetectedRuntimes(pool, detection.selected, log);

    let worker: RegisteredWorker;
    try {
      worker = await registerWorker(pool, {
        name: resolveWorkerName(config, hostname, env),
        workerType: config.worker.workerType,
        runtimeId: config.worker.runtimeId,
        host: config.worker.host || hostname,
        port: config.worker.port,
        capabilities: buildCapabilities(config, { detected: detection.selected, workerVersion: AGENT_VERSION }, env),
      });
    } catch (e) {
      log.error({ err: dbError(pool, e, 'registering the worker row').message }, 'worker registration failed; exiting');
      return EXIT.STARTUP;
    }
    registered = true;
    log = log.child({ worker_id: worker.id, worker_name: worker.name });
    log.info({ inserted: worker.inserted, runtimes: (worker.capabilities as { runtimes?: unknown } | null)?.runtimes }, worker.inserted ? 'registered new worker' : 'registered worker (existing row re-activated)');
    if (worker.cordoned) log.warn({ reason: worker.cordon_reason }, 'this worker is cordoned by an operator: Attune will not schedule executions on it until uncordoned');

    let recovered: RecoveredExecution[] = [];
    try {
      // A run whose result waits in the spool is not "left in flight": the replay writes its real result.
      const spooled = await spooledExecutionIds(config.worker.resultSpoolDir).catch(() => []);
      recovered = await recoverInterruptedExecutions(pool, worker, spooled);
      for (const r of recovered) log.warn({ execution_id: r.id, action_ref: r.action_ref, status: r.status }, 'finished an execution left in flight by a previous run of this worker');
    } catch (e) {
      log.error({ err: dbError(pool, e, 'recovering interrupted executions').message }, 'could not recover executions left running; continuing');
    }

    const heartbeat = new Heartbeat({
      db: pool, workerId: worker.id, intervalMs: config.worker.heartbeatIntervalMs, log,
      describeError: (e) => dbError(pool, e).message,
    });
    heartbeat.start();
    heartbeatRef = heartbeat;

    const agentCtx: AgentContext = { config, log, pool, schema, env, detection, worker, recovered, heartbeat, metrics };
    ctx = agentCtx;
    let code: number = EXIT.OK;
    let reason: string;
    try {
      for (const s of opts.services(agentCtx)) {
        await s.start(agentCtx);
        started.push(s);
      }
      if (!shutdown.requested()) phase = 'running';
      log.info('worker running; waiting for SIGTERM/SIGINT');
      reason = await shutdown.promise;
    } catch (e) {
      log.error({ err: e instanceof Error ? e.message : String(e) }, 'start-up failed; stopping');
      code = EXIT.STARTUP;
      reason = 'startup failure';
    }
    phase = 'draining';
    log.info({ reason, shutdown_timeout_ms: config.worker.shutdownTimeoutMs }, 'shutting down: no new dispatches are taken; running actions may finish');
    // stop() must take effect at once (no new dispatch after the signal): start every service's stop
    // synchronously, then wait for them in reverse start order.
    const stopping = [...started].reverse().map((s) => ({ s, done: s.stop(agentCtx, reason) }));
    for (const { s, done } of stopping) {
      try {
        await done;
      } catch (e) {
        log.error({ service: s.name, err: e instanceof Error ? e.message : String(e) }, 'service did not stop cleanly');
      }
    }
    phase = 'stopping';
    await heartbeat.stop();
    try {
      await deregisterWorker(pool, worker.id);
      log.info('worker deregistered (status inactive)');
    } catch (e) {
      log.error({ err: dbError(pool, e, 'deregistering').message }, 'could not mark the worker inactive; Attune will treat it as stale after 90 s');
    }
    if (code === EXIT.OK && forcedCode !== null) code = forcedCode;
    log.info({ exit_code: code }, 'attune-agent stopped');
    return code;
  } finally {
    shutdown.dispose();
  }
}

async function detect(config: Readonly<Config>, env: Record<string, string | undefined>, log: Logger): Promise<DetectionResult> {
  const detection = await detectRuntimes({
    env: baselineEnvironment(env, config.worker.passthroughEnv),
    probeTimeoutMs: config.worker.probeTimeoutMs,
    filter: config.worker.runtimes,
  });
  log.info({ runtimes: detection.selected.map((d) => ({ name: d.name, path: d.path, version: d.version })) }, 'interpreters detected');
  for (const u of detection.unusable) log.warn({ runtime: u.name, path: u.path, reason: u.reason }, 'interpreter found but not usable');
  if (detection.filter.length > 0 && detection.selected.length === 0) {
    log.warn({ filter: detection.filter }, 'no detected interpreter matches ATTUNE_WORKER_RUNTIMES; only native actions can run');
  }
  const value = workerRuntimesValue(detection);
  if ((env.ATTUNE_WORKER_RUNTIMES ?? '').trim() === '' && value !== '') env.ATTUNE_WORKER_RUNTIMES = value;
  return detection;
}

/**
 * Escalating shutdown: the first SIGTERM/SIGINT (or the abort signal) resolves `promise` (drain);
 * the second calls `onSecond` (cancel running actions now); the third calls `onThird` (exit at once).
 */
function waitForShutdown(
  log: Logger,
  abort: AbortSignal | undefined,
  escalate: { onSecond(sig: NodeJS.Signals): void; onThird(sig: NodeJS.Signals): void },
): { promise: Promise<string>; requested(): boolean; dispose(): void } {
  let resolve!: (reason: string) => void;
  const promise = new Promise<string>((r) => (resolve = r));
  let received = 0;
  let requested = false;
  const onSignal = (sig: NodeJS.Signals) => {
    received++;
    requested = true;
    log.info({ signal: sig, count: received }, `received ${sig}`);
    if (received === 1) resolve(sig);
    else if (received === 2) escalate.onSecond(sig);
    else escalate.onThird(sig);
  };
  const onAbort = () => {
    if (received === 0) received = 1;
    requested = true;
    resolve('shutdown requested');
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  if (abort?.aborted) onAbort();
  else abort?.addEventListener('abort', onAbort, { once: true });
  return {
    promise,
    requested: () => requested,
    dispose() {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      abort?.removeEventListener('abort', onAbort);
    },
  };
}
