/**
 * The agent's main job as an AgentService (plugged into run.ts after registration): RabbitMQ
 * connection + topology, the executions and cancel consumers, the confirm publisher, and the
 * ExecutionService wired to PostgreSQL and the process runner.
 *
 * Stop order (the fix of contract §6): stop consuming first, drain running actions while the
 * heartbeat still beats, cancel what is left with reason `shutdown`, flush the publisher, close.
 */
import type pg from 'pg';
import type { Logger } from 'pino';
import type { AgentContext, AgentService } from './run.ts';
import { ExecutionService, type ActionRunner, type ExecutionStore } from './service.ts';
import { MqConnection } from '../mq/connection.ts';
import { workerTopologySetup } from '../mq/topology.ts';
import { ConfirmPublisher } from '../mq/publisher.ts';
import { IdleTrimmer, IDLE_TRIM_ENV } from './idle-trim.ts';
import { keepLargeAllocationsMapped } from '../native/memory.ts';
import { createStatusPublisher } from '../mq/status-publisher.ts';
import { createCancelConsumer, createExecutionsConsumer } from '../mq/worker-consumers.ts';
import type { QueueConsumer } from '../mq/consumer.ts';
import { loadAction, loadActionContext, loadEnforcement, listRuntimeVersions, loadExecution, loadRuntime, claimWithContext, writeTerminal, type ActionContext, type ClaimWithContext } from '../db/executions.ts';
import { DbAvailability, dbError } from '../db/pool.ts';
import type { StoredSecretValue } from '../model.ts';
import { runAction, type RunActionState } from './run-action.ts';
import { cancelReasonOf, cancelledResult } from '../execution/cancel.ts';
import { Backoff } from '../backoff.ts';
import { baselineEnvironment } from '../execution/environment.ts';
import type { ActionRow, ExecutionRow } from '../model.ts';
import { formatTimestamp } from '../protocol/envelope.ts';

export interface ExecutionsServiceHooks {
  /** Observability (metrics) hook: called for every execution that ends or is skipped. */
  onFinished?: (e: { executionId: number; status: string; durationMs?: number }) => void;
}

export class ExecutionsAgentService implements AgentService {
  readonly name = 'executions';
  readonly #hooks: ExecutionsServiceHooks;
  #connection: MqConnection | null = null;
  #publisher: ConfirmPublisher | null = null;
  #executions: QueueConsumer<unknown> | null = null;
  #cancels: QueueConsumer<unknown> | null = null;
  #service: ExecutionService | null = null;
  #trimmer: IdleTrimmer | null = null;

  constructor(hooks: ExecutionsServiceHooks = {}) {
    this.#hooks = hooks;
  }

  get service(): ExecutionService | null {
    return this.#service;
  }

  get connection(): MqConnection | null {
    return this.#connection;
  }

  async start(ctx: AgentContext): Promise<void> {
    const { config, worker, log } = ctx;
    const connection = new MqConnection({ url: config.messageQueue.url, logger: log, connectionName: `attune-agent ${worker.name}` });
    connection.addSetup(workerTopologySetup(worker.id, log));
    this.#connection = connection;
    // The first connect (and the per-worker queue declaration) must succeed: fail loudly and early.
    await connection.start({ retryWindowMs: config.database.connectTimeoutMs });
    log.info({ broker: connection.safeUrl }, 'connected to RabbitMQ; worker queues declared');

    const publisher = new ConfirmPublisher({ connection, logger: log });
    this.#publisher = publisher;
    const statusPublisher = createStatusPublisher(publisher, log);
    publishRecovered(ctx, statusPublisher);

    const baselineEnv = baselineEnvironment(ctx.env, config.worker.passthroughEnv);
    const verifiedReleases = new Set<string>();
    const runState: RunActionState = {
      schema: ctx.schema, retentionPolicy: ctx.config.worker.logRetentionPolicy, retentionLimit: ctx.config.worker.logRetentionLimit,
      encryptionKey: ctx.config.security.encryptionKey,
    };
    const dbAvailability = new DbAvailability(ctx.pool, { heartbeat: () => ctx.heartbeat.state() });
    const retry = retryingWrite(ctx.pool, config.worker.dbRetryWindowMs, log, dbAvailability);
    const runner: ActionRunner = {
      run: (execution, signal, runLog, prefetched) =>
        runExecution(ctx.pool, execution, signal, runLog, { ctx, baselineEnv, verifiedReleases, retry, runState, prefetched: prefetched as Prefetched | undefined }),
    };
    const service = new ExecutionService({
      store: pgExecutionStore(ctx.pool, log, runState),
      runner,
      publisher: statusPublisher,
      logger: log,
      maxConcurrentTasks: config.worker.maxConcurrentTasks,
      retryWrite: retry,
      onFinished: (e) => {
        ctx.metrics?.executionFinished(e);
        this.#hooks.onFinished?.(e);
        this.#trimmer?.touch();
      },
    });
    this.#service = service;
    if (ctx.env[IDLE_TRIM_ENV] !== 'off') {
      keepLargeAllocationsMapped();
      this.#trimmer = new IdleTrimmer({ isIdle: () => service.running === 0, log });
    }

    // While the database is known to be down a dispatch is held unacked (then requeued), never acked and dropped.
    const holdWhileDbDown = databaseGate(dbAvailability, config.worker.dbRetryWindowMs, () => this.#executions?.cancelled !== true, log);
    this.#executions = createExecutionsConsumer(connection, worker.id, config.worker.maxConcurrentTasks, async (p) => ((await holdWhileDbDown(p.execution_id)) ? service.onDispatch(p) : 'nack-requeue'), log) as QueueConsumer<unknown>;
    this.#cancels = createCancelConsumer(connection, worker.id, (p) => service.onCancel(p.execution_id), log) as QueueConsumer<unknown>;
    // Metrics (only when the health listener is on): live gauges read at scrape time, reconnects.
    ctx.metrics?.watch({
      running: () => service.running,
      permitsInUse: () => service.permits.inUse,
      permitsTotal: () => service.permits.size,
      brokerUp: () => connection.state === 'connected',
    });
    connection.on('connected', () => ctx.metrics?.brokerReconnected());
    await this.#executions.start();
    await this.#cancels.start();
    log.info({ max_concurrent_tasks: config.worker.maxConcurrentTasks }, 'consuming execution dispatches');
    this.#trimmer?.touch(); // start-up's one-off memory goes back once nothing happens
  }

  /** Stop consuming, drain, cancel leftovers as `shutdown`, flush messages, close the broker link. */
  async stop(ctx: AgentContext, reason: string): Promise<void> {
    const { config, log } = ctx;
    this.#trimmer?.stop();
    const service = this.#service;
    // Before any await: a dispatch delivered from here on (prefetched, or in flight while the
    // basic.cancel travels) is handed back (nack, requeue), never claimed.
    service?.startDrain();
    await this.#executions?.cancel().catch((e: Error) => log.warn({ err: e.message }, 'could not cancel the executions consumer'));
    if (service) {
      if (service.running > 0) log.info({ running: service.running, timeout_ms: config.worker.shutdownTimeoutMs, reason }, 'draining: waiting for running actions');
      const drained = await service.waitIdle(config.worker.shutdownTimeoutMs);
      if (!drained) {
        const n = service.cancelAll('shutdown');
        log.warn({ cancelled: n }, 'shutdown timeout reached: cancelling the actions still running');
        await service.waitIdle(config.worker.killGracePeriodMs + 10_000);
      }
    }
    await this.#cancels?.close().catch(() => undefined);
    await this.#executions?.close().catch(() => undefined);
    if (this.#publisher) {
      const flushed = await this.#publisher.flush(10_000);
      if (!flushed) log.error({ pending: this.#publisher.pending }, 'LOST MESSAGES: status messages still unconfirmed at shutdown');
      await this.#publisher.close();
    }
    await this.#connection?.close();
  }

  /** Second signal: cancel every running action now (reason `shutdown`). */
  cancelRunning(): number {
    return this.#service?.cancelAll('shutdown') ?? 0;
  }

  hurry(ctx: AgentContext): void {
    const n = this.cancelRunning();
    ctx.log.warn({ cancelled: n }, 'cancelling the running actions now (second signal)');
  }

  /** /readyz: connected to RabbitMQ and subscribed to the executions queue. */
  health(): Record<string, boolean> {
    return { broker: this.#connection?.state === 'connected', consuming: this.#executions?.consuming === true };
  }
}

function pgExecutionStore(pool: pg.Pool, log: Logger, state: RunActionState): ExecutionStore {
  // Ids whose `running` claim failed in flight: the UPDATE may have committed with its answer lost.
  const unsure = new Set<number>();
  return {
    loadExecution: (id) => loadExecution(pool, id),
    claim: async (id, release) => {
      let r: ClaimWithContext | null;
      try {
        r = await claimWithContext(pool, id, release, state.schema.secretValues);
      } catch (e) {
        unsure.add(id);
        throw e;
      }
      // A retry that finds the row `running` after an attempt whose answer was lost: that attempt
      // was ours (this process is the only one handling the id), so the claim stands.
      const wasUnsure = unsure.delete(id);
      if (unsure.size > 10_000) unsure.clear(); // only claims given up on stay behind
      if (!r) return null;
      const prefetched: Prefetched = { context: r.context, secrets: r.secrets };
      if (wasUnsure && !r.claimed && r.execution.status === 'running') {
        log.warn({ execution_id: id }, `execution ${id}: the running claim committed before the database connection was lost; continuing with it`);
        return { execution: r.execution, claimed: true, previous: null, prefetched };
      }
      return { execution: r.execution, claimed: r.claimed, previous: r.execution.status, prefetched };
    },
    writeTerminal: async (id, status, result) => {
      const w = await writeTerminal(pool, id, status, result);
      if (!w) throw new Error(`execution ${id} disappeared before its ${status} result could be written`);
      return { action: w.action, action_ref: w.action_ref, result: w.result };
    },
  };
}

/**
 * Database writes survive outages shorter than `worker.db_retry_window`: retryable failures are
 * retried with capped exponential backoff until the window (counted from the first failure) is
 * over. Giving up is logged here with the execution id; the caller logs what is lost.
 */
function retryingWrite(pool: pg.Pool, windowMs: number, log: Logger, availability?: DbAvailability) {
  return async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
    let deadline = 0;
    const backoff = new Backoff({ initialMs: 250, maxMs: 5_000, jitter: false });
    let failures = 0;
    const executionId = /execution (\d+)/.exec(what)?.[1];
    const fields = executionId === undefined ? {} : { execution_id: Number(executionId) };
    for (;;) {
      try {
        const v = await fn();
        availability?.markUp();
        if (failures > 0) log.info({ ...fields, attempts: failures + 1 }, `database back: ${what} succeeded`);
        return v;
      } catch (e) {
        const err = dbError(pool, e, what);
        if (!err.retryable) throw err;
        availability?.markDown();
        failures++;
        if (failures === 1) deadline = Date.now() + windowMs;
        const delay = backoff.next();
        if (Date.now() + delay > deadline) {
          log.error({ ...fields, err: err.message, attempts: failures, retry_window_ms: windowMs }, `database unreachable for longer than worker.db_retry_window: giving up on ${what}`);
          throw err;
        }
        if (failures === 1) log.warn({ ...fields, err: err.message, retry_window_ms: windowMs }, `database unavailable: retrying ${what}`);
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  };
}

/**
 * Dispatch admission while the database is away: a dispatch is held (not acked, so RabbitMQ keeps it
 * and the rest of the prefetch waits behind it) until the database answers again. After
 * max(db_retry_window, 1 s) — capped at 20 min, below RabbitMQ's 30 min consumer timeout — it goes
 * back to the queue (nack, requeue). A drain (consumer cancelled) ends the hold: the dispatch is handed back.
 */
function databaseGate(availability: DbAvailability, windowMs: number, active: () => boolean, log: Logger) {
  const holdMs = Math.min(Math.max(windowMs, 1_000), 20 * 60_000);
  return async (executionId: number): Promise<boolean> => {
    if (!availability.down) return true;
    log.warn({ execution_id: executionId, hold_ms: holdMs }, `database unreachable: holding dispatch of execution ${executionId} (not acked) until it is back`);
    const up = await availability.waitUp(holdMs, { stop: () => !active() });
    if (up) {
      log.info({ execution_id: executionId }, `database reachable again: taking execution ${executionId}`);
      return true;
    }
    log.warn({ execution_id: executionId }, `database still unreachable: dispatch of execution ${executionId} handed back to the queue (nack, requeue)`);
    return false;
  };
}

interface RunDeps {
  ctx: AgentContext;
  baselineEnv: Record<string, string>;
  verifiedReleases: Set<string>;
  runState: RunActionState;
  prefetched?: Prefetched;
}

/**
 * What the claim statement read along for the run (db/executions.ts claimWithContext): the action
 * context of the execution's action and its stored secret parameters (null: not read, the schema
 * has no execution_secret_value table).
 */
interface Prefetched {
  context: ActionContext | null;
  secrets: StoredSecretValue[] | null;
}

async function runExecution(
  pool: pg.Pool,
  execution: ExecutionRow,
  signal: AbortSignal,
  log: Logger,
  deps: RunDeps & { retry: ReturnType<typeof retryingWrite> },
): ReturnType<ActionRunner['run']> {
  // Reads before the start survive a database blip like the writes do (within worker.db_retry_window);
  // a cancel (or shutdown) stops the retrying at the next attempt.
  const read = <T>(what: string, fn: () => Promise<T>): Promise<T> =>
    deps.retry(`${what} of execution ${execution.id}`, () => (signal.aborted ? Promise.reject(new Error('cancelled before the action started')) : fn()));
  try {
    return await loadAndRun(pool, execution, signal, log, deps, read);
  } catch (e) {
    if (!signal.aborted) throw e;
    return { status: 'cancelled', result: cancelledResult(cancelReasonOf(signal)) };
  }
}

async function loadAndRun(
  pool: pg.Pool,
  execution: ExecutionRow,
  signal: AbortSignal,
  log: Logger,
  deps: RunDeps,
  read: <T>(what: string, fn: () => Promise<T>) => Promise<T>,
): ReturnType<ActionRunner['run']> {
  const snapshot = execution.executable_snapshot?.executable ?? null;
  if (!snapshot?.action && !snapshot?.runtime && !snapshot?.runtime_versions?.length) return runWithRows(pool, execution, signal, log, deps, read);
  const action: ActionRow | null = snapshot?.action ?? (await read('load the action', () => loadAction(pool, { id: execution.action, ref: execution.action_ref })));
  if (!action) {
    return { status: 'failed', result: { succeeded: false, error: `Action execution failed: action ${execution.action_ref} (id ${execution.action ?? 'none'}) not found in the database; was the pack uninstalled? Reinstall the pack and re-run.` } };
  }
  // Independent reads, issued together: one round trip of waiting instead of three per execution.
  const runtimeId = snapshot?.runtime?.id ?? action.runtime ?? null;
  const [runtime, versions, enforcement] = await Promise.all([
    snapshot?.runtime ?? (action.runtime != null ? read('load the runtime', () => loadRuntime(pool, action.runtime!)) : null),
    snapshot?.runtime_versions?.length ? snapshot.runtime_versions : runtimeId != null ? read('list runtime versions', () => listRuntimeVersions(pool, runtimeId)) : [],
    execution.enforcement != null ? read('load the enforcement', () => loadEnforcement(pool, execution.enforcement!)) : null,
  ]);
  const runtimeVersions = snapshot?.runtime_versions?.length || runtime ? versions : [];
  return runAction(pool, {
    execution, action, runtime, runtimeVersions, enforcement,
    config: deps.ctx.config,
    detected: deps.ctx.detection.selected,
    baselineEnv: deps.baselineEnv,
    signal,
    logger: log,
    verifiedReleases: deps.verifiedReleases,
  }, deps.runState, log, deps.prefetched?.secrets ?? undefined);
}

/**
 * No snapshot (the common case): the action, its runtime and versions were read by the claim
 * (else they come from ONE query, loadActionContext); the enforcement is read meanwhile.
 */
async function runWithRows(
  pool: pg.Pool,
  execution: ExecutionRow,
  signal: AbortSignal,
  log: Logger,
  deps: RunDeps,
  read: <T>(what: string, fn: () => Promise<T>) => Promise<T>,
): ReturnType<ActionRunner['run']> {
  const key = { id: execution.action, ref: execution.action_ref };
  const [rows, enforcement] = await Promise.all([
    deps.prefetched ? deps.prefetched.context : read('load the action', () => loadActionContext(pool, key)),
    execution.enforcement != null ? read('load the enforcement', () => loadEnforcement(pool, execution.enforcement!)) : null,
  ]);
  // As read() does: a cancel that came meanwhile ends the run here, before log versions are allocated.
  if (signal.aborted) throw new Error('cancelled before the action started');
  if (!rows) {
    return { status: 'failed', result: { succeeded: false, error: `Action execution failed: action ${execution.action_ref} (id ${execution.action ?? 'none'}) not found in the database; was the pack uninstalled? Reinstall the pack and re-run.` } };
  }
  return runAction(pool, {
    execution, action: rows.action, runtime: rows.runtime, runtimeVersions: rows.runtimeVersions, enforcement,
    config: deps.ctx.config,
    detected: deps.ctx.detection.selected,
    baselineEnv: deps.baselineEnv,
    signal,
    logger: log,
    verifiedReleases: deps.verifiedReleases,
  }, deps.runState, log, deps.prefetched?.secrets ?? undefined);
}

function publishRecovered(ctx: AgentContext, publisher: ReturnType<typeof createStatusPublisher>): void {
  const at = formatTimestamp(new Date());
  for (const r of ctx.recovered) {
    publisher.statusChanged({ execution_id: r.id, action_ref: r.action_ref, previous_status: r.previous_status, new_status: r.status, changed_at: at });
    if (r.action != null) {
      publisher.completed({ execution_id: r.id, action_id: r.action, action_ref: r.action_ref, status: r.status, result: r.result, completed_at: at });
    }
  }
}
