/**
 * Every interpreter on this machine receives the parameters byte-for-byte, in every format, by
 * stdin and by file (each fixture action echoes exactly what it received).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { formatParameters } from '../../../src/execution/params.ts';
import * as h from '../../helpers/execution.ts';

const PARAMS = {
  message: "It's \"quoted\" and ünïcode ✓",
  count: 42,
  enabled: false,
  nothing: null,
  list: [1, 'two', { three: 3 }],
  headers: { 'Content-Type': 'application/json' },
  empty: {},
  multi: 'line one\nline two',
};
const ACTIONS: [kind: string, entrypoint: string][] = [
  ['shell', 'echo_params.sh'],
  ['python', 'echo_params.py'],
  ['perl', 'echo_params.pl'],
  ['node', 'echo_params.js'],
  ['java', 'EchoParams.java'],
  ['ruby', 'echo_params.rb'],
  ['go', 'echo_params.go'],
  ['r', 'echo_params.R'],
];
const artifactsDir = h.tempDir('interp-artifacts');
const cfg = h.config({ artifactsDir });
const detected = h.detected();
after(() => rmSync(artifactsDir, { recursive: true, force: true }));

for (const [kind, entrypoint] of ACTIONS) {
  const skip = h.hasInterpreter(kind) ? false : `${kind} is not installed on this machine`;
  test(`${kind}: parameters arrive byte-for-byte (json, dotenv, yaml × stdin, file)`, { skip }, async () => {
    for (const format of ['json', 'dotenv', 'yaml'] as const) {
      for (const delivery of ['stdin', 'file'] as const) {
        const m = h.marker();
        const out = await h.run({
          execution: h.execution({ config: PARAMS, env_vars: m.env }),
          action: h.action(entrypoint, { parameter_format: format, parameter_delivery: delivery }),
          runtime: h.runtime(kind), config: cfg, detected, baselineEnv: h.baseline(),
        });
        const text = formatParameters(PARAMS, format);
        const expected = delivery === 'stdin' ? text + '\n' : text;
        assert.equal(out.status, 'completed', `${kind} ${format}/${delivery}: ${JSON.stringify(out.result)}`);
        assert.equal(out.result.stdout, expected, `${kind} ${format}/${delivery}`);
        assert.deepEqual(h.processesWithMarker(m.value), []);
      }
    }
  });
}

test('java single-file source launch works (java X.java)', { skip: h.hasInterpreter('java') ? false : 'no java' }, async () => {
  const out = await h.run({
    execution: h.execution({ config: { a: 1 } }), action: h.action('EchoParams.java'), runtime: h.runtime('java'),
    config: cfg, detected, baselineEnv: h.baseline(),
  });
  assert.equal(out.result.stdout, '{"a":1}\n');
});
