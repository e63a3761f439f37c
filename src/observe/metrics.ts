/**
 * Prometheus metrics (served on /metrics by health.ts when `worker.health_port` is set).
 *
 * prom-client is imported only here, and only by `createMetrics()` (dynamic import): with the
 * listener off (the default) it is never evaluated, and `--version` never pays for it.
 * Everything the agent records goes through the small `AgentMetrics` interface; the gauges that
 * mirror live state (running executions, permits, heartbeat age, broker/database up, draining) are
 * read when Prometheus scrapes, from the probes registered with `watch()`.
 */
import type { Registry } from 'prom-client';
import type { TerminalStatus } from '../model.ts';

/** How an execution ended here; `skipped`: a duplicate or unknown dispatch, not run. */
export type FinalStatus = TerminalStatus | 'skipped';

export interface ExecutionFinished {
  status: FinalStatus;
  /** Runtime name (`shell`, `python`, …); `unknown` when the run failed before one was chosen. */
  runtime?: string;
  durationMs?: number;
  stdoutTruncated?: boolean;
  stderrTruncated?: boolean;
}

/** Live values read at scrape time. Each returns undefined when not known (yet). */
export interface LiveProbes {
  running?: () => number | undefined;
  permitsInUse?: () => number | undefined;
  permitsTotal?: () => number | undefined;
  /** Seconds since the last successful heartbeat (since start while there was none). */
  heartbeatAgeSeconds?: () => number | undefined;
  brokerUp?: () => boolean | undefined;
  databaseUp?: () => boolean | undefined;
  draining?: () => boolean | undefined;
  ready?: () => boolean | undefined;
}

export interface AgentMetrics {
  executionFinished(e: ExecutionFinished): void;
  brokerReconnected(): void;
  /** Merge probes for the scrape-time gauges (later calls override earlier keys). */
  watch(probes: LiveProbes): void;
  /** Prometheus text exposition. */
  render(): Promise<{ contentType: string; body: string }>;
}

export const METRIC_PREFIX = 'attune_agent_';

/** Buckets (seconds) from a quick shell action to a long job. */
const DURATION_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600];

export async function createMetrics(): Promise<AgentMetrics> {
  const prom = await import('prom-client');
  const registry: Registry = new prom.Registry();
  prom.collectDefaultMetrics({ register: registry, prefix: METRIC_PREFIX });
  const probes: LiveProbes = {};
  const p = METRIC_PREFIX;

  const executions = new prom.Counter({
    name: `${p}executions_total`, help: 'Executions finished by this agent, by runtime and final status (skipped = duplicate/unknown dispatch not run).',
    labelNames: ['runtime', 'status'] as const, registers: [registry],
  });
  const duration = new prom.Histogram({
    name: `${p}execution_duration_seconds`, help: 'Action process run time (spawn to exit), by runtime and final status.',
    labelNames: ['runtime', 'status'] as const, buckets: DURATION_BUCKETS, registers: [registry],
  });
  const truncations = new prom.Counter({
    name: `${p}output_truncations_total`, help: 'Executions whose stdout or stderr exceeded worker.max_stdout_bytes / max_stderr_bytes.',
    labelNames: ['stream'] as const, registers: [registry],
  });
  const reconnects = new prom.Counter({ name: `${p}broker_reconnects_total`, help: 'Successful RabbitMQ reconnections after a lost connection.', registers: [registry] });
  truncations.inc({ stream: 'stdout' }, 0);
  truncations.inc({ stream: 'stderr' }, 0);
  reconnects.inc(0);

  const gauge = (name: string, help: string, read: () => number | boolean | undefined) =>
    new prom.Gauge({
      name: `${p}${name}`, help, registers: [registry],
      collect() {
        const v = read();
        // Not known yet (before the services started): 0 — nothing running, not connected. (prom-client
        // always exports an unlabelled gauge, and writes NaN as "Nan", which strict parsers refuse.)
        this.set(v === undefined ? 0 : typeof v === 'boolean' ? (v ? 1 : 0) : v);
      },
    });
  gauge('executions_running', 'Executions taken by this agent and not finished yet.', () => probes.running?.());
  gauge('permits_in_use', 'Concurrency permits held (running actions).', () => probes.permitsInUse?.());
  gauge('permits_total', 'Concurrency permits (worker.max_concurrent_tasks).', () => probes.permitsTotal?.());
  gauge('heartbeat_age_seconds', 'Seconds since the last successful heartbeat, or since start before the first one (Attune ignores workers above 90).', () => probes.heartbeatAgeSeconds?.());
  gauge('broker_up', '1 while connected to RabbitMQ.', () => probes.brokerUp?.());
  gauge('database_up', '1 while the last database contact (heartbeat) succeeded.', () => probes.databaseUp?.());
  gauge('draining', '1 after SIGTERM/SIGINT: no new dispatches are taken.', () => probes.draining?.());
  gauge('ready', '1 when /readyz answers 200.', () => probes.ready?.());

  return {
    executionFinished(e) {
      const l = { runtime: e.runtime ?? 'unknown', status: e.status };
      executions.inc(l);
      if (e.durationMs !== undefined && e.status !== 'skipped') duration.observe(l, e.durationMs / 1000);
      if (e.stdoutTruncated) truncations.inc({ stream: 'stdout' });
      if (e.stderrTruncated) truncations.inc({ stream: 'stderr' });
    },
    brokerReconnected() {
      reconnects.inc();
    },
    watch(more) {
      Object.assign(probes, more);
    },
    async render() {
      return { contentType: registry.contentType, body: await registry.metrics() };
    },
  };
}
