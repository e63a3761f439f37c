import { test } from 'node:test';
import assert from 'node:assert/strict';
import { declaresDependencies, describe, setupEnv } from '../../../src/execution/environments.ts';

test('declaresDependencies: a manifest that asks for nothing needs no environment', () => {
  assert.equal(declaresDependencies('package.json', '{ "private": true, "type": "commonjs" }'), false);
  assert.equal(declaresDependencies('package.json', '{ "dependencies": {} }'), false);
  assert.equal(declaresDependencies('package.json', '{ "dependencies": { "left-pad": "1.3.0" } }'), true);
  assert.equal(declaresDependencies('package.json', '{ not json'), true, 'the installer reports a broken manifest');
  assert.equal(declaresDependencies('requirements.txt', '# none yet\n\n   \n'), false);
  assert.equal(declaresDependencies('requirements.txt', '# pinned\nrequests==2.31.0\n'), true);
  assert.equal(declaresDependencies('Gemfile', ''), false);
  assert.equal(declaresDependencies('Gemfile', "gem 'rake'\n"), true);
});

test('setupEnv: baseline + runtime env_vars + the setup variables inside the environment; ATTUNE_* ignored', () => {
  const env = setupEnv(
    { PATH: '/usr/bin:/bin', LANG: 'C.UTF-8', HOME: '/root' },
    { PYTHONPATH: { operation: 'prepend', value: '{pack_dir}/lib', separator: ':' }, ATTUNE_X: 'no', PATH: { operation: 'prepend', value: '{env_dir}/bin' } },
    { pack_dir: '/packs/acme', env_dir: '/envs/acme/python', interpreter: '/usr/bin/python3', manifest_path: '/packs/acme/requirements.txt' },
    '/envs/acme/.python.tmp-1',
  );
  assert.deepEqual(env, {
    PATH: '/envs/acme/python/bin:/usr/bin:/bin',
    LANG: 'C.UTF-8',
    PYTHONPATH: '/packs/acme/lib',
    HOME: '/envs/acme/.python.tmp-1/.attune-setup',
    XDG_CONFIG_HOME: '/envs/acme/.python.tmp-1/.attune-setup/config',
    XDG_CACHE_HOME: '/envs/acme/.python.tmp-1/.attune-setup/cache',
    PIP_CACHE_DIR: '/envs/acme/.python.tmp-1/.attune-setup/cache/pip',
    PIP_CONFIG_FILE: '/dev/null',
  });
});

test('describe: pack, runtime and version as the failure messages name them', () => {
  assert.equal(describe({ packRef: 'acme', runtimeName: 'python', runtimeVersion: '3.11' }), 'pack acme, runtime python 3.11');
  assert.equal(describe({ packRef: 'acme', runtimeName: 'node.js', runtimeVersion: null }), 'pack acme, runtime node.js');
});
