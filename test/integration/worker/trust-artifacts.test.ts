/**
 * The shared artifacts volume as an action could leave it (real PostgreSQL, real processes, real
 * files): links planted where the agent writes next, file-level and directory-level, in the
 * `execution_{id}/` layout and the log artifacts' `{ref}/…/v{N}.txt` layout, plus hard links and
 * FIFOs. A victim outside keeps its bytes and mode, every run still ends terminal with its output
 * in the result, and the refusal is logged with the path and the fix.
 * Then secrets: nothing of a secret parameter or a secret output reaches a file under
 * artifacts_dir, a result field or the agent's log (mirror on) in clear.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { linkSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import pino from 'pino';
import { createTestDatabase, type TestDatabase } from '../../helpers/pg.ts';
import { ENTITY_EXECUTION_CONFIG, findStoredSecretValues } from '../../../src/db/secret-values.ts';
import { encryptJson, hashEncryptionKey, redactionMarker } from '../../../src/execution/secrets.ts';
import { REDACTED_TEXT } from '../../../src/execution/secret-scrub.ts';
import { safeFsMode, setSafeFsMode } from '../../../src/execution/safe-fs.ts';
import * as h from '../../helpers/execution.ts';

const KEY = 'integration-test-encryption-key-0123456789';
let db: TestDatabase;
let work: string;
before(async () => {
  db = await createTestDatabase('trust_artifacts');
  work = h.tempDir('trust');
});
after(async () => {
  await db?.drop();
  rmSync(work, { recursive: true, force: true });
});

/** A file outside artifacts_dir the planted links point at: 0600, known bytes. */
function victim(name: string): { path: string; check(): void } {
  const dir = join(work, 'outside');
  mkdirSync(dir, { recursive: true });
  const path = join(dir, name);
  writeFileSync(path, `victim ${name}\n`, { mode: 0o600 });
  return {
    path,
    check() {
      assert.equal(readFileSync(path, 'utf8'), `victim ${name}\n`, `${path} keeps its bytes`);
      assert.equal(statSync(path).mode & 0o7777, 0o600, `${path} keeps its mode`);
    },
  };
}

function capture(): { log: pino.Logger; lines: Record<string, unknown>[]; text(): string } {
  const lines: Record<string, unknown>[] = [];
  const raw: string[] = [];
  const log = pino({ level: 'debug' }, { write: (l: string) => { raw.push(l); lines.push(JSON.parse(l)); } });
  return { log, lines, text: () => raw.join('') };
}

async function executionRow(ref: string, config: Record<string, unknown> = {}): Promise<number> {
  return Number((await db.pool.query(`INSERT INTO execution (action_ref, status, config) VALUES ($1, 'running', $2) RETURNING id`, [ref, config])).rows[0].id);
}

async function runIn(artifactsDir: string, ref: string, opts: { tables: boolean; entrypoint?: string; config?: Record<string, unknown>; id?: number; outSchema?: unknown; mirror?: boolean; key?: string },
  log: pino.Logger) {
  const id = opts.id ?? (await executionRow(ref, opts.config));
  const entrypoint = opts.entrypoint ?? 'echo_params.sh';
  const out = await h.run({
    execution: h.execution({ id, config: opts.config ?? { hello: 'world' } }),
    action: h.action(entrypoint, { ref, output_format: 'json', out_schema: opts.outSchema ?? null }),
    runtime: h.runtime(entrypoint.endsWith('.py') ? 'python' : 'shell'),
    config: { ...h.config({ artifactsDir, encryptionKey: opts.key ?? '' }), log: { mirrorStdout: opts.mirror ?? false, mirrorStderr: opts.mirror ?? false } },
    detected: h.detected(), baselineEnv: h.baseline(), logger: log,
    // What the claim reads along with the row; `tables: false` is a schema without log artifact tables.
    secrets: await findStoredSecretValues(db.pool, ENTITY_EXECUTION_CONFIG, id),
    ...h.pgRunPorts(db.pool, { logArtifacts: opts.tables, secretValues: true }),
  });
  await out.logsSealed;
  return { id, out };
}

const warnings = (c: ReturnType<typeof capture>) => c.lines.filter((l) => l.level === 40).map((l) => `${l.msg} ${l.err ?? ''}`);

describe('planted links under artifacts_dir', () => {
  test('execution_{id}/ layout, file level: stdout.log, stderr.log and result.json links are not followed', async () => {
    const dir = join(work, 'a1');
    const id = await executionRow('trustpack.files');
    const [out1, err1, res1] = [victim('stdout-target'), victim('stderr-target'), victim('result-target')];
    mkdirSync(join(dir, `execution_${id}`), { recursive: true });
    symlinkSync(out1.path, join(dir, `execution_${id}`, 'stdout.log'));
    symlinkSync(err1.path, join(dir, `execution_${id}`, 'stderr.log'));
    symlinkSync(res1.path, join(dir, `execution_${id}`, 'result.json'));
    const c = capture();
    const { out } = await runIn(dir, 'trustpack.files', { tables: false, id }, c.log);
    assert.equal(out.status, 'completed');
    assert.deepEqual(out.result.data, { hello: 'world' }, 'the output is kept in the result');
    for (const v of [out1, err1, res1]) v.check();
    // result.json is written whole and renamed over the name: the planted link itself is replaced.
    assert.ok(lstatSync(join(dir, `execution_${id}`, 'result.json')).isFile());
    assert.deepEqual(JSON.parse(readFileSync(join(dir, `execution_${id}`, 'result.json'), 'utf8')), { hello: 'world' });
    const w = warnings(c).join('\n');
    assert.match(w, new RegExp(`cannot create log file ${dir}/execution_${id}/stdout\\.log: ${dir}/execution_${id}/stdout\\.log is a symbolic link: the agent does not follow links under its shared directories \\(an action may have planted it\\); remove it`));
    assert.match(w, /stderr\.log is a symbolic link/);
  });

  test('execution_{id}/ layout, directory level: a linked execution directory is not entered', async () => {
    const dir = join(work, 'a2');
    mkdirSync(dir);
    const id = await executionRow('trustpack.dirlink');
    const outside = join(work, 'outside-dir-a2');
    mkdirSync(outside, { mode: 0o700 });
    symlinkSync(outside, join(dir, `execution_${id}`));
    const c = capture();
    const { out } = await runIn(dir, 'trustpack.dirlink', { tables: false, id }, c.log);
    assert.equal(out.status, 'completed');
    assert.deepEqual(out.result.data, { hello: 'world' });
    assert.deepEqual(readdirSync(outside), [], 'nothing written through the link');
    assert.equal(statSync(outside).mode & 0o7777, 0o700, 'the linked directory keeps its mode');
    assert.match(warnings(c).join('\n'), new RegExp(`${dir}/execution_${id} is a symbolic link or not a directory: .*remove it`));
  });

  test('{ref}/…/v{N}.txt layout, file level: the next version file planted as a link; the seal does not chmod through it', async () => {
    const dir = join(work, 'b1');
    const v = victim('v1-target');
    mkdirSync(join(dir, 'trustpack/vfile/stdout/log'), { recursive: true });
    symlinkSync(v.path, join(dir, 'trustpack/vfile/stdout/log/v1.txt'));
    const c = capture();
    const { id, out } = await runIn(dir, 'trustpack.vfile', { tables: true }, c.log);
    assert.equal(out.status, 'completed');
    assert.deepEqual(out.result.data, { hello: 'world' });
    v.check();
    const w = warnings(c).join('\n');
    assert.match(w, /trustpack\/vfile\/stdout\/log\/v1\.txt is a symbolic link: .*remove it/);
    assert.match(w, /cannot seal the log artifacts of this execution/);
    // stderr was unaffected; the stdout version stays pending for Attune to reclaim.
    const rows = (await db.pool.query(`SELECT meta->>'stream' AS stream, body_state::text FROM artifact_version WHERE execution = $1 ORDER BY 1`, [id])).rows;
    assert.equal(rows.length, 2);
  });

  test('{ref}/…/v{N}.txt layout, directory level: a link at the pack, the action or the stream directory', async () => {
    for (const [ref, linkAt] of [['linkpack.one', 'linkpack'], ['trustpack.two', 'trustpack/two'], ['trustpack.three', 'trustpack/three/stderr']] as const) {
      const dir = join(work, `b2-${linkAt.replaceAll('/', '-')}`);
      const outside = join(work, `outside-${linkAt.replaceAll('/', '-')}`);
      mkdirSync(outside, { mode: 0o700 });
      mkdirSync(join(dir, linkAt, '..'), { recursive: true });
      symlinkSync(outside, join(dir, linkAt));
      const c = capture();
      const { out } = await runIn(dir, ref, { tables: true }, c.log);
      assert.ok(['completed', 'failed'].includes(out.status), `${ref}: terminal (${out.status})`);
      assert.equal(out.status, 'completed');
      assert.deepEqual(out.result.data, { hello: 'world' });
      assert.deepEqual(readdirSync(outside), [], `${linkAt}: nothing created through the link`);
      assert.equal(statSync(outside).mode & 0o7777, 0o700);
      assert.match(warnings(c).join('\n'), new RegExp(`${dir}/${linkAt} is a symbolic link or not a directory`));
    }
  });

  test('a log directory the agent keeps open from an earlier run, then replaced by a link: the next run does not follow it', async () => {
    const dir = join(work, 'b5');
    const c = capture();
    const first = await runIn(dir, 'trustpack.swap', { tables: true }, c.log);
    assert.equal(first.out.status, 'completed');
    assert.deepEqual(warnings(c), []);
    const outside = join(work, 'outside-swap');
    mkdirSync(outside, { mode: 0o700 });
    rmSync(join(dir, 'trustpack/swap/stdout'), { recursive: true });
    symlinkSync(outside, join(dir, 'trustpack/swap/stdout'));
    const second = await runIn(dir, 'trustpack.swap', { tables: true }, c.log);
    assert.equal(second.out.status, 'completed');
    assert.deepEqual(second.out.result.data, { hello: 'world' });
    assert.deepEqual(readdirSync(outside), []);
    assert.match(warnings(c).join('\n'), /trustpack\/swap\/stdout is a symbolic link or not a directory/);
    assert.equal(readFileSync(join(dir, 'trustpack/swap/stderr/log/v2.txt'), 'utf8'), '', 'the other stream is written as usual');
  });

  test('without /proc (path mode): planted links are still refused, component by component', async (t) => {
    assert.equal(safeFsMode(), 'proc-fd', 'this machine has /proc: the other tests ran the race-free mode');
    setSafeFsMode('path');
    t.after(() => setSafeFsMode(undefined));
    const dir = join(work, 'b6');
    const v = victim('pathmode-target');
    const outside = join(work, 'outside-pathmode');
    mkdirSync(outside, { mode: 0o700 });
    mkdirSync(join(dir, 'trustpack/pfile/stdout/log'), { recursive: true });
    symlinkSync(v.path, join(dir, 'trustpack/pfile/stdout/log/v1.txt'));
    mkdirSync(join(dir, 'trustpack'), { recursive: true });
    symlinkSync(outside, join(dir, 'trustpack/pdir'));
    const c = capture();
    for (const ref of ['trustpack.pfile', 'trustpack.pdir']) {
      const { out } = await runIn(dir, ref, { tables: true }, c.log);
      assert.equal(out.status, 'completed');
      assert.deepEqual(out.result.data, { hello: 'world' });
    }
    v.check();
    assert.deepEqual(readdirSync(outside), []);
    const w = warnings(c).join('\n');
    assert.match(w, /pfile\/stdout\/log\/v1\.txt is a symbolic link/);
    assert.match(w, /trustpack\/pdir is a symbolic link or not a directory/);
    assert.ok(lstatSync(join(dir, 'trustpack/pfile/stderr/log/v1.txt')).isFile(), 'the other stream is written as usual');
  });

  test('a hard link to a victim, or a FIFO, at the next version file: refused without blocking', async () => {
    const dir = join(work, 'b3');
    const v = victim('hardlink-target');
    mkdirSync(join(dir, 'trustpack/hard/stdout/log'), { recursive: true });
    linkSync(v.path, join(dir, 'trustpack/hard/stdout/log/v1.txt'));
    mkdirSync(join(dir, 'trustpack/fifo/stdout/log'), { recursive: true });
    execFileSync('mkfifo', [join(dir, 'trustpack/fifo/stdout/log/v1.txt')]);
    const c = capture();
    const hard = await runIn(dir, 'trustpack.hard', { tables: true }, c.log);
    const fifo = await runIn(dir, 'trustpack.fifo', { tables: true }, c.log);
    for (const r of [hard, fifo]) assert.equal(r.out.status, 'completed');
    v.check();
    const w = warnings(c).join('\n');
    assert.match(w, /hard\/stdout\/log\/v1\.txt is a file with 2 hard links/);
    assert.match(w, /fifo\/stdout\/log\/v1\.txt is (a FIFO or socket|not a regular file)/);
  });

  test('a leftover file of this agent at the name is reused (truncated), as before', async () => {
    const dir = join(work, 'b4');
    mkdirSync(join(dir, 'trustpack/left/stdout/log'), { recursive: true });
    writeFileSync(join(dir, 'trustpack/left/stdout/log/v1.txt'), 'stale bytes from an earlier database\n');
    const c = capture();
    const { out } = await runIn(dir, 'trustpack.left', { tables: true }, c.log);
    assert.equal(out.status, 'completed');
    assert.equal(readFileSync(join(dir, 'trustpack/left/stdout/log/v1.txt'), 'utf8'), '{"hello":"world"}\n');
    assert.equal(statSync(join(dir, 'trustpack/left/stdout/log/v1.txt')).mode & 0o777, 0o444, 'sealed');
    assert.deepEqual(warnings(c), []);
  });
});

describe('secrets never in clear', () => {
  const pw = `pw-"quoted"\\back-ü-${randomUUID()}`;
  const token = `tok-${randomUUID()}`;
  /** Every form the action prints them in: raw, JSON-escaped, Python's ASCII JSON escapes. */
  const pwForms = [pw, JSON.stringify(pw).slice(1, -1), JSON.stringify(pw).slice(1, -1).replace('ü', '\\u00fc'), pw.slice(-20)];

  function filesUnder(dir: string): string[] {
    return readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
  }

  // secretOutput: the out_schema marks `token` secret (output held back until parsed, then
  // scrubbed); without it the secret parameter is scrubbed from the streams as they are read.
  for (const [exit, tables, secretOutput] of [[0, true, true], [1, true, true], [0, false, true], [0, true, false], [1, false, false]] as const) {
    test(`exit ${exit}, ${tables ? 'log artifact files' : 'execution_{id}/ files'}, ${secretOutput ? 'with' : 'without'} a secret output: secrets scrubbed from files, result and the mirrored log`, async () => {
      const forms = secretOutput ? [...pwForms, token] : pwForms;
      const assertNowhere = (where: string, text: string) => {
        for (const f of forms) assert.ok(!text.includes(f), `${where} contains ${JSON.stringify(f)} in clear`);
      };
      const dir = join(work, `secrets-${exit}-${tables}`);
      const config = { password: redactionMarker(), token, exit };
      const ref = `trustpack.leak${exit}${tables ? 't' : 'p'}${secretOutput ? 's' : 'n'}`;
      const id = await executionRow(ref, config);
      await db.pool.query(
        `INSERT INTO execution_secret_value (entity_type, entity_id, json_path, source_kind, source_ref, encrypted_value, encryption_key_hash)
         VALUES ('execution_config', $1, '/password', 'keystore', 'core.pw', to_jsonb($2::text), $3)`,
        [id, encryptJson(pw, KEY), hashEncryptionKey(KEY)],
      );
      const c = capture();
      const { out } = await runIn(dir, ref, {
        tables, id, config, entrypoint: 'leak_secrets.py', mirror: true, key: KEY,
        outSchema: { password_sha256: { type: 'string' }, token: { type: 'string', secret: secretOutput } },
      }, c.log);
      assert.equal(out.status, exit === 0 ? 'completed' : 'failed', JSON.stringify(out.result));
      const files = filesUnder(dir);
      assert.ok(files.length >= (exit === 0 ? 3 : 2), `log files (and result.json) written: ${files.join(', ')}`);
      for (const f of files) assertNowhere(f, readFileSync(f, 'utf8'));
      assertNowhere('the result', JSON.stringify(out.result));
      assertNowhere("the agent's log", c.text());
      // Scrubbed, not merely absent: the markers are where the secrets were.
      const stderrFile = files.find((f) => /stderr/.test(f))!;
      const stderr = readFileSync(stderrFile, 'utf8');
      assert.match(stderr, new RegExp(`password=\\${REDACTED_TEXT.slice(0, -1)}\\]\\n`));
      assert.match(stderr, /split=\[REDACTED\]\n/, 'a secret split across two writes');
      const mirrored = c.lines.filter((l) => l.stream === 'stdout').map((l) => l.msg);
      const shownToken = secretOutput ? REDACTED_TEXT : token;
      assert.ok(mirrored.includes(`stdout has the password ${REDACTED_TEXT} and the token ${shownToken} as text`), JSON.stringify(mirrored));
      if (exit === 0) {
        const data = out.result.data as Record<string, unknown>;
        assert.equal(data.password_sha256, createHash('sha256').update(pw).digest('hex'), 'the action got the decrypted parameter');
        assert.deepEqual(data.token, secretOutput ? redactionMarker() : token);
        assert.equal(data.echo, REDACTED_TEXT);
        assert.equal(data.note, `token is ${shownToken}`);
        const stored = (await db.pool.query(`SELECT json_path FROM execution_secret_value WHERE entity_type = 'execution_result' AND entity_id = $1`, [id])).rows;
        assert.deepEqual(stored, secretOutput ? [{ json_path: '/data/token' }] : [], 'a secret output itself is stored encrypted');
      } else {
        assert.ok(String(out.result.stdout).includes(`the token ${shownToken} as text`), 'unparsed output: a secret output is still found and scrubbed');
        assert.ok(String(out.result.stdout).includes(`the password ${REDACTED_TEXT}`));
      }
    });
  }
});
