/**
 * The tini re-exec's environment hand-over (src/native/env-handoff.ts) with the real addon
 * (dist/lib, npm run build) and a real execve: the program the agent execs (tini's place) has an
 * environment of two markers, and the environment, credential included, reaches the process that
 * reads the pipe (the re-executed agent's place). Control: the same exec with the environment
 * passed directly shows the credential in /proc/<pid>/environ, so the first check can fail.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';

const HANDOFF = new URL('../../../src/native/env-handoff.ts', import.meta.url).pathname;
const NODE = process.execPath;

/** A node process that execs `sh`: sh prints its own /proc/self/environ, then what the pipe holds. */
function execWith(secret: string, viaPipe: boolean): { environ: string; received: string } {
  const script = `
    import { handEnvironmentOver, takeEnvironment } from ${JSON.stringify(HANDOFF)};
    const env = { PATH: '/usr/bin:/bin', ATTUNE__SECURITY__JWT_SECRET: ${JSON.stringify(secret)} };
    let execEnv = env;
    let fd = -1;
    if (${viaPipe}) {
      const h = handEnvironmentOver(env);
      if (!('fd' in h)) throw new Error(h.reason);
      fd = h.fd;
      execEnv = { ATTUNE_AGENT_INIT: 'tini', ATTUNE_AGENT_ENV_FD: String(fd) };
    }
    const reader = ${JSON.stringify(`import { takeEnvironment } from ${JSON.stringify(HANDOFF)}; const e = { ...process.env }; takeEnvironment(e); process.stdout.write(e.ATTUNE__SECURITY__JWT_SECRET ?? 'none');`)};
    process.execve('/bin/sh', ['sh', '-c', 'tr "\\\\0" "\\\\n" < /proc/$$/environ; echo ---; exec "$0" --input-type=module -e "$1"', process.execPath, reader], execEnv);
  `;
  const out = execFileSync(NODE, ['--input-type=module', '--no-warnings', '-e', script], { encoding: 'utf8', cwd: new URL('../../..', import.meta.url).pathname });
  const [environ, received] = out.split('---\n');
  return { environ, received };
}

test('the re-exec hand-over: the exec\'d init holds two markers, the re-executed agent gets the whole environment (control: passed directly, it is in /proc/<pid>/environ)', () => {
  const secret = `jwt-${randomUUID()}`;
  const piped = execWith(secret, true);
  assert.deepEqual(piped.environ.trim().split('\n').map((l) => l.split('=')[0]).sort(), ['ATTUNE_AGENT_ENV_FD', 'ATTUNE_AGENT_INIT']);
  assert.ok(!piped.environ.includes(secret), 'the credential is not in the exec\'d program\'s environment');
  assert.equal(piped.received, secret, 'the reader of the pipe gets the credential');
  const direct = execWith(secret, false);
  assert.ok(direct.environ.includes(secret), 'control: passed directly, the credential is in /proc/<pid>/environ');
});
