import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { ExecutionService, type RunExecution } from '../../../src/worker/service.ts';
import type { ExecutionStore, StatusPublisher } from '../../../src/worker/ports.ts';
import type { ExecutionRow, ExecutionStatus, TerminalStatus } from '../../../src/model.ts';

const logger = pino({ level: 'silent' });

function row(id: number, status: ExecutionStatus = 'scheduled', extra: Partial<ExecutionRow> = {}): ExecutionRow {
  return {
    id, action: 100 + id, action_ref: 'demo.echo', pack_release: null, pack_release_digest: null, executable_snapshot: null,
    config: {}, env_vars: null, parent: null, enforcement: null, executor: null, permission_set_refs: null, worker: 1,
    status, trace_tag: null, result: null, started_at: null, timeout_seconds: null, workflow_task: null, ...extra,
  };
}

function harness(rows: ExecutionRow[], run: RunExecution, max = 2) {
  const db = new Map(rows.map((r) => [r.id, { ...r }]));
  const writes: { id: number; status: string }[] = [];
  const messages: { kind: string; p: Record<string, unknown> }[] = [];
  const store: ExecutionStore = {
    loadExecution: async (id) => (db.has(id) ? { ...db.get(id)! } : null),
    // As the claim does in SQL: claimable status and the release the dispatch names.
    claim: async (id, release) => {
      const r = db.get(id);
      if (!r) return null;
      const before = { ...r };
      const releaseOk = (release.releaseId === null || r.pack_release === null || Number(r.pack_release) === release.releaseId) &&
        (release.releaseDigest === null || !r.pack_release_digest || r.pack_release_digest === release.releaseDigest);
      if (!['requested', 'scheduling', 'scheduled'].includes(r.status) || !releaseOk) return { execution: before, claimed: false, previous: before.status, rows: null };
      r.status = 'running';
      writes.push({ id, status: 'running' });
      return { execution: before, claimed: true, previous: before.status, rows: null };
    },
    writeTerminal: async (id, status, result) => {
      const r = db.get(id)!;
      r.status = status;
      r.result = result;
      writes.push({ id, status });
      return { action: r.action, action_ref: r.action_ref, result };
    },
  };
  const publisher: StatusPublisher = {
    statusChanged: (p) => messages.push({ kind: 'status', p }),
    completed: (p) => messages.push({ kind: 'completed', p }),
  };
  const svc = new ExecutionService({ store, run, publisher, logger, maxConcurrentTasks: max, retry: (_w, fn) => fn() });
  return { svc, db, writes, messages };
}

const ok = async (): Promise<{ status: TerminalStatus; result: Record<string, unknown> }> => ({ status: 'completed', result: { succeeded: true, exit_code: 0 } });

test('a dispatch is acked on claim, runs once, and publishes running then the real terminal pair', async () => {
  const h = harness([row(1)], async () => ({ status: 'failed', result: { succeeded: false, exit_code: 3, error: 'Command exited with code 3' } }));
  assert.equal(await h.svc.onDispatch({ execution_id: 1, action_ref: 'demo.echo' }), 'ack');
  assert.equal(await h.svc.waitIdle(5000), true);
  assert.deepEqual(h.writes, [{ id: 1, status: 'running' }, { id: 1, status: 'failed' }]);
  assert.deepEqual(h.messages.map((m) => [m.kind, m.p.new_status ?? m.p.status, m.p.previous_status]), [
    ['status', 'running', 'scheduled'],
    ['status', 'failed', 'running'],
    ['completed', 'failed', undefined], // capitalised by the adapter (protocol/messages.ts completedPayload)
  ]);
  assert.equal(h.messages[2].p.action_id, 101);
});

test('unknown, duplicate and canceling executions', async () => {
  let runs = 0;
  const h = harness([row(2, 'completed'), row(3, 'canceling'), row(4, 'running')], async () => (runs++, ok()));
  for (const id of [2, 3, 4, 999]) assert.equal(await h.svc.onDispatch({ execution_id: id, action_ref: 'demo.echo' }), 'ack');
  await h.svc.waitIdle(5000);
  assert.equal(runs, 0);
  assert.deepEqual(h.writes, [{ id: 3, status: 'cancelled' }], 'canceling → cancelled row; others untouched');
  assert.deepEqual(h.messages.map((m) => m.p.new_status ?? m.p.status), ['cancelled', 'cancelled']);
});

test('release mismatch fails the execution with a clear error', async () => {
  const h = harness([row(5, 'scheduled', { pack_release: 7, pack_release_digest: 'a'.repeat(64) })], ok);
  await h.svc.onDispatch({ execution_id: 5, action_ref: 'demo.echo', release_id: 8, release_digest: 'a'.repeat(64) });
  await h.svc.waitIdle(5000);
  assert.equal(h.db.get(5)!.status, 'failed');
  assert.match(String((h.db.get(5)!.result as Record<string, unknown>).error), /release mismatch.*release 8.*release 7/);
});

test('concurrency limit, cancel while queued, cancel while running, shutdown hands queued dispatches back', async () => {
  let active = 0;
  let peak = 0;
  const run: RunExecution = (_claim, signal) => {
    active++;
    peak = Math.max(peak, active);
    return new Promise((resolve) => {
      const done = (status: TerminalStatus) => {
        active--;
        resolve({ status, result: { succeeded: status === 'completed', cancel_reason: signal.reason } });
      };
      const t = setTimeout(() => done('completed'), 150);
      signal.addEventListener('abort', () => (clearTimeout(t), done('cancelled')), { once: true });
    });
  };
  const h = harness([1, 2, 3, 4, 5].map((i) => row(i)), run, 2);
  const acks = [1, 2].map((i) => h.svc.onDispatch({ execution_id: i, action_ref: 'demo.echo' }));
  assert.deepEqual(await Promise.all(acks), ['ack', 'ack']);
  const queued3 = h.svc.onDispatch({ execution_id: 3, action_ref: 'demo.echo' });
  const queued4 = h.svc.onDispatch({ execution_id: 4, action_ref: 'demo.echo' });
  h.svc.onCancel(3); // cancelled while queued behind the permits
  assert.equal(await queued3, 'ack');
  h.svc.onCancel(1); // cancelled while running
  h.svc.startDrain();
  assert.equal(await h.svc.onDispatch({ execution_id: 5, action_ref: 'demo.echo' }), 'nack-requeue', 'draining: new dispatch goes back');
  assert.equal(await queued4, 'nack-requeue', 'delivered but not started: handed back on drain');
  await h.svc.waitIdle(5000);
  assert.equal(peak, 2);
  assert.equal(h.db.get(1)!.status, 'cancelled');
  assert.equal(h.db.get(2)!.status, 'completed');
  assert.equal(h.db.get(3)!.status, 'cancelled');
  assert.equal(h.db.get(4)!.status, 'scheduled');
  assert.equal(h.db.get(5)!.status, 'scheduled');
  assert.ok(!h.writes.some((w) => w.id === 3 && w.status === 'running'), 'execution 3 never ran');
});

test('a runner exception still ends in a terminal failed row', async () => {
  const h = harness([row(6)], async () => {
    throw new Error('spawn exploded');
  });
  await h.svc.onDispatch({ execution_id: 6, action_ref: 'demo.echo' });
  await h.svc.waitIdle(5000);
  assert.equal(h.db.get(6)!.status, 'failed');
  assert.match(String((h.db.get(6)!.result as Record<string, unknown>).error), /Action execution failed: spawn exploded/);
});

test('the service reports runtime and truncations of each finished run to onFinished (metrics hook)', async () => {
  const events: unknown[] = [];
  const row = { id: 1, action: 101, action_ref: 'demo.echo', status: 'scheduled', result: null } as unknown as ExecutionRow;
  const svc = new ExecutionService({
    store: {
      loadExecution: async () => ({ ...row }),
      claim: async () => ({ execution: { ...row }, claimed: true, previous: 'scheduled', rows: null }),
      writeTerminal: async (_id, _s, result) => ({ action: 101, action_ref: 'demo.echo', result }),
    },
    run: async () => ({ status: 'completed', result: { succeeded: true, exit_code: 0, duration_ms: 12 }, runtime: 'python', stdoutTruncated: true, stderrTruncated: false }),
    publisher: { statusChanged() {}, completed() {} },
    logger,
    maxConcurrentTasks: 1,
    retry: (_w, fn) => fn(),
    onFinished: (e) => events.push(e),
  });
  assert.equal(await svc.onDispatch({ execution_id: 1, action_ref: 'demo.echo' }), 'ack');
  await svc.waitIdle(5000);
  assert.deepEqual(events, [{ executionId: 1, status: 'completed', runtime: 'python', durationMs: 12, stdoutTruncated: true, stderrTruncated: false }]);
});
