/**
 * The agent's main job as an AgentService (started by lifecycle.ts once the worker is registered):
 * connect to RabbitMQ (worker queues declared), announce the executions recovered at start, and
 * consume dispatches and cancels into the ExecutionService. main.ts builds the parts.
 *
 * Stop order (the fix of docs/attune-compat.md §6): stop consuming first, drain running actions while the
 * heartbeat still beats, cancel what is left with reason `shutdown`, flush the publisher, close.
 */
import type { Logger } from 'pino';
import type { AgentContext, AgentService } from './lifecycle.ts';
import type { ExecutionService } from './service.ts';
import type { IdleTrimmer } from './idle-trim.ts';
import type { MqConnection } from '../mq/connection.ts';
import type { ConfirmPublisher } from '../mq/publisher.ts';
import type { QueueConsumer } from '../mq/consumer.ts';
import type { ResultSpool } from './result-spool.ts';

/** What this service does with a queue consumer (mq/consumer.ts). */
type Consumer = Pick<QueueConsumer<unknown>, 'start' | 'cancel' | 'close' | 'consuming'>;

export interface ExecutionsParts {
  /** The broker connection, its worker topology already added as a setup hook. */
  connection: MqConnection;
  publisher: ConfirmPublisher;
  service: ExecutionService;
  executions: Consumer;
  cancels: Consumer;
  /** Null when idle trimming is off. */
  trimmer: IdleTrimmer | null;
  /** The result spool the service replays (worker/result-spool.ts); absent in tests without one. */
  spool?: ResultSpool;
  /** `worker.{id}.packs` and `.packtests` (worker/pack-events.ts, pack-tests.ts); absent in tests without them. */
  packConsumers?: Consumer[];
}

export class ExecutionsAgentService implements AgentService {
  readonly name = 'executions';
  readonly #p: ExecutionsParts;

  constructor(parts: ExecutionsParts) {
    this.#p = parts;
  }

  async start(ctx: AgentContext): Promise<void> {
    const { config, log } = ctx;
    const { connection, service } = this.#p;
    // The first connect (and the per-worker queue declaration) must succeed: fail loudly and early.
    await connection.start({ retryWindowMs: config.database.connectTimeoutMs });
    log.info({ broker: connection.safeUrl }, 'connected to RabbitMQ; worker queues declared');
    service.announceRecovered(ctx.recovered);
    // Results kept by an earlier run (this agent's, or another agent's on the same volume): written
    // and announced before new work; what the database does not take yet is retried every 5 s.
    if (this.#p.spool) {
      const left = await service.startSpoolReplay();
      log.info({ spool_dir: this.#p.spool.path, kept: left }, left > 0 ? `result spool: ${left} results wait for the database` : 'result spool checked');
    }
    await this.#p.executions.start();
    await this.#p.cancels.start();
    for (const c of this.#p.packConsumers ?? []) await c.start();
    log.info({ max_concurrent_tasks: config.worker.maxConcurrentTasks }, 'consuming execution dispatches');
    this.#p.trimmer?.touch(); // start-up's one-off memory goes back once nothing happens
  }

  /** Stop consuming, drain, cancel leftovers as `shutdown`, flush messages, close the broker link. */
  async stop(ctx: AgentContext, reason: string): Promise<void> {
    const { config, log } = ctx;
    const { service, executions, cancels, publisher, connection } = this.#p;
    this.#p.trimmer?.stop();
    // Before any await: a dispatch delivered from here on (prefetched, or in flight while the
    // basic.cancel travels) is handed back (nack, requeue), never claimed.
    service.startDrain();
    await executions.cancel().catch((e: Error) => log.warn({ err: e.message }, 'could not cancel the executions consumer'));
    if (service.running > 0) log.info({ running: service.running, timeout_ms: config.worker.shutdownTimeoutMs, reason }, 'draining: waiting for running actions');
    const drained = await service.waitIdle(config.worker.shutdownTimeoutMs);
    if (!drained) {
      const n = service.cancelAll('shutdown');
      log.warn({ cancelled: n }, 'shutdown timeout reached: cancelling the actions still running');
      await service.waitIdle(config.worker.killGracePeriodMs + 10_000);
    }
    await cancels.close().catch(() => undefined);
    for (const c of this.#p.packConsumers ?? []) await c.close().catch(() => undefined);
    await executions.close().catch(() => undefined);
    service.stopSpoolReplay();
    const kept = this.#p.spool ? await service.replaySpool().catch(() => this.#p.spool!.size) : 0;
    if (kept > 0) log.warn({ spool_dir: this.#p.spool!.path, kept }, `result spool: ${kept} results still wait for the database; the next agent on this volume writes them`);
    await flushAndClose(publisher, log);
    await this.#p.spool?.close();
    await connection.close();
  }

  /** Second signal: cancel every running action now (reason `shutdown`). */
  hurry(ctx: AgentContext): void {
    const n = this.#p.service.cancelAll('shutdown');
    ctx.log.warn({ cancelled: n }, 'cancelling the running actions now (second signal)');
  }

  /** /readyz: connected to RabbitMQ and subscribed to the executions queue. */
  health(): Record<string, boolean> {
    return { broker: this.#p.connection.state === 'connected', consuming: this.#p.executions.consuming };
  }
}

async function flushAndClose(publisher: ConfirmPublisher, log: Logger): Promise<void> {
  const flushed = await publisher.flush(10_000);
  if (!flushed) log.error({ pending: publisher.pending }, 'LOST MESSAGES: status messages still unconfirmed at shutdown');
  await publisher.close();
}
