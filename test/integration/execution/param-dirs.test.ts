/** Parameter directories: named after the agent, removed by the run, leftovers of a gone agent swept at start. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, readdirSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { processStartTime, sweepParameterDirs } from '../../../src/execution/param-dirs.ts';
import * as h from '../../helpers/execution.ts';

test('sweep: gone agents\' directories go; live agents\', other uids\', links and unrelated names stay', async (t) => {
  const tmp = h.tempDir('sweep');
  const sleeper = spawn('sleep', ['60'], { stdio: 'ignore' });
  t.after(() => {
    sleeper.kill('SIGKILL');
    rmSync(tmp, { recursive: true, force: true });
  });
  await new Promise((r) => sleeper.once('spawn', r));
  const dead = spawnSync('true').pid!;
  assert.throws(() => process.kill(dead, 0), 'the pid is not running');
  const liveStart = processStartTime(sleeper.pid!);
  assert.notEqual(liveStart, '0');
  const make = (name: string, opts: { uid?: number; ageMs?: number } = {}) => {
    mkdirSync(join(tmp, name), { mode: 0o700 });
    writeFileSync(join(tmp, name, 'parameters.json'), '{"password":"left behind"}', { mode: 0o400 });
    if (opts.uid !== undefined) chownSync(join(tmp, name), opts.uid, opts.uid);
    if (opts.ageMs) utimesSync(join(tmp, name), new Date(Date.now() - opts.ageMs), new Date(Date.now() - opts.ageMs));
    return name;
  };
  const gone = [
    make(`attune-exec-${dead}-12345-7-aabbccddeeff`), // its agent died
    make(`attune-exec-${process.pid}-1-8-aabbccddeeff`), // this pid's earlier life (a restarted container)
    make(`attune-exec-${sleeper.pid}-1-9-aabbccddeeff`), // the pid was reused by another process
    make('attune-exec-10-aabbccddeeff', { ageMs: 2 * 24 * 3600 * 1000 }), // an older agent's name, untouched for 2 days
  ];
  const kept = [
    make(`attune-exec-${sleeper.pid}-${liveStart}-11-aabbccddeeff`), // a live agent's run
    make(`attune-exec-${dead}-12345-12-aabbccddeeff`, { uid: 65532 }), // another uid's
    make('attune-exec-13-aabbccddeeff'), // an older agent's name, recent
    make('attune-other-dir'),
  ];
  const target = h.tempDir('sweep-target');
  t.after(() => rmSync(target, { recursive: true, force: true }));
  writeFileSync(join(target, 'keep'), 'x');
  symlinkSync(target, join(tmp, `attune-exec-${dead}-12345-14-aabbccddeeff`));
  kept.push(`attune-exec-${dead}-12345-14-aabbccddeeff`);

  const r = await sweepParameterDirs(tmp);
  assert.deepEqual(r.errors, []);
  assert.deepEqual(r.removed.sort(), gone.map((n) => join(tmp, n)).sort());
  assert.deepEqual(readdirSync(tmp).sort(), kept.sort());
  assert.deepEqual(readdirSync(target), ['keep'], 'a link is not followed');
});

test('a run\'s parameter directory carries this agent\'s pid and start time, and is gone after the run', async () => {
  const out = await h.run({
    execution: h.execution({ config: { a: 1 } }), action: h.action('env_json.js', { parameter_delivery: 'file', output_format: 'json' }),
    runtime: h.runtime('node'), config: h.config(), detected: h.detected(), baselineEnv: h.baseline(),
  });
  assert.equal(out.status, 'completed', JSON.stringify(out.result));
  const file = String((out.result.data as { env: Record<string, string> }).env.ATTUNE_PARAMETER_FILE);
  const dir = file.slice(0, file.lastIndexOf('/'));
  assert.match(dir, new RegExp(`/attune-exec-${process.pid}-${processStartTime('self')}-\\d+-[0-9a-f]{12}$`));
  assert.equal(existsSync(dir), false);
});
