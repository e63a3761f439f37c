/**
 * The worker's life (contract §1.4, §6): detect → database check → auto-register runtimes →
 * register the worker row → recover executions left running → heartbeat → services (broker,
 * executions; plugged in as AgentService) → wait for SIGTERM/SIGINT → stop services (drain, while
 * still heartbeating) → stop heartbeat → deregister → close the pool. Returns the exit code.
 */
import { hostname as osHostname } from 'node:os';
import type pg from 'pg';
import type { Config } from '../config/index.ts';
import { detectRuntimes, type DetectionResult } from '../detect/detect.ts';
import { workerRuntimesValue } from '../detect/report.ts';
import { baselineEnvironment } from '../execution/environment.ts';
import { EXIT } from '../exit-codes.ts';
import { createLogger, type Logger } from '../observe/logger.ts';
import { AGENT_VERSION } from '../version.ts';
import { createPool, dbError, poolTarget, verifyDatabase } from '../db/pool.ts';
import { formatTarget } from '../db/errors.ts';
import { registerDetectedRuntimes } from '../db/runtimes.ts';
import { buildCapabilities, deregisterWorker, registerWorker, resolveWorkerName, type RegisteredWorker } from '../db/registration.ts';
import { recoverInterruptedExecutions, type RecoveredExecution } from '../db/recovery.ts';
import { Heartbeat } from '../db/heartbeat.ts';

export interface AgentContext {
  config: Readonly<Config>;
  log: Logger;
  pool: pg.Pool;
  env: Record<string, string | undefined>;
  detection: DetectionResult;
  worker: RegisteredWorker;
  /** Executions finished at start-up (running → failed, canceling → cancelled): publish their messages. */
  recovered: RecoveredExecution[];
  heartbeat: Heartbeat;
}

/** A part of the agent started after registration and stopped (drained) before deregistration. */
export interface AgentService {
  name: string;
  start(ctx: AgentContext): Promise<void>;
  /** Called once per started service, in reverse order; the heartbeat keeps beating meanwhile. */
  stop(ctx: AgentContext, reason: string): Promise<void>;
}

export interface RunOptions {
  services?: readonly AgentService[];
  /** Default process.env; ATTUNE_WORKER_RUNTIMES is set in it when unset (contract §1.4 step 5). */
  env?: Record<string, string | undefined>;
  hostname?: string;
  log?: Logger;
  /** In-process shutdown trigger (tests); the process signals SIGTERM/SIGINT always work. */
  shutdown?: AbortSignal;
}

export async function runAgent(config: Readonly<Config>, opts: RunOptions = {}): Promise<number> {
  const env = opts.env ?? process.env;
  const hostname = opts.hostname ?? osHostname();
  let log = opts.log ?? createLogger(config.log.level);
  // Listen from the very start: a SIGTERM during start-up must not kill the agent half-registered.
  const shutdown = waitForShutdown(log, opts.shutdown);
  try {
    const detection = await detect(config, env, log);

    const pool = createPool(config.database, { log });
    const target = poolTarget(pool)!;
    try {
      await verifyDatabase(pool, config.database.schema);
    } catch (e) {
      const err = dbError(pool, e);
      log.error({ err: err.message, retryable: err.retryable }, 'cannot use the Attune database; exiting');
      await pool.end();
      return EXIT.STARTUP;
    }
    log.info({ database: `${formatTarget(target)}/${target.database}`, user: target.user, schema: config.database.schema }, 'database ready');

    if (shutdown.requested()) {
      log.info('shutdown requested during start-up; exiting before registration');
      await pool.end();
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
      await pool.end();
      return EXIT.STARTUP;
    }
    log = log.child({ worker_id: worker.id, worker_name: worker.name });
    log.info({ inserted: worker.inserted, runtimes: (worker.capabilities as { runtimes?: unknown } | null)?.runtimes }, worker.inserted ? 'registered new worker' : 'registered worker (existing row re-activated)');
    if (worker.cordoned) log.warn({ reason: worker.cordon_reason }, 'this worker is cordoned by an operator: Attune will not schedule executions on it until uncordoned');

    let recovered: RecoveredExecution[] = [];
    try {
      recovered = await recoverInterruptedExecutions(pool, worker);
      for (const r of recovered) log.warn({ execution_id: r.id, action_ref: r.action_ref, status: r.status }, 'finished an execution left in flight by a previous run of this worker');
    } catch (e) {
      log.error({ err: dbError(pool, e, 'recovering interrupted executions').message }, 'could not recover executions left running; continuing');
    }

    const heartbeat = new Heartbeat({
      db: pool, workerId: worker.id, intervalMs: config.worker.heartbeatIntervalMs, log,
      describeError: (e) => dbError(pool, e).message,
    });
    heartbeat.start();

    const ctx: AgentContext = { config, log, pool, env, detection, worker, recovered, heartbeat };
    const started: AgentService[] = [];
    let code: number = EXIT.OK;
    let reason: string;
    try {
      for (const s of opts.services ?? []) {
        await s.start(ctx);
        started.push(s);
      }
      log.info('worker running; waiting for SIGTERM/SIGINT');
      reason = await shutdown.promise;
    } catch (e) {
      log.error({ err: e instanceof Error ? e.message : String(e) }, 'start-up failed; stopping');
      code = EXIT.STARTUP;
      reason = 'startup failure';
    }
    log.info({ reason }, 'shutting down');
    for (const s of started.reverse()) {
      try {
        await s.stop(ctx, reason);
      } catch (e) {
        log.error({ service: s.name, err: e instanceof Error ? e.message : String(e) }, 'service did not stop cleanly');
      }
    }
    await heartbeat.stop();
    try {
      await deregisterWorker(pool, worker.id);
      log.info('worker deregistered (status inactive)');
    } catch (e) {
      log.error({ err: dbError(pool, e, 'deregistering').message }, 'could not mark the worker inactive; Attune will treat it as stale after 90 s');
    }
    await pool.end();
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

/** First SIGTERM/SIGINT (or the abort signal) resolves `promise`; later ones are only logged for now. */
function waitForShutdown(log: Logger, abort?: AbortSignal): { promise: Promise<string>; requested(): boolean; dispose(): void } {
  let resolve!: (reason: string) => void;
  const promise = new Promise<string>((r) => (resolve = r));
  let received = 0;
  let requested = false;
  const onSignal = (sig: NodeJS.Signals) => {
    received++;
    requested = true;
    if (received === 1) resolve(sig);
    else log.warn({ signal: sig }, 'already shutting down');
  };
  const onAbort = () => {
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
