/**
 * The trust boundary with the built executable (real PostgreSQL, RabbitMQ, interpreters):
 * - links planted under artifacts_dir (the next log version file, an action's directory) and under
 *   runtime_envs_dir: a victim outside keeps its bytes and mode, every run ends terminal;
 * - a careless action printing its secret parameter and secret output everywhere: neither appears
 *   in clear in any file under artifacts_dir, any result field, any message, or the agent's log
 *   (output mirrored into it);
 * - a parameter directory left by a SIGKILLed agent is swept by the next start.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { ChannelModel } from 'amqplib';
import { createTestDatabase, type TestDatabase } from '../helpers/pg.ts';
import { collectExecutionMessages, connectTest, publishExecutionRequested, type Collector } from '../helpers/amqp.ts';
import { seedCoreRuntimes, createExecution, executionRow, startAgent, type ActionDef, type AgentProcess, separateIds, consumingWorkerId } from '../harness/platform.ts';
import { processesWithMarker } from '../helpers/execution.ts';
import { waitFor } from '../helpers/wait.ts';
import { encryptJson, hashEncryptionKey, redactionMarker } from '../../src/execution/secrets.ts';

const PACKS_DIR = resolve(import.meta.dirname, '../fixtures/packs');
const KEY = `e2e-encryption-key-${randomUUID()}`;
const PW = `pw-"q"\\b-ü-${randomUUID()}`;
const TOKEN = `tok-${randomUUID()}`;
const WORKER_NAME = `e2e-trust-${process.pid}`;

let db: TestDatabase;
let mq: ChannelModel;
let collector: Collector;
let agent: AgentProcess;
let workerId: number;
let work: string;
let artifactsDir: string;
let envsDir: string;
let tmp: string;
let runtimeIds: Record<string, number>;
let agentEnv: Record<string, string>;

/** Outside every directory the agent writes: what planted links point at. */
function victimFile(name: string): { path: string; check(): void } {
  const path = join(work, 'outside', name);
  mkdirSync(join(work, 'outside'), { recursive: true });
  writeFileSync(path, `victim ${name}\n`, { mode: 0o600 });
  return {
    path,
    check() {
      assert.equal(readFileSync(path, 'utf8'), `victim ${name}\n`);
      assert.equal(statSync(path).mode & 0o7777, 0o600);
    },
  };
}

function victimDir(name: string): { path: string; check(): void } {
  const path = join(work, 'outside', name);
  mkdirSync(path, { recursive: true, mode: 0o700 });
  return {
    path,
    check() {
      assert.deepEqual(readdirSync(path), [], `${path}: nothing written through the link`);
      assert.equal(statSync(path).mode & 0o7777, 0o700);
    },
  };
}

async function dispatch(ref: string, config: Record<string, unknown>, before?: (id: number) => Promise<void>) {
  const marker = `e2e-${randomUUID()}`;
  const id = await createExecution(db.pool, { actionRef: ref, workerId, config, envVars: { E2E_MARKER: marker } });
  await before?.(id);
  await publishExecutionRequested(mq, workerId, { execution_id: id, action_ref: ref, config });
  return { id, marker };
}

async function finished(id: number) {
  await collector.waitFor(`ExecutionCompleted for ${id}`, (m) => m.some((x) => x.routingKey === 'execution.completed' && x.json?.payload?.execution_id === id), { timeoutMs: 30_000 });
  const row = await executionRow(db.pool, id);
  return { status: row.status, result: row.result ?? {}, messages: collector.forExecution(id) };
}

/** Attune's real core catalog (test/fixtures/catalog) and the test pack. */
async function seedRuntimes(): Promise<Record<string, number>> {
  const ids = await seedCoreRuntimes(db.pool);
  await db.pool.query(`INSERT INTO pack (ref, label, version) VALUES ('testpack', 'testpack', '1.0.0')`);
  return ids;
}

async function insertAction(_pack: string, def: ActionDef & { out_schema?: unknown }): Promise<void> {
  await db.pool.query(
    `INSERT INTO action (ref, pack, pack_ref, label, entrypoint, runtime, parameter_delivery, parameter_format, output_format, out_schema)
     VALUES ($1, (SELECT id FROM pack WHERE ref = 'testpack'), 'testpack', $1, $2, $3, $4, 'json', $5, $6)`,
    [def.ref, def.entrypoint, runtimeIds[def.runtime], def.parameter_delivery ?? 'stdin', def.output_format ?? 'text', def.out_schema === undefined ? null : JSON.stringify(def.out_schema)],
  );
}

before(async () => {
  db = await createTestDatabase('e2e_trust');
  await separateIds(db.pool);
  runtimeIds = await seedRuntimes();
  work = mkdtempSync(join(tmpdir(), 'attune-e2e-trust-'));
  artifactsDir = join(work, 'artifacts');
  envsDir = join(work, 'envs');
  tmp = join(work, 'tmp');
  mkdirSync(tmp);
  mq = await connectTest('e2e-trust');
  collector = await collectExecutionMessages(mq);
  agentEnv = {
    ATTUNE__DATABASE__URL: db.url,
    ATTUNE__DATABASE__SCHEMA: db.schema,
    ATTUNE__MESSAGE_QUEUE__URL: 'amqp://guest:guest@127.0.0.1:5672/%2f',
    ATTUNE__PACKS_BASE_DIR: PACKS_DIR,
    ATTUNE__ARTIFACTS_DIR: artifactsDir,
    ATTUNE__RUNTIME_ENVS_DIR: envsDir,
    ATTUNE__SECURITY__ENCRYPTION_KEY: KEY,
    ATTUNE__LOG__MIRROR_RUNTIME_STDOUT_TO_STDIO: 'true',
    ATTUNE__LOG__MIRROR_RUNTIME_STDERR_TO_STDIO: 'true',
    ATTUNE__WORKER__KILL_GRACE_PERIOD: '1',
    ATTUNE__WORKER__SHUTDOWN_TIMEOUT: '5',
    ATTUNE_WORKER_NAME: WORKER_NAME,
    TMPDIR: tmp,
  };
  agent = startAgent(agentEnv);
  workerId = await consumingWorkerId(agent, db.pool, WORKER_NAME);
});

after(async () => {
  const exit = await agent?.stop('SIGTERM');
  await collector?.close();
  await mq?.close();
  await db?.drop();
  rmSync(work, { recursive: true, force: true });
  assert.equal(exit?.code, 0, 'the agent stops cleanly');
});

describe('planted links', () => {
  test('the next log version file, an action directory and a runtime environment directory as links: victims untouched, runs terminal', async () => {
    const file = victimFile('v1-target');
    const dir = victimDir('action-dir-target');
    const env = victimDir('env-dir-target');
    for (const name of ['vlink', 'dlink', 'elink']) {
      await insertAction('testpack', { ref: `testpack.${name}`, entrypoint: name === 'elink' ? 'leak_secrets.py' : 'echo_params.sh', runtime: name === 'elink' ? 'python' : 'shell', output_format: 'json' });
    }
    mkdirSync(join(artifactsDir, 'testpack/vlink/stdout/log'), { recursive: true });
    symlinkSync(file.path, join(artifactsDir, 'testpack/vlink/stdout/log/v1.txt'));
    symlinkSync(dir.path, join(artifactsDir, 'testpack/dlink'));
    mkdirSync(join(envsDir, 'testpack'), { recursive: true });
    symlinkSync(env.path, join(envsDir, 'testpack/python'));

    const runs = await Promise.all(['vlink', 'dlink', 'elink'].map((n) => dispatch(`testpack.${n}`, { hello: n })));
    const results = await Promise.all(runs.map((r) => finished(r.id)));
    for (const [i, r] of results.entries()) {
      assert.equal(r.status, 'completed', JSON.stringify(r.result));
      assert.deepEqual(r.messages.filter((m) => m.routingKey === 'execution.status.changed').map((m) => m.json!.payload!.new_status), ['running', 'completed']);
      if (i < 2) assert.deepEqual(r.result.data, { hello: ['vlink', 'dlink'][i] }, 'the output is kept in the result');
    }
    file.check();
    dir.check();
    env.check();
    const warned = agent.logs.filter((l) => l.level === 'warn').map((l) => `${l.msg} ${l.err ?? ''}`).join('\n');
    assert.match(warned, /testpack\/vlink\/stdout\/log\/v1\.txt is a symbolic link: the agent does not follow links under its shared directories \(an action may have planted it\); remove it/);
    assert.match(warned, /testpack\/dlink is a symbolic link or not a directory/);
  });
});

describe('secrets', () => {
  test('a secret parameter and a secret output printed everywhere: in clear nowhere (files, result, messages, agent log)', async () => {
    await insertAction('testpack', {
      ref: 'testpack.leak', entrypoint: 'leak_secrets.py', runtime: 'python', output_format: 'json',
      out_schema: { password_sha256: { type: 'string' }, token: { type: 'string', secret: true } },
    });
    const runs = [];
    for (const exit of [0, 1]) {
      runs.push(await dispatch('testpack.leak', { password: redactionMarker(), token: TOKEN, exit }, async (id) => {
        await db.pool.query(
          `INSERT INTO execution_secret_value (entity_type, entity_id, json_path, source_kind, source_ref, encrypted_value, encryption_key_hash)
           VALUES ('execution_config', $1, '/password', 'keystore', 'core.pw', to_jsonb($2::text), $3)`,
          [id, encryptJson(PW, KEY), hashEncryptionKey(KEY)],
        );
      }));
    }
    const [ok, failed] = await Promise.all(runs.map((r) => finished(r.id)));
    assert.equal(ok.status, 'completed', JSON.stringify(ok.result));
    assert.equal(failed.status, 'failed', JSON.stringify(failed.result));
    assert.equal((ok.result.data as Record<string, unknown>).password_sha256, createHash('sha256').update(PW).digest('hex'), 'the action saw the decrypted value');
    assert.deepEqual((ok.result.data as Record<string, unknown>).token, redactionMarker());

    const forms = [PW, JSON.stringify(PW).slice(1, -1), JSON.stringify(PW).slice(1, -1).replace('ü', '\\u00fc'), PW.slice(-20), TOKEN];
    const nowhere = (where: string, text: string) => {
      for (const f of forms) assert.ok(!text.includes(f), `${where} contains ${JSON.stringify(f)} in clear`);
    };
    const files = readdirSync(artifactsDir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
    const leakFiles = files.filter((f) => f.includes('/testpack/leak/'));
    assert.equal(leakFiles.length, 4, `two log versions per run: ${leakFiles.join(', ')}`);
    for (const f of files) nowhere(f, readFileSync(f, 'utf8'));
    for (const r of [ok, failed]) {
      nowhere('the result', JSON.stringify(r.result));
      nowhere('the messages', JSON.stringify(r.messages.map((m) => m.json)));
    }
    // The mirror line comes after the run (held until the output was parsed).
    await agent.waitForLog('the mirrored stderr', (l) => l.stream === 'stderr' && String(l.msg).startsWith('split='));
    nowhere("the agent's log", JSON.stringify(agent.logs));
    assert.ok(agent.logs.some((l) => l.stream === 'stdout' && l.msg === 'stdout has the password [REDACTED] and the token [REDACTED] as text'));
    const stderr = readFileSync(leakFiles.find((f) => f.includes('/stderr/'))!, 'utf8');
    assert.match(stderr, /^password=\[REDACTED\]\njson=\{"password": "\[REDACTED\]"\}\nsplit=\[REDACTED\]\n$/);
  });
});

describe('parameter files after a SIGKILL', () => {
  test('the directory a killed agent left is swept by the next start; a gone agent\'s leftover too', async () => {
    await insertAction('testpack', { ref: 'testpack.sleepfile', entrypoint: 'sleep.sh', runtime: 'shell', parameter_delivery: 'file' });
    const { id, marker } = await dispatch('testpack.sleepfile', { password: 'in a file' });
    await waitFor('the action to run', async () => (await executionRow(db.pool, id)).status === 'running' && processesWithMarker(marker).length > 0);
    const left = readdirSync(tmp).filter((n) => n.startsWith('attune-exec-'));
    assert.equal(left.length, 1, `one parameter directory: ${left.join(', ')}`);
    assert.match(left[0], new RegExp(`^attune-exec-${agent.child.pid}-\\d+-${id}-[0-9a-f]{12}$`), 'named after the agent');
    agent.child.kill('SIGKILL');
    await agent.exited;
    for (const pid of processesWithMarker(marker)) process.kill(pid, 'SIGKILL');
    await waitFor('the orphaned action to die', () => processesWithMarker(marker).length === 0);
    assert.ok(existsSync(join(tmp, left[0], 'parameters.json')), 'the SIGKILL left the parameter file behind');

    agent = startAgent(agentEnv);
    const swept = await agent.waitForLog('the sweep', (l) => l.msg === 'removed parameter directories left by an agent that was killed');
    assert.deepEqual(swept.removed, [join(tmp, left[0])]);
    assert.deepEqual(readdirSync(tmp).filter((n) => n.startsWith('attune-exec-')), []);
    await agent.waitForLog('the restarted agent to consume', (l) => l.msg === 'consuming execution dispatches');
  });
});
