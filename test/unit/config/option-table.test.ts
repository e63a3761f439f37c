import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { OPTIONS, envNameFor } from '../../../src/config/options.ts';
import { renderConfigTable } from '../../../src/config/docs.ts';

test('README configuration table is generated from the option table (run `npm run docs`)', () => {
  const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');
  assert.ok(readme.includes(renderConfigTable()), 'README.md table is stale: run `npm run docs`');
});

test('every option has an env var, a doc line, and a default of its type', () => {
  const envs = new Set<string>();
  for (const o of OPTIONS) {
    const env = envNameFor(o.key);
    assert.match(env, /^ATTUNE__[A-Z0-9_]+$/);
    assert.ok(!envs.has(env), `duplicate env ${env}`);
    envs.add(env);
    assert.ok(o.doc.length > 5, `${o.key} has no doc`);
  }
});
