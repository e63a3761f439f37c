/**
 * The agent's main job end to end: the built executable against real PostgreSQL and RabbitMQ, with
 * the platform stand-in (test/harness/platform.ts) playing Attune: it inserts rows, publishes
 * `ExecutionRequested` / `ExecutionCancelRequested` like Attune's executor and API, and checks the
 * rows, the result JSON and the messages the agent publishes.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { ChannelModel } from 'amqplib';
import which from 'which';
import { createTestDatabase, type TestDatabase } from '../helpers/pg.ts';
import { collectExecutionMessages, connectTest, publishExecutionCancelRequested, publishExecutionRequested, publishRaw, queueDepth, type Collector } from '../helpers/amqp.ts';
import { createExecution, executionRow, insertAction, seedCoreRuntimes, startAgent, type ActionDef, type AgentProcess, separateIds, consumingWorkerId } from '../harness/platform.ts';
import { processesWithMarker } from '../helpers/execution.ts';
import { waitFor } from '../helpers/wait.ts';

const PACKS_DIR = resolve(import.meta.dirname, '../fixtures/packs');
const MAX_CONCURRENT = 3;
const SECRET = `pw-${randomUUID()}`;

let db: TestDatabase;
let mq: ChannelModel;
let collector: Collector;
let agent: AgentProcess;
let workerId: number;
let work: string;
let artifactsDir: string;
let runtimeIds: Record<string, number>;

const has = (bin: string): boolean => which.sync(bin, { nothrow: true }) !== null;

async function action(def: Omit<ActionDef, 'ref'> & { name: string }): Promise<string> {
  const ref = `testpack.${def.name}`;
  await insertAction(db.pool, 'testpack', { ...def, ref }, runtimeIds);
  return ref;
}

interface Finished { id: number; status: string; result: Record<string, unknown>; completion: Record<string, unknown>; statuses: string[]; marker: string }

/** Create + dispatch one execution, wait for its ExecutionCompleted, return row and messages. */
async function run(actionRef: string, config: Record<string, unknown> = {}, opts: { timeoutSeconds?: number; waitMs?: number; envVars?: Record<string, string> } = {}): Promise<Finished> {
  const marker = `e2e-${randomUUID()}`;
  const id = await createExecution(db.pool, { actionRef, workerId, config, timeoutSeconds: opts.timeoutSeconds, envVars: { E2E_MARKER: marker, ...opts.envVars } });
  await publishExecutionRequested(mq, workerId, { execution_id: id, action_ref: actionRef, config });
  return finished(id, marker, opts.waitMs);
}

async function finished(id: number, marker: string, waitMs = 30_000): Promise<Finished> {
  await collector.waitFor(`ExecutionCompleted for execution ${id}`, (m) => m.some((x) => x.routingKey === 'execution.completed' && x.json?.payload?.execution_id === id), { timeoutMs: waitMs });
  const row = await executionRow(db.pool, id);
  const msgs = collector.forExecution(id);
  const completion = msgs.find((m) => m.routingKey === 'execution.completed')!.json!.payload!;
  const statuses = msgs.filter((m) => m.routingKey === 'execution.status.changed').map((m) => String(m.json!.payload!.new_status));
  return { id, status: row.status, result: row.result ?? {}, completion, statuses, marker };
}

interface LogVersionRow { artifact: number; ref: string; version: number; file_path: string; body_state: string; size_bytes: number; sha256: string; sealed: boolean; truncated: boolean; backend: string; execution: number }

/** The execution's log artifact versions (docs/attune-compat.md §5.10), by stream. */
async function logArtifacts(executionId: number): Promise<Record<'stdout' | 'stderr', LogVersionRow>> {
  const rows = (await db.pool.query(`SELECT v.artifact, a.ref, v.version, v.file_path, v.body_state::text, v.size_bytes, v.sha256, l.sealed, l.truncated, l.backend::text, v.execution,
      v.meta->>'stream' AS stream
      FROM artifact_version v JOIN artifact a ON a.id = v.artifact JOIN log_stream l ON l.artifact_version = v.id WHERE v.execution = $1`, [executionId])).rows;
  const by = (s: string) => {
    const r = rows.find((x) => x.stream === s);
    assert.ok(r, `a ${s} log artifact version for execution ${executionId}: ${JSON.stringify(rows)}`);
    return r as LogVersionRow;
  };
  return { stdout: by('stdout'), stderr: by('stderr') };
}

function assertOneTerminalPair(f: Finished, status: string): void {
  assert.deepEqual(f.statuses, ['running', status], `status messages of execution ${f.id}`);
  assert.equal(collector.forExecution(f.id).filter((m) => m.routingKey === 'execution.completed').length, 1);
  assert.equal(f.status, status);
  assert.equal(f.completion.status, status.charAt(0).toUpperCase() + status.slice(1), 'ExecutionCompleted carries the real outcome');
  if (f.completion.result_truncated === true) {
    // Too large for one message (message_queue.max_message_bytes): long texts keep their start and
    // end with a notice; everything else is the row's. The row keeps the whole result.
    const shortened = f.completion.result as Record<string, unknown>;
    assert.deepEqual(Object.keys(shortened).sort(), Object.keys(f.result).sort()); // jsonb orders the row's keys
    for (const [k, v] of Object.entries(shortened)) {
      if (typeof v === 'string' && v !== f.result[k]) {
        const cut = v.indexOf('\n[attune-agent: ');
        assert.ok(cut >= 0 && String(f.result[k]).startsWith(v.slice(0, cut)), `result.${k} of the completion is a prefix of the row's, with a notice`);
      } else {
        assert.deepEqual(v, f.result[k], `result.${k}`);
      }
    }
  } else {
    assert.deepEqual(f.completion.result, f.result, 'ExecutionCompleted.result is the row result');
  }
  assert.deepEqual(processesWithMarker(f.marker), [], 'no process of the action is left');
}

before(async () => {
  db = await createTestDatabase('e2e_exec');
  // Other runs (this file run twice at once, other e2e files, the bench) start agents against the
  // same broker with their own databases, where ids start at 1 too: queue names (worker.{id}.*) and
  // the execution ids in messages must not collide, or agents take each other's dispatches.
  await separateIds(db.pool);
  runtimeIds = await seedCoreRuntimes(db.pool);
  work = mkdtempSync(join(tmpdir(), 'attune-e2e-exec-'));
  mq = await connectTest('e2e-executions');
  collector = await collectExecutionMessages(mq);
  agent = startAgent({
    ATTUNE__DATABASE__URL: db.url.replace('postgresql://postgres@', `postgresql://postgres:${SECRET}@`),
    ATTUNE__DATABASE__SCHEMA: db.schema,
    ATTUNE__MESSAGE_QUEUE__URL: 'amqp://guest:guest@127.0.0.1:5672/%2f',
    ATTUNE__PACKS_BASE_DIR: PACKS_DIR,
    ATTUNE__ARTIFACTS_DIR: (artifactsDir = join(work, 'artifacts')),
    ATTUNE__RUNTIME_ENVS_DIR: join(work, 'envs'),
    ATTUNE__WORKER__MAX_CONCURRENT_TASKS: String(MAX_CONCURRENT),
    ATTUNE__WORKER__KILL_GRACE_PERIOD: '1',
    ATTUNE__WORKER__SHUTDOWN_TIMEOUT: '5',
    ATTUNE_WORKER_NAME: `e2e-exec-${process.pid}`,
    DATABASE_URL: `postgres://leak:${SECRET}@db/x`,
  });
  workerId = await consumingWorkerId(agent, db.pool, `e2e-exec-${process.pid}`);
});

after(async () => {
  const exit = await agent?.stop('SIGTERM');
  await collector?.close();
  await mq?.close();
  await db?.drop();
  rmSync(work, { recursive: true, force: true });
  assert.equal(exit?.code, 0, 'the agent stops cleanly');
});

describe('memory', () => {
  test('once idle after start-up, the agent gives back its start-up pages (then runs everything below)', async () => {
    const line = await agent.waitForLog('the idle trim after start-up', (l) => l.msg === 'start-up memory given back', { timeoutMs: 10_000 });
    assert.ok(Number(line.released_mb) > 10, `released ${line.released_mb} MB of the executable's pages (the addon beside dist/attune-agent)`);
  });
});

describe('runtimes and parameter delivery', () => {
  const params = { name: "O'Brien", nested: { a: 1, 'Content-Type': 'x' }, list: [1, 'two'], none: null };
  const interpreters: [string, string][] = [['shell', 'echo_params.sh'], ['python', 'echo_params.py'], ['perl', 'echo_params.pl'], ['node', 'echo_params.js'], ['java', 'EchoParams.java']];
  // ruby, go and R come from .ci/apt-packages.txt; a machine without them runs the others.
  if (has('ruby')) interpreters.push(['ruby', 'echo_params.rb']);
  if (has('go')) interpreters.push(['go', 'echo_params.go']);
  if (has('Rscript')) interpreters.push(['r', 'echo_params.R']);

  test(`every interpreter on this machine receives JSON parameters (${interpreters.map((i) => i[0]).join(', ')})`, async () => {
    for (const [runtime, entrypoint] of interpreters) {
      const ref = await action({ name: `echo_${runtime}`, entrypoint, runtime, output_format: 'json' });
      const f = await run(ref, params);
      assertOneTerminalPair(f, 'completed');
      assert.deepEqual(f.result.data, params, `${runtime}: data`);
      assert.equal(f.result.exit_code, 0);
    }
  });

  test('stdin and file delivery in json, dotenv and yaml, byte for byte', async () => {
    const expected: Record<string, string> = {
      json: '{"list":[1,"two"],"name":"O\'Brien","nested":{"a":1,"Content-Type":"x"},"none":null}',
      dotenv: "list='[1,\"two\"]'\nname='O'\\''Brien'\nnested.Content-Type='x'\nnested.a='1'\nnone=''",
    };
    for (const delivery of ['stdin', 'file'] as const) {
      for (const format of ['json', 'dotenv', 'yaml'] as const) {
        const ref = await action({ name: `echo_${delivery}_${format}`, entrypoint: 'echo_params.sh', runtime: 'shell', parameter_delivery: delivery, parameter_format: format });
        const f = await run(ref, params);
        assertOneTerminalPair(f, 'completed');
        const stdout = String(f.result.stdout);
        if (format === 'yaml') assert.match(stdout, /name: O'Brien/);
        else if (format === 'json') assert.deepEqual(JSON.parse(stdout), params);
        else assert.equal(stdout, expected.dotenv + (delivery === 'stdin' ? '\n' : ''), `${delivery}/${format}`);
        if (format === 'json') assert.equal(stdout.endsWith('\n'), delivery === 'stdin', 'stdin gets a trailing newline, the file does not');
      }
    }
  });
});

describe('outputs and failures', () => {
  test('json (last line), yaml and jsonl output formats', async () => {
    const json = await run(await action({ name: 'json_out', entrypoint: 'json_out.sh', runtime: 'shell', output_format: 'json' }));
    assertOneTerminalPair(json, 'completed');
    assert.deepEqual(json.result.data, { answer: 42, queue_ack: { id: 'q-1' } });
    assert.deepEqual(json.result.queue_ack, { id: 'q-1' });
    assert.equal(json.result.stdout, undefined, 'parsed output is not duplicated into stdout');
    const yaml = await run(await action({ name: 'yaml_out', entrypoint: 'yaml_out.sh', runtime: 'shell', output_format: 'yaml' }));
    assert.deepEqual(yaml.result.data, { name: 'demo', items: [1, 'two'] });
    const jsonl = await run(await action({ name: 'jsonl_out', entrypoint: 'jsonl_out.sh', runtime: 'shell', output_format: 'jsonl' }));
    assert.deepEqual(jsonl.result.data, [{ n: 1 }, { n: 2 }]);
  });

  test('non-zero exit → failed with the stderr as error', async () => {
    const f = await run(await action({ name: 'fail', entrypoint: 'fail.sh', runtime: 'shell', parameter_format: 'dotenv' }), { lines: 2, code: 7 });
    assertOneTerminalPair(f, 'failed');
    assert.equal(f.result.exit_code, 7);
    assert.equal(f.result.succeeded, false);
    assert.equal(f.result.error, 'problem line 1\nproblem line 2\n', 'the whole stderr when it has at most 5 lines, as Attune does');
  });

  test('timeout kills a process tree that ignores SIGTERM', async () => {
    const ref = await action({ name: 'ignore_term', entrypoint: 'ignore_term_tree.sh', runtime: 'shell' });
    const f = await run(ref, {}, { timeoutSeconds: 1 });
    assertOneTerminalPair(f, 'timeout');
    assert.equal(f.result.timed_out, true);
    assert.equal(f.result.exit_code, -1);
    assert.equal(f.result.error, 'Execution timed out after 1 seconds');
  });

  test('missing action file and missing interpreter fail with errors that name the fix', async () => {
    const missing = await run(await action({ name: 'missing', entrypoint: 'does_not_exist.sh', runtime: 'shell' }));
    assertOneTerminalPair(missing, 'failed');
    assert.match(String(missing.result.error), /does_not_exist\.sh/);
    await db.pool.query(`INSERT INTO runtime (ref, name, aliases, distributions, execution_config) VALUES ('core.lua', 'Lua', '{lua}', '{}', '{"interpreter":{"binary":"lua5.4","file_extension":".lua"}}') ON CONFLICT DO NOTHING`);
    runtimeIds.lua = Number((await db.pool.query(`SELECT id FROM runtime WHERE ref = 'core.lua'`)).rows[0].id);
    const noInterp = await run(await action({ name: 'lua', entrypoint: 'echo_params.sh', runtime: 'lua' }));
    assertOneTerminalPair(noInterp, 'failed');
    assert.match(String(noInterp.result.error), /lua5\.4/);
    assert.match(String(noInterp.result.error), /detected: .*shell/);
  });

  test('50 MB of output is truncated with a notice; the agent\'s memory stays bounded', async (t) => {
    const pid = agent.child.pid!;
    writeFileSync(`/proc/${pid}/clear_refs`, '5'); // reset the peak-RSS counter (VmHWM) to the current RSS
    const rssBefore = vmRssKb(pid);
    const f = await run(await action({ name: 'big', entrypoint: 'big_output.sh', runtime: 'shell' }));
    assertOneTerminalPair(f, 'completed');
    assert.equal(f.completion.result_truncated, true, '10 MiB of stdout does not fit a 4 MiB message: the completion is shortened');
    const stdout = String(f.result.stdout);
    assert.ok(stdout.endsWith('\n\n[OUTPUT TRUNCATED: stdout exceeded size limit]\n'));
    assert.equal(Buffer.byteLength(stdout), 10 * 1024 * 1024 - 128 + '\n\n[OUTPUT TRUNCATED: stdout exceeded size limit]\n'.length);
    // The log artifact holds the same bounded bytes and says it was cut.
    const logs = await logArtifacts(f.id);
    assert.deepEqual({ size: Number(logs.stdout.size_bytes), truncated: logs.stdout.truncated }, { size: Buffer.byteLength(stdout), truncated: true });
    assert.equal(statSync(join(artifactsDir, logs.stdout.file_path)).size, Buffer.byteLength(stdout));
    const grewMb = (vmHwmKb(pid) - rssBefore) / 1024;
    t.diagnostic(`agent peak RSS grew by ${grewMb.toFixed(1)} MB (RSS before ${(rssBefore / 1024).toFixed(1)} MB)`);
    assert.ok(grewMb < 64, `agent peak RSS grew by ${grewMb.toFixed(1)} MB for 50 MB of output (cap 10 MiB)`);
  });

  test('invalid UTF-8 and binary output do not break anything', async () => {
    const f = await run(await action({ name: 'binary', entrypoint: 'binary_out.sh', runtime: 'shell' }));
    assertOneTerminalPair(f, 'completed');
    assert.match(String(f.result.stdout), /^ok .* mid .* end\n$/);
  });

  test('a background grandchild holding stdout does not hang the run and is killed afterwards', async () => {
    const started = Date.now();
    const f = await run(await action({ name: 'grandchild', entrypoint: 'grandchild.sh', runtime: 'shell' }));
    assertOneTerminalPair(f, 'completed');
    assert.ok(Date.now() - started < 10_000, 'finished promptly');
    assert.match(String(f.result.stdout), /parent done/);
  });

  test('actions get real pipes: /dev/stdin, /dev/stdout and /dev/stderr open by path (bash, dash, tee, python)', async () => {
    const f = await run(await action({ name: 'dev_paths', entrypoint: 'dev_paths.sh', runtime: 'shell', output_format: 'json' }), { x: 1 });
    assertOneTerminalPair(f, 'completed');
    assert.deepEqual(f.result.data, { params: { x: 1 } });
    const stderr = readFileSync(String(f.result.stderr_log), 'utf8');
    assert.equal(stderr, 'bash to stderr by path\ndash to stderr by path\ntee to stderr\n');
    const logs = await logArtifacts(f.id);
    assert.match(readFileSync(join(artifactsDir, logs.stdout.file_path), 'utf8'), /^python by path\n\{"params": \{"x":1\}\}\n$/);
  });

  test('log artifacts: each run gets a new version of {action}.stdout.log/.stderr.log, a sealed shared_file stream and the file Attune reads', async () => {
    const ref = await action({ name: 'fail_logs', entrypoint: 'fail.sh', runtime: 'shell', parameter_format: 'dotenv' });
    const first = await run(ref, { lines: 2, code: 3 });
    const second = await run(ref, { lines: 1, code: 4 });
    const a = await logArtifacts(first.id);
    const b = await logArtifacts(second.id);
    assert.equal(a.stderr.ref, `${ref}.stderr.log`);
    assert.equal(a.stderr.artifact, b.stderr.artifact, 'one artifact per action and stream');
    assert.equal(b.stderr.version, a.stderr.version + 1);
    assert.equal(b.stderr.file_path, `${ref.replaceAll('.', '/')}/stderr/log/v${b.stderr.version}.txt`);
    assert.equal(second.result.stderr_log, join(artifactsDir, b.stderr.file_path), 'result.stderr_log is the artifact file');
    assert.equal(readFileSync(join(artifactsDir, b.stderr.file_path), 'utf8'), 'problem line 1\n');
    for (const [v, text] of [[b.stderr, 'problem line 1\n'], [b.stdout, '']] as const) {
      assert.deepEqual({ state: v.body_state, size: Number(v.size_bytes), sha256: v.sha256, sealed: v.sealed, truncated: v.truncated, backend: v.backend, execution: Number(v.execution) },
        { state: 'ready', size: text.length, sha256: createHash('sha256').update(text).digest('hex'), sealed: true, truncated: false, backend: 'shared_file', execution: second.id });
    }
    assert.equal(statSync(join(artifactsDir, b.stderr.file_path)).mode & 0o7777, 0o444, 'sealed files are frozen, as Attune does');
  });

  test('env isolation: the action sees neither the agent\'s database URL nor its credentials', async () => {
    const f = await run(await action({ name: 'env', entrypoint: 'env_json.js', runtime: 'node', output_format: 'json' }));
    assertOneTerminalPair(f, 'completed');
    const env = (f.result.data as { env: Record<string, string> }).env;
    assert.ok(!JSON.stringify(env).includes(SECRET), 'no credential of the agent reaches the action');
    for (const k of Object.keys(env)) assert.ok(!/DATABASE|MESSAGE_QUEUE/.test(k), `unexpected variable ${k}`);
    assert.equal(env.ATTUNE_EXEC_ID, String(f.id));
    assert.equal(env.ATTUNE_ACTION, 'testpack.env');
    assert.equal(env.ATTUNE_PACK_REF, 'testpack');
    assert.equal(env.E2E_MARKER, f.marker, 'execution.env_vars reach the action');
  });
});

describe('secret parameters', () => {
  test('stored secret values are read with the claim; without security.encryption_key the run fails before it starts', async () => {
    const { encryptJson, hashEncryptionKey, redactionMarker } = await import('../../src/execution/secrets.ts');
    const ref = await action({ name: 'echo_secret', entrypoint: 'echo_params.sh', runtime: 'shell', output_format: 'json' });
    const config = { user: 'ada', password: redactionMarker() };
    const marker = `e2e-${randomUUID()}`;
    const id = await createExecution(db.pool, { actionRef: ref, workerId, config, envVars: { E2E_MARKER: marker } });
    const key = 'e2e-encryption-key-of-at-least-32-characters';
    await db.pool.query(
      `INSERT INTO execution_secret_value (entity_type, entity_id, json_path, source_kind, source_ref, encrypted_value, encryption_key_hash)
       VALUES ('execution_config', $1, '/password', 'keystore', 'core.pw', to_jsonb($2::text), $3)`,
      [id, encryptJson('pw-secret', key), hashEncryptionKey(key)],
    );
    await publishExecutionRequested(mq, workerId, { execution_id: id, action_ref: ref, config });
    const f = await finished(id, marker);
    assertOneTerminalPair(f, 'failed');
    assert.equal(f.result.error, `Failed to prepare execution context: Failed to restore secret parameters for execution ${id}: No encryption key configured (set security.encryption_key / ATTUNE__SECURITY__ENCRYPTION_KEY to the key of the Attune API)`);
    assert.equal(f.result.exit_code, undefined, 'nothing ran');
  });
});

describe('cancellation, concurrency and bad input', () => {
  test('cancel while running, cancel before the dispatch, cancel while queued behind the permits', async () => {
    const sleepRef = await action({ name: 'sleep', entrypoint: 'sleep.sh', runtime: 'shell' });
    // while running
    const marker = `e2e-${randomUUID()}`;
    const running = await createExecution(db.pool, { actionRef: sleepRef, workerId, envVars: { E2E_MARKER: marker } });
    await publishExecutionRequested(mq, workerId, { execution_id: running, action_ref: sleepRef });
    await waitFor('execution running', async () => (await executionRow(db.pool, running)).status === 'running', { timeoutMs: 15_000 });
    await publishExecutionCancelRequested(mq, workerId, running);
    const f = await finished(running, marker);
    assertOneTerminalPair(f, 'cancelled');
    assert.equal(f.result.cancelled, true);
    assert.equal(f.result.error, 'Execution cancelled by user');

    // before the dispatch
    const early = await createExecution(db.pool, { actionRef: sleepRef, workerId });
    await publishExecutionCancelRequested(mq, workerId, early);
    await waitFor('the cancel to reach the agent', () => agent.logs.some((l) => l.execution_id === early && /remembered/.test(String(l.msg))), { timeoutMs: 15_000 });
    await publishExecutionRequested(mq, workerId, { execution_id: early, action_ref: sleepRef });
    const e = await finished(early, 'none');
    assert.equal(e.status, 'cancelled');

    // while queued: fill the permits with sleepers, then dispatch and cancel one more
    const fillers: number[] = [];
    const fillMarker = `e2e-${randomUUID()}`;
    for (let i = 0; i < MAX_CONCURRENT; i++) {
      const id = await createExecution(db.pool, { actionRef: sleepRef, workerId, envVars: { E2E_MARKER: fillMarker } });
      await publishExecutionRequested(mq, workerId, { execution_id: id, action_ref: sleepRef });
      fillers.push(id);
    }
    await waitFor('permits full', async () => (await db.pool.query(`SELECT count(*)::int AS n FROM execution WHERE id = ANY($1) AND status = 'running'`, [fillers])).rows[0].n === MAX_CONCURRENT, { timeoutMs: 15_000 });
    const queued = await createExecution(db.pool, { actionRef: sleepRef, workerId });
    await publishExecutionRequested(mq, workerId, { execution_id: queued, action_ref: sleepRef });
    await publishExecutionCancelRequested(mq, workerId, queued);
    const q = await finished(queued, 'none');
    assert.equal(q.status, 'cancelled');
    assert.equal((await executionRow(db.pool, queued)).started_at, null, 'the queued execution never started');
    for (const id of fillers) await publishExecutionCancelRequested(mq, workerId, id);
    for (const id of fillers) assert.equal((await finished(id, fillMarker)).status, 'cancelled');
    await waitFor('filler processes gone', () => processesWithMarker(fillMarker).length === 0, { timeoutMs: 15_000 });
  });

  test('the concurrency limit is respected', async () => {
    const ref = await action({ name: 'sleep_short', entrypoint: 'sleep_short.sh', runtime: 'shell', parameter_format: 'dotenv' });
    const ids: number[] = [];
    for (let i = 0; i < MAX_CONCURRENT * 2 + 1; i++) {
      const id = await createExecution(db.pool, { actionRef: ref, workerId, config: { s: 0.5 } });
      await publishExecutionRequested(mq, workerId, { execution_id: id, action_ref: ref, config: { s: 0.5 } });
      ids.push(id);
    }
    let peak = 0;
    await waitFor('all executions completed (the peak of running ones sampled meanwhile)', async () => {
      const { rows } = await db.pool.query(`SELECT count(*) FILTER (WHERE status = 'running')::int AS running, count(*) FILTER (WHERE status = 'completed')::int AS done FROM execution WHERE id = ANY($1)`, [ids]);
      peak = Math.max(peak, rows[0].running);
      return rows[0].done === ids.length;
    }, { timeoutMs: 60_000 });
    assert.equal(peak, MAX_CONCURRENT, `peak running executions: ${peak}`);
  });

  test('a malformed message is dropped and the next good one runs', async () => {
    const ref = await action({ name: 'json_after_bad', entrypoint: 'json_out.sh', runtime: 'shell', output_format: 'json' });
    await publishRaw(mq, `execution.dispatch.worker.${workerId}`, Buffer.from('{"message_type":"ExecutionRequested","payload":{"execution_id":"x"'));
    await publishRaw(mq, `execution.dispatch.worker.${workerId}`, Buffer.from([0xff, 0xfe, 0x00]));
    const f = await run(ref);
    assertOneTerminalPair(f, 'completed');
    assert.ok(agent.logs.some((l) => /undecodable|malformed|cannot decode|not valid/i.test(String(l.msg))), 'the bad messages are logged');
    assert.equal(await queueDepth(mq, `worker.${workerId}.executions`), 0, 'nothing requeued');
  });

  test('a redelivered dispatch of a finished execution is not run twice; unknown executions are logged', async () => {
    const ref = await action({ name: 'once', entrypoint: 'json_out.sh', runtime: 'shell', output_format: 'json' });
    const f = await run(ref);
    await publishExecutionRequested(mq, workerId, { execution_id: f.id, action_ref: ref });
    await publishExecutionRequested(mq, workerId, { execution_id: 987654321, action_ref: ref });
    await waitFor('unknown execution logged', () => agent.logs.some((l) => /unknown execution 987654321/.test(String(l.msg))), { timeoutMs: 15_000 });
    await waitFor('duplicate logged', () => agent.logs.some((l) => l.execution_id === f.id && /duplicate/.test(String(l.msg))), { timeoutMs: 15_000 });
    assert.equal(collector.forExecution(f.id).filter((m) => m.routingKey === 'execution.completed').length, 1);
    assert.ok(!JSON.stringify(agent.logs).includes(SECRET), 'no log line carries the database password');
  });
});

function vmRssKb(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
}
function vmHwmKb(pid: number): number {
  return Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
}
