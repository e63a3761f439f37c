/**
 * Composition root: argv → config → adapters → run. The ONLY place that exits (codes: exit-codes.ts).
 * Everything past the command line is imported lazily: `--version` must not evaluate config (yaml),
 * detection, pg or amqplib (bench/: evaluating them eagerly cost ~10 ms of a ~70 ms start).
 */
import { writeSync } from 'node:fs';
import './native/launcher.ts'; // first: takes the launcher's variables out of the environment
import { takeEnvironment } from './native/env-handoff.ts';
import { parseCommandLine } from './cli.ts';
import { EXIT } from './exit-codes.ts';
import { AGENT_BINARY_NAME, AGENT_VERSION } from './version.ts';
import type { Config } from './config/index.ts';

async function main(argv: readonly string[]): Promise<number> {
  // Under the tini re-exec (native/pid1.ts) the environment comes through a pipe, not from tini.
  const handoffWarning = takeEnvironment(process.env);
  const cmd = parseCommandLine(argv);
  if (cmd.kind === 'exit') {
    // `--version`, `--help`, usage errors: written with write(2), not process.stdout, whose first
    // use loads Node's stream modules (~8 ms of a ~40 ms `--version`); nothing else is pending.
    writeAllSync(cmd.stream === 'stdout' ? 1 : 2, cmd.output);
    process.exit(cmd.code);
  }
  // Contract §1.1: the agent marks itself before anything else; these reach `capabilities`.
  process.env.ATTUNE_AGENT_MODE = 'true';
  process.env.ATTUNE_AGENT_BINARY_NAME = AGENT_BINARY_NAME;
  process.env.ATTUNE_AGENT_BINARY_VERSION = AGENT_VERSION;
  if ('config' in cmd && cmd.config !== undefined) process.env.ATTUNE_CONFIG = cmd.config;

  if (cmd.kind === 'install') {
    const { installAgent } = await import('./install.ts');
    return installAgent({ targetDir: cmd.dir, source: cmd.source });
  }

  const { loadConfig, loadDetectConfig, ConfigError } = await import('./config/index.ts');
  const configInput = {
    env: process.env,
    cwd: process.cwd(),
    flags: { config: cmd.config, name: cmd.kind === 'run' ? cmd.name : undefined },
  };
  const configured = <T>(load: () => T): T | number => {
    try {
      return load();
    } catch (e) {
      if (e instanceof ConfigError) {
        process.stderr.write(`attune-agent: configuration error: ${e.message}\n`);
        return EXIT.CONFIG;
      }
      throw e;
    }
  };

  if (cmd.kind === 'detect') {
    const detectConfig = configured(() => loadDetectConfig(configInput));
    if (typeof detectConfig === 'number') return detectConfig;
    const [{ detectRuntimes }, { formatTextReport, jsonReport }, { baselineEnvironment }] = await Promise.all([
      import('./detect/detect.ts'),
      import('./detect/report.ts'),
      import('./execution/environment.ts'),
    ]);
    const result = await detectRuntimes({
      env: baselineEnvironment(process.env, detectConfig.passthroughEnv),
      probeTimeoutMs: detectConfig.probeTimeoutMs,
      filter: detectConfig.runtimes,
    });
    process.stdout.write(cmd.json ? JSON.stringify(jsonReport(result), null, 2) + '\n' : formatTextReport(result, process.env.ATTUNE_WORKER_RUNTIMES));
    return EXIT.OK;
  }

  const config = configured(() => loadConfig(configInput));
  if (typeof config === 'number') return config;

  // PID 1 (container entrypoint): become `tini -s -g -- attune-agent …` so orphans are reaped (native/pid1.ts).
  const warnings: string[] = [...config.warnings, ...(handoffWarning ? [handoffWarning] : [])];
  if (process.pid === 1) {
    const { ensureInit } = await import('./native/pid1.ts');
    const w = ensureInit(argv);
    if (w) warnings.push(w);
  }
  // Every credential is read: from here on no action (same uid) can reach them (native/harden.ts).
  const { hardenProcess } = await import('./native/harden.ts');
  const hardened = hardenProcess();
  if (!hardened.ok) warnings.push(hardened.warning);
  const { pipesStatus } = await import('./native/addon.ts');
  const pipes = pipesStatus();
  if (!pipes.available) {
    warnings.push(`actions get socket pairs, not pipes, as stdin/stdout/stderr (${pipes.reason}): ` +
      'an action that opens /dev/stdout, /dev/stderr or /dev/stdin by path fails with ENXIO; ship lib/attune-pipes.node beside the executable');
  }
  return composeWorker(config, warnings);
}

/**
 * The worker: every adapter built here and handed to the pieces as their ports. The pool and the
 * health listener exist from the start; what needs the registered worker (its queues, the
 * execution service) is built when lifecycle.ts has registered it.
 */
async function composeWorker(config: Readonly<Config>, warnings: readonly string[]): Promise<number> {
  const [
    { hostname }, { createLogger }, { HealthServer }, { createMetrics }, { createPool, DbAvailability }, { retryingDatabase },
    { pgExecutionStore, pgLogArtifacts, pgSecretValues }, { MqConnection }, { workerTopologySetup }, { ConfirmPublisher },
    { createStatusPublisher }, { createCancelConsumer, createExecutionsConsumer, createPackTestsConsumer, createPacksConsumer }, { baselineEnvironment }, { keepLargeAllocationsMapped },
    { runWorker }, { ExecutionService }, { runExecution }, { databaseGate, dispatchHoldMs }, { IdleTrimmer, IDLE_TRIM_ENV }, { ExecutionsAgentService }, { RuntimeEnvironments },
    { ResultSpool }, { writeSpooledTerminal }, { PackEvents }, { PackTests, cleanupStalePackTestAttempts, ATTEMPTS_DIR }, { loadRuntimesByName, loadRuntimeByRef, refreshRuntimeVersionsCapability }, packInstalls,
    { normalizeRuntimeName }, { runtimeVersions },
  ] = await Promise.all([
    import('node:os'), import('./observe/logger.ts'), import('./observe/health.ts'), import('./observe/metrics.ts'), import('./db/pool.ts'), import('./db/retry.ts'),
    import('./db/execution-store.ts'), import('./mq/connection.ts'), import('./mq/topology.ts'), import('./mq/publisher.ts'),
    import('./mq/status-publisher.ts'), import('./mq/worker-consumers.ts'), import('./execution/environment.ts'), import('./native/memory.ts'),
    import('./worker/lifecycle.ts'), import('./worker/service.ts'), import('./worker/run-execution.ts'), import('./worker/dispatch-gate.ts'), import('./worker/idle-trim.ts'), import('./worker/executions-service.ts'), import('./execution/environments.ts'),
    import('./worker/result-spool.ts'), import('./db/executions.ts'), import('./worker/pack-events.ts'), import('./worker/pack-tests.ts'),
    import('./db/pack-runtimes.ts'), import('./db/pack-installs.ts'),
    import('./runtimes.ts'), import('./db/capabilities.ts'),
  ]);
  const w = config.worker;
  const log = createLogger(config.log.level);
  const metrics = w.healthPort > 0 ? await createMetrics() : null;
  const health = w.healthPort > 0 ? new HealthServer({ host: w.healthHost, port: w.healthPort, log, metrics }) : null;
  const pool = createPool(config.database, { log });
  try {
    return await runWorker(config, {
      log, env: process.env, hostname: hostname(), pool, health, metrics, startupWarnings: warnings,
      // Third signal: exit at once (lifecycle.ts has already SIGKILLed the actions' process groups).
      exitNow: (code) => process.exit(code),
      services(ctx) {
        const { worker, schema } = ctx;
        const runLog = ctx.log;
        const connection = new MqConnection({ url: config.messageQueue.url, logger: runLog, connectionName: `attune-agent ${worker.name}` });
        connection.addSetup(workerTopologySetup(worker.id, runLog, { includePackQueues: true }));
        const publisher = new ConfirmPublisher({ connection, logger: runLog, maxMessageBytes: config.messageQueue.maxMessageBytes });
        const availability = new DbAvailability(pool, { heartbeat: () => ctx.heartbeat.state() });
        // What every child of the agent starts from (actions, set-up commands, pack test runners).
        const baselineEnv = baselineEnvironment(ctx.env, w.passthroughEnv);
        const environments = new RuntimeEnvironments({ setupTimeoutMs: w.envSetupTimeoutMs, baselineEnv });
        // What set-ups killed with an earlier run of this (or another) agent left under runtime_envs_dir; in the background.
        void environments.sweep(config.runtimeEnvsDir, runLog);
        const runDeps = {
          config, detected: ctx.detection.selected, baselineEnv, verifiedReleases: new Set<string>(),
          environments,
          logArtifacts: schema.logArtifacts ? pgLogArtifacts(pool) : null,
          secretValues: schema.secretValues ? pgSecretValues(pool) : null,
        };
        let trimmer: InstanceType<typeof IdleTrimmer> | null = null;
        const spool = new ResultSpool({ dir: w.resultSpoolDir, maxFiles: w.resultSpoolMaxFiles, maxBytes: w.resultSpoolMaxBytes, agent: worker.name, log: runLog });
        const service = new ExecutionService({
          store: pgExecutionStore(pool, schema, runLog),
          run: (claim, signal, log) => runExecution(claim, signal, log, runDeps),
          publisher: createStatusPublisher(publisher, runLog, { maxMessageBytes: config.messageQueue.maxMessageBytes }),
          logger: runLog,
          maxConcurrentTasks: w.maxConcurrentTasks,
          retry: retryingDatabase(pool, w.dbRetryWindowMs, runLog, availability),
          // A dispatch waits unacked for its claim: requeued before the queue's message TTL.
          claimRetry: retryingDatabase(pool, dispatchHoldMs(w.dbRetryWindowMs), runLog, availability),
          spool: { spool, write: (id, status, result) => writeSpooledTerminal(pool, id, status, result) },
          onFinished: (e) => {
            metrics?.executionFinished(e);
            trimmer?.touch();
          },
        });
        if (ctx.env[IDLE_TRIM_ENV] !== 'off') {
          keepLargeAllocationsMapped();
          trimmer = new IdleTrimmer({ isIdle: () => service.running === 0, log: runLog });
        }
        // While the database is known to be down a dispatch is held unacked (then requeued), never acked and dropped.
        const admit = databaseGate(availability, w.dbRetryWindowMs, () => !executions.cancelled, runLog);
        const executions = createExecutionsConsumer(connection, worker.id, w.maxConcurrentTasks,
          async (p, _env, d) => ((await admit(p.execution_id, d.receivedAt)) ? service.onDispatch(p) : 'nack-requeue'), runLog);
        const cancels = createCancelConsumer(connection, worker.id, (p) => service.onCancel(p.execution_id), runLog);
        // Pack events: environments made when a pack is registered, removed when it is deleted (worker/pack-events.ts).
        const packEvents = new PackEvents({
          config, detected: ctx.detection.selected, baselineEnv, environments, verifiedReleases: runDeps.verifiedReleases,
          loadRuntimes: (names) => loadRuntimesByName(pool, names), log: runLog,
          refreshRuntimeVersions: () => refreshRuntimeVersionsCapability(pool, worker.id,
            new Set(ctx.detection.selected.map((d) => normalizeRuntimeName(d.name))), runtimeVersions(ctx.detection.selected), baselineEnv),
        });
        // Pack tests run here (worker/pack-tests.ts); attempt data a killed agent left behind goes first.
        for (const root of [config.packsBaseDir, config.runtimeEnvsDir]) cleanupStalePackTestAttempts(`${root}/${ATTEMPTS_DIR}`, Date.now(), runLog);
        const packTests = new PackTests({
          workerId: worker.id, config, detected: ctx.detection.selected, baselineEnv, verifiedReleases: runDeps.verifiedReleases,
          environments, log: runLog,
          db: {
            findInstall: (id) => packInstalls.findPackInstall(pool, id),
            finishRunning: (id, f) => packInstalls.finishRunningPackInstall(pool, id, f),
            findPackIdByRef: (ref) => packInstalls.findPackIdByRef(pool, ref),
            insertTestExecution: (r) => packInstalls.insertPackTestExecution(pool, r),
            loadRuntimeByRef: (ref) => loadRuntimeByRef(pool, ref),
          },
        });
        const packConsumers = [
          createPacksConsumer(connection, worker.id, (env) => packEvents.onMessage(env), runLog),
          stoppingFirst(createPackTestsConsumer(connection, worker.id, (env, d) => packTests.onMessage(env, d), runLog), () => packTests.stop()),
        ];
        // Metrics (only when the health listener is on): live gauges read at scrape time, reconnects.
        metrics?.watch({
          running: () => service.running,
          permitsInUse: () => service.permits.inUse,
          permitsTotal: () => service.permits.size,
          brokerUp: () => connection.state === 'connected',
        });
        let connects = 0;
        connection.on('connected', () => {
          if (connects++ > 0) metrics?.brokerReconnected();
        });
        return [new ExecutionsAgentService({ connection, publisher, service, executions, cancels, trimmer, spool, packConsumers })];
      },
    });
  } finally {
    await pool.end();
    await health?.close();
  }
}

/**
 * A consumer whose close() stops deliveries, then runs `stop` (a running pack test suite is killed,
 * its message requeued), then closes.
 */
function stoppingFirst<C extends { cancel(): Promise<void>; close(): Promise<void> }>(consumer: C, stop: () => void): C {
  const close = consumer.close.bind(consumer);
  consumer.close = async () => {
    await consumer.cancel().catch(() => undefined);
    stop();
    await close();
  };
  return consumer;
}

main(process.argv.slice(2)).then(
  (code) => flushAndExit(code),
  (e: unknown) => {
    process.stderr.write(`attune-agent: internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    flushAndExit(EXIT.INTERNAL);
  },
);

function writeAllSync(fd: number, text: string): void {
  let rest = Buffer.from(text, 'utf8');
  while (rest.length > 0) {
    try {
      rest = rest.subarray(writeSync(fd, rest));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EAGAIN') continue; // a non-blocking pipe that is full: a few bytes, try again
      if (code === 'EPIPE') return; // the reader is gone (`attune-agent --version | head -c1`)
      throw e;
    }
  }
}

function flushAndExit(code: number): void {
  // Let stdout drain (pipes are async in Node) before exiting.
  if (process.stdout.writableLength === 0) process.exit(code);
  process.stdout.once('drain', () => process.exit(code));
}
