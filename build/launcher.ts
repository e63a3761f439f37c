/**
 * The launcher of the one file (build/launcher/*.c): a static-pie executable linked against musl
 * (Debian packages musl-tools + musl-dev), so it needs nothing from the root it runs in. Debian's
 * musl-gcc wrapper knows no -static-pie, so compiling uses the wrapper and linking names musl's
 * rcrt1.o (the self-relocating start file) itself. Reproducible: no debug info, symbols stripped,
 * build paths mapped to '.'.
 */
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { runTool } from './files.ts';

export const LAUNCHER_DIR = join('build', 'launcher');
const MUSL_LIB = '/usr/lib/x86_64-linux-musl';

export function launcherSources(root: string): string[] {
  return readdirSync(join(root, LAUNCHER_DIR)).filter((f) => /\.[ch]$/.test(f)).sort().map((f) => join(LAUNCHER_DIR, f));
}

export function muslVersion(): string {
  if (!existsSync('/usr/bin/musl-gcc') || !existsSync(join(MUSL_LIB, 'rcrt1.o'))) {
    throw new Error('build: musl-gcc or musl\'s rcrt1.o is missing; apt-get install musl-tools musl-dev (they build the launcher of dist/attune-agent)');
  }
  return runTool('dpkg-query', ['-W', '-f', '${Version}', 'musl-dev']).stdout.trim();
}

export function buildLauncher(opts: { root: string; output: string; workDir: string }): string {
  muslVersion();
  mkdirSync(opts.workDir, { recursive: true });
  mkdirSync(dirname(opts.output), { recursive: true });
  const objects: string[] = [];
  for (const src of launcherSources(opts.root).filter((f) => f.endsWith('.c'))) {
    const obj = join(opts.workDir, src.replace(/^.*\//, '').replace(/\.c$/, '.o'));
    runTool('musl-gcc', [
      '-std=gnu11', '-O2', '-fPIE', '-Wall', '-Wextra', '-Werror',
      // No stack protector (the canary's TLS is musl's; the program later installs glibc's) and
      // probed stack growth (the new stack for the program is a variable-length array).
      '-fno-stack-protector', '-fstack-clash-protection', '-fno-asynchronous-unwind-tables',
      `-ffile-prefix-map=${opts.root}=.`,
      '-c', src, '-o', obj,
    ], { cwd: opts.root });
    objects.push(obj);
  }
  const gccFile = (name: string) => runTool('gcc', [`-print-file-name=${name}`]).stdout.trim();
  runTool('gcc', [
    '-static-pie', '-nostdlib', '-s', '-Wl,--build-id=none',
    '-o', opts.output,
    join(MUSL_LIB, 'rcrt1.o'), join(MUSL_LIB, 'crti.o'), gccFile('crtbeginS.o'),
    ...objects,
    '-L', MUSL_LIB, '-lc', runTool('gcc', ['-print-libgcc-file-name']).stdout.trim(),
    gccFile('crtendS.o'), join(MUSL_LIB, 'crtn.o'),
  ], { cwd: opts.root });
  return opts.output;
}
