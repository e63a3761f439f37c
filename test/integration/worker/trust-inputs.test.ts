/**
 * Hostile rows refused with clear errors before anything runs (real processes, real files):
 * pack_ref and entrypoint paths that would leave packs_base_dir, action refs and runtime names that
 * would leave runtime_envs_dir, dotenv keys that would inject lines, and decryption errors that
 * could quote a secret.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { formatDotenv } from '../../../src/execution/params.ts';
import { hashEncryptionKey, restoreSecretValues } from '../../../src/execution/secrets.ts';
import * as h from '../../helpers/execution.ts';

const run = (action: Parameters<typeof h.action>[1] & { entrypoint?: string }, over: { config?: Record<string, unknown>; runtimeName?: string } = {}) =>
  h.run({
    execution: h.execution({ config: over.config ?? { x: 1 } }),
    action: h.action(action.entrypoint ?? 'echo_params.sh', action),
    runtime: h.runtime('shell', over.runtimeName ? { name: over.runtimeName } : {}),
    config: h.config(), detected: h.detected(), baselineEnv: h.baseline(),
  });

test('pack_ref that is no pack ref (../x, /etc, a.b, empty): refused naming the field, nothing runs', async () => {
  for (const packRef of ['../x', '/etc', '..', 'a.b', 'Upper', '']) {
    const out = await run({ pack_ref: packRef });
    assert.equal(out.status, 'failed');
    assert.equal(out.result.error,
      `Action execution failed: action testpack.echo_params: pack_ref ${JSON.stringify(packRef)} is not a pack ref (a lowercase letter, then lowercase letters, digits, '-' or '_'), so it cannot name a directory under packs_base_dir=${h.PACKS_DIR}; fix the action's pack_ref`);
    assert.equal(out.result.exit_code, undefined, 'nothing ran');
  }
});

test('entrypoint ../../etc/passwd and absolute entrypoints: refused, nothing runs', async () => {
  const up = await run({ entrypoint: '../../etc/passwd', ref: 'testpack.hostile' });
  assert.equal(up.status, 'failed');
  assert.equal(up.result.error, `Action execution failed: action testpack.hostile: entrypoint "../../etc/passwd" has a '..' component; it must name a file inside the pack's actions/ directory`);
  const abs = await run({ entrypoint: '/etc/passwd' });
  assert.match(String(abs.result.error), /entrypoint "\/etc\/passwd" is absolute; it must be relative to the pack's actions\/ directory/);
  assert.equal(abs.result.exit_code, undefined);
});

test('runtime environment directory: an action ref whose pack part is no pack ref, or a runtime name with a slash, is refused', async () => {
  const ref = await run({ ref: '../../tmp/evil.run' });
  assert.equal(ref.status, 'failed');
  assert.equal(ref.result.error, `Failed to prepare execution context: action ref "../../tmp/evil.run": its pack part "" is not a pack ref (a lowercase letter, then lowercase letters, digits, '-' or '_'), so it names no runtime environment directory under runtime_envs_dir`);
  const rtName = await run({}, { runtimeName: '../../etc' });
  assert.equal(rtName.result.error, `Failed to prepare execution context: runtime name "../../etc" cannot name a directory under runtime_envs_dir=${h.config().runtimeEnvsDir}; fix the runtime's name`);
});

test('dotenv: a parameter name with a newline (or =, #, quotes, spaces) is a preparation error, never an injected line', async () => {
  const out = await run({ parameter_format: 'dotenv' }, { config: { "a\nINJECTED": 'x', ok: 'y' } });
  assert.equal(out.status, 'failed');
  assert.equal(out.result.error, 'Failed to prepare execution context: cannot format parameters as dotenv: parameter name "a\\nINJECTED" cannot be written as a dotenv line (it contains "\\n"); rename the parameter or use parameter_format json or yaml');
  assert.equal(out.result.exit_code, undefined, 'nothing ran');
  for (const key of ['a=b', 'a#b', "a'b", 'a b', 'a\rb', 'a"b', 'a\\b']) assert.throws(() => formatDotenv({ [key]: 1 }), /cannot be written as a dotenv line/, key);
  assert.throws(() => formatDotenv({ outer: { 'in\nner': 1 } }), /"outer\.in\\nner"/, 'nested keys are checked as written');
  // What Attune's packs use stays accepted.
  assert.equal(formatDotenv({ headers: { 'Content-Type': 'a' }, 'x-y_z.1': 2 }), "headers.Content-Type='a'\nx-y_z.1='2'");
  // The same key through json delivery is fine (JSON escapes it).
  const json = await run({ output_format: 'json' }, { config: { 'a\nb': 'x' } });
  assert.equal(json.status, 'completed', JSON.stringify(json.result));
});

test('a decrypted value that is not JSON: the error names the path and quotes nothing of the value', () => {
  const key = 'integration-test-encryption-key-0123456789';
  const secret = 'SECRET-START-of-a-value{not json';
  const nonce = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', createHash('sha256').update(key).digest(), nonce);
  const body = Buffer.concat([cipher.update(secret, 'utf8'), cipher.final()]);
  const encrypted = Buffer.concat([nonce, body, cipher.getAuthTag()]).toString('base64');
  let message = '';
  try {
    restoreSecretValues({}, [{ json_path: '/api/key', encrypted_value: encrypted, encryption_key_hash: hashEncryptionKey(key) }], key);
  } catch (e) {
    message = (e as Error).message;
  }
  assert.equal(message, "secret path '/api/key': the decrypted value is not valid JSON");
  for (const part of ['SECRET', 'START', 'not json', '{']) assert.ok(!message.includes(part), part);
});

test('runtime_envs_dir: a link planted at {pack}/{runtime} leads the agent nowhere it writes (it writes nothing there)', async (t) => {
  const envs = h.tempDir('envs');
  const victim = h.tempDir('envs-victim');
  t.after(() => {
    rmSync(envs, { recursive: true, force: true });
    rmSync(victim, { recursive: true, force: true });
  });
  writeFileSync(join(victim, 'keep'), 'victim bytes', { mode: 0o600 });
  mkdirSync(join(envs, 'testpack'));
  const { symlinkSync } = await import('node:fs');
  symlinkSync(victim, join(envs, 'testpack', 'shell'));
  const out = await h.run({
    execution: h.execution({ config: { x: 1 } }), action: h.action('echo_params.sh', { output_format: 'json' }), runtime: h.runtime('shell'),
    config: { ...h.config(), runtimeEnvsDir: envs }, detected: h.detected(), baselineEnv: h.baseline(),
  });
  assert.equal(out.status, 'completed');
  assert.equal(readFileSync(join(victim, 'keep'), 'utf8'), 'victim bytes');
  assert.deepEqual((await import('node:fs')).readdirSync(victim), ['keep']);
  assert.ok(existsSync(join(envs, 'testpack', 'shell')));
});
