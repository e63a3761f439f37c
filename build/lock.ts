/**
 * A build lock per output directory: several engineers' `npm test` runs share one working tree,
 * and two builds writing dist/ at once would corrupt it. A lock held by a dead process is taken over.
 */
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

function holderAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function ageMs(path: string): number {
  try {
    return Date.now() - statSync(path).mtimeMs;
  } catch {
    return 0;
  }
}

export async function acquireBuildLock(outDir: string, timeoutMs: number, onWait: (pid: number) => void): Promise<() => void> {
  const dir = join(outDir, '.build.lock');
  const deadline = Date.now() + timeoutMs;
  let reported = false;
  for (;;) {
    try {
      mkdirSync(dir);
      writeFileSync(join(dir, 'pid'), String(process.pid));
      return () => rmSync(dir, { recursive: true, force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    let pid = NaN;
    try {
      pid = Number(readFileSync(join(dir, 'pid'), 'utf8'));
    } catch {
      /* the holder is between mkdir and writing its pid */
    }
    const orphaned = !Number.isInteger(pid) && ageMs(dir) > 10_000; // died between mkdir and writing its pid
    if (orphaned || (Number.isInteger(pid) && pid > 0 && !holderAlive(pid))) {
      rmSync(dir, { recursive: true, force: true });
      continue;
    }
    if (Date.now() > deadline) {
      throw new Error(`build: ${dir} is held by process ${pid} for more than ${timeoutMs / 1000} s; if no build is running, remove that directory`);
    }
    if (!reported && Number.isInteger(pid)) {
      onWait(pid);
      reported = true;
    }
    await sleep(250);
  }
}
