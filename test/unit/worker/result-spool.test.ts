/**
 * The result spool on a real directory, and the service's ack-after-claim and spool paths with a
 * fake store (the real conditional write is covered by test/e2e/spool.test.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { ResultSpool, spooledExecutionIds } from '../../../src/worker/result-spool.ts';
import { ExecutionService } from '../../../src/worker/service.ts';
import { DbError } from '../../../src/db/errors.ts';
import type { ExecutionStore, StatusPublisher } from '../../../src/worker/ports.ts';
import type { ExecutionRow, ExecutionStatus, TerminalStatus } from '../../../src/model.ts';
import type { SpooledWrite } from '../../../src/db/executions.ts';

const logger = pino({ level: 'silent' });

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'attune-spool-unit-'));
}

const sample = (id: number) => ({ execution_id: id, status: 'completed' as const, result: { succeeded: true, stdout: `out ${id}` }, action: 7, action_ref: 'demo.echo', previous_status: 'running' });

test('spool files: 0600 in a 0700 directory, one per execution, listed oldest first, bounded by count and bytes', async () => {
  const root = tmp();
  try {
    const dir = join(root, '.attune-agent-spool');
    const spool = new ResultSpool({ dir, maxFiles: 3, maxBytes: 1024 * 1024, agent: 'w-a', log: logger });
    for (const id of [5, 3, 9]) assert.equal(await spool.put(sample(id)), true);
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    for (const f of readdirSync(dir)) assert.equal(statSync(join(dir, f)).mode & 0o777, 0o600, f);
    assert.deepEqual(readdirSync(dir).filter((f) => f.endsWith('.tmp')), [], 'no temp file left');
    const kept = JSON.parse(readFileSync(join(dir, 'execution-5.json'), 'utf8'));
    assert.equal(kept.agent, 'w-a');
    assert.equal(kept.execution_id, 5);
    assert.ok(!Number.isNaN(Date.parse(kept.written_at)));
    const listed = await spool.list();
    assert.deepEqual(listed.map((e) => e.executionId).sort(), [3, 5, 9]);
    assert.ok(listed.every((e, i) => i === 0 || listed[i - 1].mtimeMs <= e.mtimeMs), 'oldest first');
    assert.deepEqual((await spooledExecutionIds(dir)).sort(), [3, 5, 9]);
    // Full: the 4th is refused and the kept ones stay.
    assert.equal(await spool.put(sample(11)), false);
    assert.deepEqual((await spool.list()).map((e) => e.executionId).sort(), [3, 5, 9]);
    await spool.remove('execution-3.json');
    assert.equal(await spool.put(sample(11)), true, 'room again after a file is drained');
    const small = new ResultSpool({ dir: join(root, 'small'), maxFiles: 100, maxBytes: 300, agent: 'w', log: logger });
    assert.equal(await small.put(sample(1)), true);
    assert.equal(await small.put(sample(2)), false, 'the byte bound refuses the second file');
    await spool.close();
    await small.close();
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('spool: a link planted as the spool directory or a file is never followed', async () => {
  const root = tmp();
  try {
    mkdirSync(join(root, 'elsewhere'));
    symlinkSync(join(root, 'elsewhere'), join(root, 'spool'));
    const spool = new ResultSpool({ dir: join(root, 'spool'), maxFiles: 10, maxBytes: 1 << 20, agent: 'w', log: logger });
    assert.equal(await spool.put(sample(1)), false, 'refused: the spool directory is a link');
    assert.deepEqual(readdirSync(join(root, 'elsewhere')), []);
    const ok = new ResultSpool({ dir: join(root, 'real'), maxFiles: 10, maxBytes: 1 << 20, agent: 'w', log: logger });
    assert.equal(await ok.put(sample(1)), true);
    symlinkSync('/etc/hostname', join(root, 'real', 'execution-2.json'));
    assert.deepEqual((await ok.list()).map((e) => e.executionId), [1], 'the planted link is not listed');
    await ok.close();
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

function row(id: number, status: ExecutionStatus = 'scheduled'): ExecutionRow {
  return {
    id, action: 100 + id, action_ref: 'demo.echo', pack_release: null, pack_release_digest: null, executable_snapshot: null,
    config: {}, env_vars: null, parent: null, enforcement: null, executor: null, permission_set_refs: null, worker: 1,
    status, trace_tag: null, result: null, started_at: null, timeout_seconds: null, workflow_task: null,
  };
}

function harness(dir: string, opts: { claimError?: Error; writeDown?: () => boolean }) {
  const db = new Map<number, ExecutionRow>();
  const lostAnswer = new Set<number>();
  const messages: { kind: string; p: Record<string, unknown> }[] = [];
  const store: ExecutionStore = {
    loadExecution: async (id) => db.get(id) ?? null,
    claim: async (id) => {
      if (opts.claimError) throw opts.claimError;
      const r = db.get(id);
      if (!r) return null;
      const before = { ...r };
      if (r.status !== 'scheduled') return { execution: before, claimed: false, previous: before.status, rows: null };
      r.status = 'running';
      return { execution: before, claimed: true, previous: before.status, rows: null };
    },
    writeTerminal: async (id, status, result) => {
      if (opts.writeDown?.()) throw new DbError('database unreachable', { retryable: true });
      const r = db.get(id)!;
      r.status = status;
      return { action: r.action, action_ref: r.action_ref, result };
    },
  };
  const write = async (id: number, status: TerminalStatus): Promise<SpooledWrite> => {
    if (opts.writeDown?.()) throw new DbError('database unreachable', { retryable: true });
    const r = db.get(id);
    if (!r) return { written: false, already: false, previous_status: null, action: null, action_ref: null };
    const prev = r.status;
    // `lostAnswer` marks a row whose own terminal write committed with its answer lost (same status and result).
    if (prev !== 'running' && prev !== 'canceling') return { written: false, already: prev === status && lostAnswer.has(id), previous_status: prev, action: r.action, action_ref: r.action_ref };
    r.status = status;
    return { written: true, already: false, previous_status: prev, action: r.action, action_ref: r.action_ref };
  };
  const publisher: StatusPublisher = {
    statusChanged: (p) => messages.push({ kind: 'status', p }),
    completed: (p) => messages.push({ kind: 'completed', p }),
  };
  const spool = new ResultSpool({ dir, maxFiles: 100, maxBytes: 1 << 20, agent: 'w', log: logger });
  const svc = new ExecutionService({
    store, publisher, logger, maxConcurrentTasks: 1, retry: (_w, fn) => fn(), spool: { spool, write },
    run: async () => ({ status: 'completed', result: { succeeded: true } }),
  });
  return { svc, db, messages, spool, lostAnswer };
}

test('ack after the claim: a claim that cannot reach the database is requeued (permit freed), a hopeless one dropped', async () => {
  const root = tmp();
  try {
    const down = harness(join(root, 's1'), { claimError: new DbError('database unreachable', { retryable: true }) });
    down.db.set(1, row(1));
    assert.equal(await down.svc.onDispatch({ execution_id: 1, action_ref: 'demo.echo' }), 'nack-requeue');
    assert.equal(down.svc.permits.inUse, 0, 'the permit is free again');
    assert.equal(down.svc.cancellations.has(1), false, 'the redelivery is not mistaken for a duplicate');
    const broken = harness(join(root, 's2'), { claimError: new DbError('column does not exist', { retryable: false }) });
    broken.db.set(1, row(1));
    assert.equal(await broken.svc.onDispatch({ execution_id: 1, action_ref: 'demo.echo' }), 'nack-drop');
    assert.equal(broken.svc.permits.inUse, 0);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('a result the database does not take is spooled; the replay writes it once, announces it, and never overwrites a newer status', async () => {
  const root = tmp();
  try {
    let down = true;
    const h = harness(join(root, 'spool'), { writeDown: () => down });
    h.db.set(1, row(1));
    h.db.set(2, row(2));
    h.db.set(3, row(3));
    for (const id of [1, 2, 3]) assert.equal(await h.svc.onDispatch({ execution_id: id, action_ref: 'demo.echo' }), 'ack');
    assert.equal(await h.svc.waitIdle(5000), true);
    assert.deepEqual(readdirSync(join(root, 'spool')).sort(), ['execution-1.json', 'execution-2.json', 'execution-3.json']);
    // Execution 3's write committed in the cut, its answer lost: the replay announces it without writing.
    h.db.get(3)!.status = 'completed';
    h.lostAnswer.add(3);
    assert.equal(h.db.get(1)!.status, 'running');
    assert.deepEqual(h.messages.map((m) => [m.kind, m.p.new_status ?? m.p.status]), [['status', 'running'], ['status', 'running'], ['status', 'running']], 'no terminal message before the row is written');
    assert.equal(await h.svc.replaySpool(), 3, 'still down: all kept');
    h.db.get(2)!.status = 'cancelled'; // an operator moved it meanwhile
    down = false;
    assert.equal(await h.svc.replaySpool(), 0);
    assert.deepEqual(readdirSync(join(root, 'spool')), []);
    assert.equal(h.db.get(1)!.status, 'completed');
    assert.equal(h.db.get(2)!.status, 'cancelled', 'the newer status stays');
    const terminal = h.messages.filter((m) => (m.p.new_status ?? m.p.status) !== 'running');
    assert.deepEqual(terminal.map((m) => [m.kind, m.p.execution_id, m.p.previous_status ?? null]), [['status', 1, 'running'], ['completed', 1, null], ['status', 3, 'running'], ['completed', 3, null]]);
    assert.equal(await h.svc.replaySpool(), 0, 'a second replay writes nothing');
    assert.equal(h.messages.filter((m) => m.kind === 'completed').length, 2);
    await h.spool.close();
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
