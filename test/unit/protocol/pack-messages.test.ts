/** Pack lifecycle payload decoders (docs/attune-compat.md "Messages consumed"). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodePackDeleted, decodePackRegistered, decodePackTestRequested } from '../../../src/protocol/pack-messages.ts';

const DIGEST = 'a'.repeat(64);

test('PackRegistered: Attune\'s payload decodes; optional fields may be null; bad types name the field', () => {
  assert.deepEqual(decodePackRegistered({ pack_id: 3, pack_ref: 'acme', version: '1.0.0', release_id: 9, release_digest: DIGEST, runtime_names: ['python'] }), {
    ok: true, value: { pack_id: 3, pack_ref: 'acme', version: '1.0.0', release_id: 9, release_digest: DIGEST, runtime_names: ['python'] },
  });
  assert.deepEqual(decodePackRegistered({ pack_id: 3, pack_ref: 'acme', version: null, release_id: null, release_digest: null }), {
    ok: true, value: { pack_id: 3, pack_ref: 'acme', version: null, release_id: null, release_digest: null, runtime_names: [] },
  });
  const bad = decodePackRegistered({ pack_id: 3, pack_ref: 'acme', release_digest: 'ABC' });
  assert.equal(bad.ok, false);
  assert.match((bad as { error: string }).error, /field "release_digest" must be a lowercase sha256/);
  assert.match((decodePackRegistered({ pack_ref: 'acme' }) as { error: string }).error, /field "pack_id" must be an integer id/);
  assert.match((decodePackRegistered({ pack_id: 1, pack_ref: 'acme', runtime_names: [1] }) as { error: string }).error, /runtime_names/);
});

test('PackDeleted: lists default to [] (serde defaults); non-string entries refused', () => {
  assert.deepEqual(decodePackDeleted({ pack_id: 1, pack_ref: 'acme' }), { ok: true, value: { pack_id: 1, pack_ref: 'acme', runtime_environment_paths: [], release_digests: [] } });
  assert.equal(decodePackDeleted({ pack_id: 1, pack_ref: 'acme', runtime_environment_paths: [null] }).ok, false);
  assert.equal(decodePackDeleted('x').ok, false);
});

test('PackTestRequested: the fields the agent uses; the rest ignored; pack_version and trigger_reason required as in Attune', () => {
  assert.deepEqual(decodePackTestRequested({ pack_install_id: 5, pack_ref: 'acme', pack_version: '2.0.0', trigger_reason: 'install', candidate_access_token: 'secret', worker_selector: {} }), {
    ok: true, value: { pack_install_id: 5, pack_ref: 'acme', pack_version: '2.0.0', trigger_reason: 'install', candidate_path: null, candidate_access_token: 'secret' },
  });
  assert.deepEqual(decodePackTestRequested({ pack_install_id: 5, pack_ref: 'acme', pack_version: '2.0.0', trigger_reason: 'manual', candidate_path: '/p/.pack-test-5', candidate_access_token: null }), {
    ok: true, value: { pack_install_id: 5, pack_ref: 'acme', pack_version: '2.0.0', trigger_reason: 'manual', candidate_path: '/p/.pack-test-5', candidate_access_token: null },
  });
  assert.match((decodePackTestRequested({ pack_install_id: '5', pack_ref: 'acme' }) as { error: string }).error, /pack_install_id/);
  assert.match((decodePackTestRequested({ pack_install_id: 5, pack_ref: 'acme', trigger_reason: 'install' }) as { error: string }).error, /pack_version/);
  assert.match((decodePackTestRequested({ pack_install_id: 5, pack_ref: 'acme', pack_version: '1', trigger_reason: 'install', candidate_path: 3 }) as { error: string }).error, /candidate_path/);
});
