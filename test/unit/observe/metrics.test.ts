/** Prometheus metrics (observe/metrics.ts): what /metrics shows. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createMetrics } from '../../../src/observe/metrics.ts';

test('metrics: counters, histogram and scrape-time gauges in Prometheus text', async () => {
  const m = await createMetrics();
  m.watch({ running: () => 2, permitsTotal: () => 10, draining: () => false, heartbeatAgeSeconds: () => undefined });
  m.executionFinished({ status: 'completed', runtime: 'shell', durationMs: 30, stdoutTruncated: true });
  m.executionFinished({ status: 'failed', runtime: 'shell', durationMs: 2000 });
  m.executionFinished({ status: 'skipped' });
  m.brokerReconnected();
  const { body, contentType } = await m.render();
  assert.match(contentType, /^text\/plain/);
  for (const line of [
    'attune_agent_executions_total{runtime="shell",status="completed"} 1',
    'attune_agent_executions_total{runtime="shell",status="failed"} 1',
    'attune_agent_executions_total{runtime="unknown",status="skipped"} 1',
    'attune_agent_execution_duration_seconds_bucket{le="0.05",runtime="shell",status="completed"} 1',
    'attune_agent_execution_duration_seconds_count{runtime="shell",status="failed"} 1',
    'attune_agent_output_truncations_total{stream="stdout"} 1',
    'attune_agent_output_truncations_total{stream="stderr"} 0',
    'attune_agent_broker_reconnects_total 1',
    'attune_agent_executions_running 2',
    'attune_agent_permits_total 10',
    'attune_agent_draining 0',
  ]) assert.ok(body.split('\n').includes(line), `missing: ${line}`);
  assert.ok(body.split('\n').includes('attune_agent_heartbeat_age_seconds 0'), 'unknown values are 0');
});
