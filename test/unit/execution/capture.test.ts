import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BoundedCapture, truncationNotice } from '../../../src/execution/capture.ts';

const NOTICE = '\n\n[OUTPUT TRUNCATED: stdout exceeded size limit]\n';

test('under the limit: everything kept', () => {
  const c = new BoundedCapture('stdout', 1024);
  c.write(Buffer.from('Hello, world!'));
  assert.deepEqual(c.result(), { text: 'Hello, world!', truncated: false, bytesTruncated: 0, bytesAttempted: 13 });
});

test('exactly limit − 128 bytes: no notice', () => {
  const c = new BoundedCapture('stdout', 138);
  c.write(Buffer.from('1234567890'));
  assert.equal(c.result().text, '1234567890');
  assert.equal(c.result().truncated, false);
});

test('one byte over: cut at limit − 128, notice once, bytes_truncated = attempted − kept', () => {
  const c = new BoundedCapture('stdout', 138);
  const kept = c.write(Buffer.from('12345678901'));
  assert.equal(kept.toString(), '1234567890' + NOTICE, 'write() returns what a log file should receive');
  assert.equal(c.write(Buffer.from('more')).length, 0);
  assert.deepEqual(c.result(), { text: '1234567890' + NOTICE, truncated: true, bytesTruncated: 5, bytesAttempted: 15 });
});

test('many writes: the cut falls inside a chunk', () => {
  const c = new BoundedCapture('stdout', 148); // 20 data bytes
  for (const s of ['First ', 'Second ', 'Third ', 'Fourth ']) c.write(Buffer.from(s));
  assert.equal(c.result().text, 'First Second Third F' + NOTICE);
  assert.equal(c.result().bytesTruncated, 6);
  assert.ok(c.bufferedBytes <= 148);
});

test('stderr notice and limits smaller than the reserve', () => {
  assert.equal(truncationNotice('stderr'), '\n\n[OUTPUT TRUNCATED: stderr exceeded size limit]\n');
  const c = new BoundedCapture('stderr', 100);
  c.write(Buffer.from('x'));
  assert.equal(c.result().text, truncationNotice('stderr'));
  assert.equal(c.result().bytesTruncated, 1);
});

test('memory stays bounded however much is written', () => {
  const c = new BoundedCapture('stdout', 64 * 1024);
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  for (let i = 0; i < 1000; i++) c.write(chunk);
  assert.ok(c.bufferedBytes <= 64 * 1024);
  assert.equal(c.result().bytesAttempted, 1000 * 64 * 1024);
  assert.equal(c.result().bytesTruncated, 1000 * 64 * 1024 - (64 * 1024 - 128));
});

test('invalid UTF-8 is decoded lossily, never throws', () => {
  const c = new BoundedCapture('stdout', 1024);
  c.write(Buffer.from([0x6f, 0x6b, 0xff, 0xfe, 0x00, 0xc3, 0x28]));
  assert.equal(c.result().text, 'ok\uFFFD\uFFFD\u0000\uFFFD(');
});

test('growth past the first buffers keeps the content and earlier returned slices intact; chunks may be reused by the caller', () => {
  const c = new BoundedCapture('stdout', 4 * 1024 * 1024);
  const chunk = Buffer.alloc(700 * 1024);
  const returned: Buffer[] = [];
  for (let i = 0; i < 5; i++) {
    chunk.fill(0x61 + i); // the caller reuses its buffer (like the runner's read buffer)
    returned.push(c.write(chunk));
  }
  returned.forEach((r, i) => assert.ok(r.length === chunk.length && r.every((b) => b === 0x61 + i), `slice ${i} unchanged`));
  const text = c.result().text;
  assert.equal(text.length, 5 * 700 * 1024);
  for (let i = 0; i < 5; i++) assert.equal(text[i * 700 * 1024], String.fromCharCode(0x61 + i));
  assert.equal(c.write(Buffer.from('late')).length, 0, 'sealed after result()');
  assert.equal(c.result().text, text);
});
