import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as flush } from 'node:timers/promises';
import { Heartbeat, type Timers } from '../../../src/db/heartbeat.ts';
import type { Logger } from '../../../src/observe/logger.ts';

/** Manual clock: timers run only when the test advances time. */
class FakeTimers implements Timers {
  time = 0;
  #seq = 0;
  pending = new Map<number, { at: number; fn: () => void }>();
  now = () => this.time;
  setTimeout = (fn: () => void, ms: number) => {
    const id = ++this.#seq;
    this.pending.set(id, { at: this.time + ms, fn });
    return id;
  };
  clearTimeout = (h: unknown) => {
    this.pending.delete(h as number);
  };
  /** Delay of the next scheduled timer from now (undefined if none). */
  nextDelay(): number | undefined {
    const ats = [...this.pending.values()].map((p) => p.at);
    return ats.length ? Math.min(...ats) - this.time : undefined;
  }
  /** Jump to the next timer and run it, then let the beat's promise chain settle. */
  async fireNext(): Promise<number> {
    const [id, p] = [...this.pending.entries()].sort((a, b) => a[1].at - b[1].at)[0] ?? [];
    assert.ok(p, 'a timer is scheduled');
    const delay = p.at - this.time;
    this.time = p.at;
    this.pending.delete(id!);
    p.fn();
    await flush();
    await flush();
    return delay;
  }
}

type Outcome = { rowCount: number } | Error | 'hang';

function fakeDb(outcomes: Outcome[]) {
  const calls: unknown[] = [];
  let release: (() => void) | null = null;
  return {
    calls,
    releaseHung: () => release?.(),
    query: async (cfg: unknown) => {
      calls.push(cfg);
      const o = outcomes.shift() ?? { rowCount: 1 };
      if (o === 'hang') {
        await new Promise<void>((r) => (release = r));
        return { rowCount: 1 };
      }
      if (o instanceof Error) throw o;
      return o;
    },
  };
}

function fakeLog() {
  const lines: { level: string; msg: string; obj: Record<string, unknown> }[] = [];
  const at = (level: string) => (obj: Record<string, unknown> | string, msg?: string) => {
    lines.push({ level, msg: typeof obj === 'string' ? obj : (msg ?? ''), obj: typeof obj === 'string' ? {} : obj });
  };
  const log = { info: at('info'), warn: at('warn'), error: at('error'), debug: at('debug'), child: () => log } as unknown as Logger;
  return { log, lines, count: (level: string) => lines.filter((l) => l.level === level).length };
}

test('first beat at once, then every interval; the UPDATE matches Attune', async () => {
  const timers = new FakeTimers();
  const db = fakeDb([]);
  const { log } = fakeLog();
  const hb = new Heartbeat({ db: db as never, workerId: 7, intervalMs: 30_000, log, timers });
  hb.start();
  hb.start(); // idempotent
  assert.equal(await timers.fireNext(), 0);
  assert.equal(timers.nextDelay(), 30_000);
  assert.equal(await timers.fireNext(), 30_000);
  assert.equal(db.calls.length, 2);
  const q = db.calls[0] as { text: string; values: unknown[]; query_timeout: number };
  assert.match(q.text, /UPDATE worker SET last_heartbeat = now\(\), status = 'active', updated = now\(\) WHERE id = \$1/);
  assert.deepEqual(q.values, [7]);
  assert.equal(q.query_timeout, 10_000);
  assert.equal(hb.state().beats, 2);
  assert.equal(hb.state().lastSuccessAt, 30_000);
  await hb.stop();
  assert.equal(timers.pending.size, 0);
});

test('outage: capped backoff, one warning, one recovery line, then back to the interval', async () => {
  const timers = new FakeTimers();
  const down = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
  const db = fakeDb([{ rowCount: 1 }, down(), down(), down(), down(), down(), down(), { rowCount: 1 }]);
  const { log, lines, count } = fakeLog();
  const hb = new Heartbeat({ db: db as never, workerId: 1, intervalMs: 30_000, log, timers, describeError: (e) => `described: ${(e as Error).message}` });
  hb.start();
  await timers.fireNext(); // ok
  const delays: number[] = [];
  for (let i = 0; i < 7; i++) delays.push(await timers.fireNext());
  // interval, then retries 1 s, 2 s, 4 s, 8 s, 10 s (cap = min(interval/2, 10 s)), 10 s
  assert.deepEqual(delays, [30_000, 1000, 2000, 4000, 8000, 10_000, 10_000]);
  assert.equal(count('warn'), 1, 'warned once per outage');
  assert.equal(lines.find((l) => l.level === 'warn')!.obj.err, 'described: connect ECONNREFUSED 127.0.0.1:5432');
  assert.equal(count('info'), 1, 'recovery logged');
  assert.equal(lines.find((l) => l.level === 'info')!.obj.failed_beats, 6);
  assert.equal(hb.state().consecutiveFailures, 0);
  assert.equal(timers.nextDelay(), 30_000);
  // A second outage warns again and restarts the backoff at 1 s.
  const db2 = fakeDb([down(), { rowCount: 1 }]);
  const hb2 = new Heartbeat({ db: db2 as never, workerId: 1, intervalMs: 30_000, log, timers });
  hb2.start();
  await timers.fireNext();
  assert.equal(hb2.state().consecutiveFailures, 1);
  assert.match(hb2.state().lastError!, /ECONNREFUSED/);
  await Promise.all([hb.stop(), hb2.stop()]);
  assert.equal(timers.pending.size, 0);
});

test('short intervals retry within half an interval', async () => {
  const timers = new FakeTimers();
  const db = fakeDb([new Error('down'), new Error('down'), new Error('down')]);
  const hb = new Heartbeat({ db: db as never, workerId: 1, intervalMs: 1000, log: fakeLog().log, timers });
  hb.start();
  const delays = [await timers.fireNext(), await timers.fireNext(), await timers.fireNext(), await timers.fireNext()];
  assert.deepEqual(delays, [0, 500, 500, 500]);
  await hb.stop();
});

test('stop() waits for the beat in flight, returns the same promise, and no beat runs after it', async () => {
  const timers = new FakeTimers();
  const db = fakeDb(['hang']);
  const hb = new Heartbeat({ db: db as never, workerId: 1, intervalMs: 1000, log: fakeLog().log, timers });
  hb.start();
  await timers.fireNext(); // beat now hangs
  let stopped = false;
  const p = hb.stop();
  assert.equal(hb.stop(), p);
  void p.then(() => (stopped = true));
  await flush();
  assert.equal(stopped, false, 'stop waits for the in-flight beat');
  db.releaseHung();
  await p;
  assert.equal(stopped, true);
  assert.equal(timers.pending.size, 0, 'the finished beat scheduled nothing');
  assert.equal(db.calls.length, 1);
  assert.equal(hb.state().running, false);
});

test('a deleted worker row is reported once', async () => {
  const timers = new FakeTimers();
  const db = fakeDb([{ rowCount: 0 }, { rowCount: 0 }]);
  const { log, count, lines } = fakeLog();
  const hb = new Heartbeat({ db: db as never, workerId: 9, intervalMs: 1000, log, timers });
  hb.start();
  await timers.fireNext();
  await timers.fireNext();
  assert.equal(count('error'), 1);
  assert.match(lines.find((l) => l.level === 'error')!.msg, /worker row 9 no longer exists.*restart the agent/);
  assert.equal(hb.state().rowMissing, true);
  await hb.stop();
});
