/** The example pack used by the demo really runs (shell/dotenv, python/json, node/yaml file). */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { resolve } from 'node:path';
import YAML from 'yaml';
import * as h from '../../helpers/execution.ts';

const PACKS = resolve(import.meta.dirname, '../../../examples/packs');
const artifactsDir = h.tempDir('demo-artifacts');
after(() => rmSync(artifactsDir, { recursive: true, force: true }));

async function runDemo(name: string, kind: string, config: Record<string, unknown>) {
  const meta = YAML.parse(readFileSync(`${PACKS}/demo/actions/${name}.yaml`, 'utf8'));
  return h.run({
    execution: h.execution({ action_ref: meta.ref, config }),
    action: h.action(meta.entry_point, {
      ref: meta.ref, pack_ref: 'demo', parameter_delivery: meta.parameter_delivery,
      parameter_format: meta.parameter_format, output_format: meta.output_format,
    }),
    runtime: h.runtime(kind), config: { ...h.config({ artifactsDir }), packsBaseDir: PACKS },
    detected: h.detected(), baselineEnv: h.baseline(),
  });
}

test('demo.hello (shell, dotenv on stdin)', async () => {
  const r = await runDemo('hello', 'shell', { name: "O'Brien \"the\" great", times: 2 });
  assert.equal(r.status, 'completed', JSON.stringify(r.result));
  const data = r.result.data as Record<string, unknown>;
  assert.equal(data.greeting, 'Hello, O\'Brien "the" great! Hello, O\'Brien "the" great!');
  assert.equal(data.count, 2);
  assert.match(r.result.stderr_log as string, /stderr\.log$/);
});

test('demo.stats (python, json on stdin)', async () => {
  const r = await runDemo('stats', 'python', { numbers: [1, 2, 3, 4], label: 'q' });
  assert.deepEqual(r.result.data, { label: 'q', count: 4, sum: 10, mean: 2.5, min: 1, max: 4 });
  const bad = await runDemo('stats', 'python', { numbers: [] });
  assert.equal(bad.status, 'failed');
  assert.equal(bad.result.error, "stats: 'numbers' must be a non-empty list\n");
});

test('demo.transform (node, yaml in a file)', async () => {
  const r = await runDemo('transform', 'node', { text: "it's: Ünïcode", mode: 'reverse' });
  assert.deepEqual(r.result.data, { input: "it's: Ünïcode", output: "edocïnÜ :s'ti", mode: 'reverse', length: 13 });
});
