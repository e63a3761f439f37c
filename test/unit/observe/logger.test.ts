/** The output mirror (observe/logger.ts): an action's output as log lines of its run. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { outputMirror } from '../../../src/observe/logger.ts';
import { waitFor } from '../../helpers/wait.ts';

test('output mirror: one log line per output line, split across chunks, long lines cut, tail flushed', async () => {
  const lines: { obj: object; msg?: string }[] = [];
  const w = outputMirror({ info: (obj, msg) => lines.push({ obj, msg }) }, 'stderr', { maxLine: 8, idleMs: 20 });
  const buf = Buffer.from('héllo\r\nwor');
  w.write(buf.subarray(0, 2)); // splits the é
  w.write(buf.subarray(2));
  buf.fill(0); // the runner reuses its buffer: already consumed
  w.write(Buffer.from('ld\n0123456789ab'));
  assert.deepEqual(lines.map((l) => l.msg), ['héllo', 'world', '01234567']);
  await waitFor('the tail flushed after idleMs', () => lines.length === 4);
  assert.deepEqual(lines.map((l) => l.msg), ['héllo', 'world', '01234567', '89ab']);
  assert.deepEqual(lines[0].obj, { stream: 'stderr' });
});
