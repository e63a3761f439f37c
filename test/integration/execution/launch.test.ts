/**
 * How an action process starts (execution/process.ts + native/spawn.ts): the addon's posix_spawn and the
 * child_process.spawn fallback (ATTUNE_AGENT_NATIVE_SPAWN=off, run in a separate Node process since
 * the choice is made once per process) must give the action the same process: its own session and
 * process group, every signal at its default disposition and unblocked, only fds 0-2, the working
 * directory and the environment asked for. Exit codes, signals and start errors are reported alike.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { runProcess, type ProcessSpec } from '../../../src/execution/process.ts';

const cwd = import.meta.dirname;
const PROBE = [
  'read -r _ _ _ ppid pgrp sid _ < /proc/$$/stat',
  'echo "self=$([ $pgrp = $$ ] && [ $sid = $$ ] && echo leader)"',
  'echo "cwd=$(pwd)" "env=$(env | sort | tr "\\n" " ")"',
  'yes | head -c 3 >/dev/null; echo "yes_status=$?"',
].join('; ');

const specs: Record<string, ProcessSpec> = {
  probe: { argv: ['/bin/sh', '-c', PROBE], env: { PATH: '/usr/bin:/bin', ONLY_THIS: 'x y' }, cwd, stdin: null, timeoutMs: 10_000, killGracePeriodMs: 100, maxStdoutBytes: 65536, maxStderrBytes: 65536 },
  // Read by the started program itself (a shell would change its own mask while forking).
  signals: { argv: ['/bin/grep', '-E', '^Sig(Blk|Ign)', '/proc/self/status'], env: {}, cwd: null, stdin: null, timeoutMs: 10_000, killGracePeriodMs: 100, maxStdoutBytes: 1024, maxStderrBytes: 1024 },
  fds: { argv: ['/bin/ls', '/proc/self/fd'], env: {}, cwd: null, stdin: null, timeoutMs: 10_000, killGracePeriodMs: 100, maxStdoutBytes: 1024, maxStderrBytes: 1024 },
  exit3: { argv: ['/bin/sh', '-c', 'cat; exit 3'], env: {}, cwd: null, stdin: 'from stdin', timeoutMs: 10_000, killGracePeriodMs: 100, maxStdoutBytes: 1024, maxStderrBytes: 1024 },
  killed: { argv: ['/bin/sh', '-c', 'kill -USR1 $$'], env: {}, cwd: null, stdin: null, timeoutMs: 10_000, killGracePeriodMs: 100, maxStdoutBytes: 1024, maxStderrBytes: 1024 },
  aborted: { argv: ['/bin/sh', '-c', 'kill -ABRT $$'], env: {}, cwd: null, stdin: null, timeoutMs: 10_000, killGracePeriodMs: 100, maxStdoutBytes: 1024, maxStderrBytes: 1024 },
  missing: { argv: ['/nonexistent/interp'], env: {}, cwd: null, stdin: null, timeoutMs: 10_000, killGracePeriodMs: 100, maxStdoutBytes: 1024, maxStderrBytes: 1024 },
  noCwd: { argv: ['/bin/true'], env: {}, cwd: '/nonexistent/dir', stdin: null, timeoutMs: 10_000, killGracePeriodMs: 100, maxStdoutBytes: 1024, maxStderrBytes: 1024 },
  noShebang: { argv: [join(import.meta.dirname, '../../fixtures/launch/no-shebang')], env: {}, cwd: null, stdin: null, timeoutMs: 10_000, killGracePeriodMs: 100, maxStdoutBytes: 1024, maxStderrBytes: 1024 },
  notExecutable: { argv: [join(import.meta.dirname, '../../fixtures/packs/testpack/actions/not_executable')], env: {}, cwd: null, stdin: null, timeoutMs: 10_000, killGracePeriodMs: 100, maxStdoutBytes: 1024, maxStderrBytes: 1024 },
};

/** Descriptors of this process without O_CLOEXEC: every child inherits them, whatever starts it. */
function inheritableFds(): number[] {
  const O_CLOEXEC = 0o2000000;
  return readdirSync('/proc/self/fdinfo').map(Number).filter((fd) => {
    try {
      const flags = /^flags:\s+([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
      return flags !== null && (parseInt(flags[1], 8) & O_CLOEXEC) === 0 && fd > 2;
    } catch {
      return false; // the directory's own descriptor, closed by now
    }
  });
}

type Summary = Record<string, unknown>;

async function summarise(): Promise<Record<string, Summary>> {
  const out: Record<string, Summary> = {};
  for (const [name, spec] of Object.entries(specs)) {
    const r = await runProcess(spec);
    out[name] = r.kind === 'exited'
      ? { launcher: r.launcher, exitCode: r.exitCode, signal: r.signal, stdout: r.stdout, stderr: r.stderr }
      : { code: r.code };
  }
  return out;
}

/** The same runs in a fresh Node process with the given environment. */
function summariseIn(env: Record<string, string>): Record<string, Summary> {
  const script = `import { summarise } from ${JSON.stringify(import.meta.filename)}; console.log(JSON.stringify(await summarise()));`;
  const text = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
    env: { ...process.env, ...env, ATTUNE_LAUNCH_CHILD: '1' }, encoding: 'utf8',
  });
  return JSON.parse(text) as Record<string, Summary>;
}

export { summarise };

if (!process.env.ATTUNE_LAUNCH_CHILD) {
  test('posix_spawn (the addon) starts the action as a session leader with default signals, fds 0-2, its cwd and env only', async () => {
    const r = await summarise();
    const probe = r.probe;
    assert.equal(probe.launcher, 'posix_spawn', 'the addon in dist/lib starts actions (npm run build makes it)');
    const stdout = probe.stdout as string;
    assert.match(stdout, /^self=leader$/m);
    assert.equal(r.signals.stdout, 'SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n', 'nothing blocked, nothing ignored');
    const fds = (r.fds.stdout as string).trim().split('\n').map(Number).sort((a, b) => a - b);
    assert.deepEqual(fds, [...new Set([0, 1, 2, 3, ...inheritableFds()])].sort((a, b) => a - b), 'stdio, the directory ls reads, and only what this process holds without close-on-exec');
    assert.match(stdout, new RegExp(`^cwd=${cwd} env=ONLY_THIS=x y PATH=/usr/bin:/bin PWD=${cwd} $`, 'm'));
    assert.match(stdout, /^yes_status=0$/m, 'SIGPIPE is at its default (Node ignores it in the agent)');
    assert.deepEqual(r.exit3, { launcher: 'posix_spawn', exitCode: 3, signal: null, stdout: 'from stdin', stderr: '' });
    assert.deepEqual(r.killed, { launcher: 'posix_spawn', exitCode: -1, signal: 'SIGUSR1', stdout: '', stderr: '' });
    assert.equal(r.aborted.signal, 'SIGABRT', 'the name child_process gives (not the alias SIGIOT)');
    assert.deepEqual(r.missing, { code: 'ENOENT' });
    assert.deepEqual(r.noCwd, { code: 'ENOENT' });
    assert.deepEqual(r.notExecutable, { code: 'EACCES' });
    // ENOEXEC from posix_spawn: child_process runs it with /bin/sh, as before the addon did spawns.
    assert.deepEqual(r.noShebang, { launcher: 'child_process', exitCode: 0, signal: null, stdout: 'ran by sh\n', stderr: '' });
  });

  test('many very short actions at once: every exit is seen at once, none waits for the poll', async () => {
    // The spawn settles on the main thread after the child may already have exited and been
    // signalled: the exit must still be reported, and without waiting for the 1 s poll.
    const spec: ProcessSpec = { argv: ['/bin/true'], env: {}, cwd: null, stdin: null, timeoutMs: 10_000, killGracePeriodMs: 100, maxStdoutBytes: 1024, maxStderrBytes: 1024 };
    const started = performance.now();
    const slow: number[] = [];
    for (let batch = 0; batch < 10; batch++) {
      const results = await Promise.all(Array.from({ length: 20 }, async () => {
        const t = performance.now();
        const r = await runProcess(spec);
        if (performance.now() - t > 900) slow.push(performance.now() - t);
        return r;
      }));
      for (const r of results) assert.deepEqual(r.kind === 'exited' && [r.launcher, r.exitCode, r.signal], ['posix_spawn', 0, null]);
    }
    assert.deepEqual(slow, [], 'no run waited for the poll');
    assert.ok(performance.now() - started < 30_000);
  });

  test('an exit is seen even without its SIGCHLD (the slow poll), within about a second', () => {
    const runner = JSON.stringify(new URL('../../../src/execution/process.ts', import.meta.url).pathname);
    const script = `
      import { runProcess } from ${runner};
      const spec = (cmd) => ({ argv: ['/bin/sh', '-c', cmd], env: {}, cwd: null, stdin: null, timeoutMs: 10000, killGracePeriodMs: 100, maxStdoutBytes: 1024, maxStderrBytes: 1024 });
      await runProcess(spec('true')); // installs the SIGCHLD listener
      process.removeAllListeners('SIGCHLD');
      const t = performance.now();
      const r = await runProcess(spec('exit 7'));
      console.log(JSON.stringify({ launcher: r.launcher, exitCode: r.exitCode, ms: performance.now() - t }));`;
    const out = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 15_000 })) as { launcher: string; exitCode: number; ms: number };
    assert.equal(out.launcher, 'posix_spawn');
    assert.equal(out.exitCode, 7);
    assert.ok(out.ms < 3000, `seen after ${out.ms.toFixed(0)} ms`);
  });

  test('child_process.spawn (ATTUNE_AGENT_NATIVE_SPAWN=off) gives the action the very same process', async () => {
    const native = await summarise();
    const forked = summariseIn({ ATTUNE_AGENT_NATIVE_SPAWN: 'off' });
    for (const [name, s] of Object.entries(forked)) {
      if ('launcher' in s) assert.equal(s.launcher, 'child_process', name);
      const { launcher: _a, ...a } = s;
      const { launcher: _b, ...b } = native[name];
      assert.deepEqual(a, b, name);
    }
  });
}
