/** Pack file resolution on a real (temporary) packs volume: pinned releases and the legacy layout. */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { cpSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { resolveActionSource, actionFilePath, releaseRoot, RELEASE_MARKER } from '../../../src/execution/pack-files.ts';
import * as h from '../../helpers/execution.ts';

const base = h.tempDir('packs');
after(() => rmSync(base, { recursive: true, force: true }));

/** Lay out a release like Attune's volume transport: pack/ + pack.tar.gz (or the ready marker). */
function makeRelease(opts: { archive?: Buffer; marker?: boolean; packYaml?: boolean } = {}): string {
  const archive = opts.archive ?? Buffer.from(`archive ${Math.random()}`);
  const digest = createHash('sha256').update(archive).digest('hex');
  const root = releaseRoot(base, digest);
  mkdirSync(join(root, 'pack'), { recursive: true });
  cpSync(join(h.PACKS_DIR, h.PACK, 'actions'), join(root, 'pack', 'actions'), { recursive: true });
  if (opts.packYaml !== false) writeFileSync(join(root, 'pack', 'pack.yaml'), 'ref: testpack\n');
  if (opts.marker) writeFileSync(join(root, RELEASE_MARKER), digest + '\n');
  else writeFileSync(join(root, 'pack.tar.gz'), archive);
  return digest;
}

const act = (entrypoint: string, over: Partial<ReturnType<typeof h.action>> = {}) => h.action(entrypoint, over);
const exe = (digest: string | null) => h.execution({ pack_release_digest: digest });

test('pinned release verified by pack.tar.gz hash', async () => {
  const digest = makeRelease();
  const r = await resolveActionSource({ packsBaseDir: base, action: act('echo_params.sh'), execution: exe(digest) });
  assert.deepEqual(r, {
    ok: true,
    source: { kind: 'file', path: join(releaseRoot(base, digest), 'pack/actions/echo_params.sh'), packDir: join(releaseRoot(base, digest), 'pack'), packDirExists: true },
  });
});

test('pinned release verified by the .attune-release-ready marker; cache skips re-hashing', async () => {
  const digest = makeRelease({ marker: true });
  const verified = new Set<string>();
  const r = await resolveActionSource({ packsBaseDir: base, action: act('echo_params.sh'), execution: exe(digest), verifiedReleases: verified });
  assert.equal(r.ok, true);
  assert.ok(verified.has(digest));
});

test('pinned release missing, unverifiable or tampered: clear errors', async () => {
  const absent = 'f'.repeat(64);
  const a = await resolveActionSource({ packsBaseDir: base, action: act('echo_params.sh'), execution: exe(absent) });
  assert.equal(a.ok, false);
  assert.match(!a.ok ? a.error : '', /^action testpack\.echo_params: pack release sha256:ffffffffffff is not on this worker: .*pack\.yaml not found \(packs\.transport=volume; mount the Attune packs volume/);

  const noYaml = makeRelease({ packYaml: false });
  assert.equal((await resolveActionSource({ packsBaseDir: base, action: act('echo_params.sh'), execution: exe(noYaml) })).ok, false);

  const tampered = makeRelease();
  writeFileSync(join(releaseRoot(base, tampered), 'pack.tar.gz'), 'something else');
  const t = await resolveActionSource({ packsBaseDir: base, action: act('echo_params.sh'), execution: exe(tampered) });
  assert.match(!t.ok ? t.error : '', /cannot be verified: .*pack\.tar\.gz hashes to sha256:[0-9a-f]{12}…, not the pinned digest/);

  const bad = await resolveActionSource({ packsBaseDir: base, action: act('echo_params.sh'), execution: exe('../../etc') });
  assert.match(!bad.ok ? bad.error : '', /is not 64 lowercase hex characters/);
});

test('entrypoints may not leave the pack directory', () => {
  assert.equal(actionFilePath('/p/demo', 'sub/run.sh').ok, true);
  // '..' is refused even when it stays inside the pack lexically: the kernel resolves `dir/..`
  // through a linked `dir`, a lexical check cannot.
  assert.match((actionFilePath('/p/demo', '../lib/x.sh') as { error: string }).error, /entrypoint "\.\.\/lib\/x\.sh" has a '\.\.' component; it must name a file inside the pack's actions\/ directory/);
  assert.match((actionFilePath('/p/demo', '../../etc/passwd') as { error: string }).error, /has a '\.\.' component/);
  assert.match((actionFilePath('/p/demo', 'sub/../../../etc/passwd') as { error: string }).error, /has a '\.\.' component/);
  assert.match((actionFilePath('/p/demo', '/etc/passwd') as { error: string }).error, /is absolute/);
  assert.match((actionFilePath('/p/demo', '') as { error: string }).error, /empty entrypoint/);
});

test('legacy layout: missing pack dir named in the error', async () => {
  const r = await resolveActionSource({ packsBaseDir: base, action: act('x.sh', { pack_ref: 'nopack' }), execution: exe(null) });
  assert.match(!r.ok ? r.error : '', /the pack directory .*\/nopack does not exist \(is the packs volume mounted at packs_base_dir=/);
});

test('adhoc actions: core packs look for a file first, others are always inline', async () => {
  const inline = await resolveActionSource({ packsBaseDir: h.PACKS_DIR, action: act('echo hi', { is_adhoc: true, pack_ref: 'adhoc' }), execution: exe(null) });
  assert.equal(inline.ok && inline.source.kind, 'inline');
  const noFile = await resolveActionSource({ packsBaseDir: h.PACKS_DIR, action: act('echo hi', { is_adhoc: true, pack_ref: 'core' }), execution: exe(null) });
  assert.equal(noFile.ok && noFile.source.kind, 'inline');
  const escaping = await resolveActionSource({ packsBaseDir: h.PACKS_DIR, action: act('cat /etc/hostname', { is_adhoc: true, pack_ref: 'core' }), execution: exe(null) });
  assert.equal(escaping.ok && escaping.source.kind, 'inline', 'code that looks like a path is still just code');
});

test('a run uses the pinned release copy with its digest in the environment', async () => {
  const digest = makeRelease();
  const packDir = join(releaseRoot(base, digest), 'pack');
  const cfg = { ...h.config({ artifactsDir: join(base, 'artifacts') }), packsBaseDir: base };
  const out = await h.run({
    execution: h.execution({ pack_release_digest: digest, config: { k: 'v' } }),
    action: h.action('echo_params.sh', { parameter_delivery: 'file' }), runtime: h.runtime('shell'), config: cfg,
    detected: h.detected(), baselineEnv: h.baseline(),
  });
  assert.equal(out.status, 'completed');
  assert.equal(out.result.stdout, '{"k":"v"}');
  const env = await h.run({
    execution: h.execution({ pack_release_digest: digest }),
    action: h.action('pwd; echo "$ATTUNE_PACK_RELEASE_DIGEST"', { is_adhoc: true, pack_ref: 'core' }), runtime: h.runtime('shell'),
    config: cfg, detected: h.detected(), baselineEnv: h.baseline(),
  });
  assert.equal(env.result.stdout, `${packDir}\n${digest}\n`);
  const missing = await h.run({
    execution: h.execution({ pack_release_digest: 'e'.repeat(64) }), action: h.action('echo_params.sh'), runtime: h.runtime('shell'),
    config: cfg, detected: h.detected(), baselineEnv: h.baseline(),
  });
  assert.equal(missing.status, 'failed');
  assert.match(missing.result.error as string, /^Action execution failed: action testpack\.echo_params: pack release sha256:eeeeeeeeeeee is not on this worker/);
});
