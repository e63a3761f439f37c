/** Load + compile configuration from the real process (files, env, flags). */
import { readFileSync } from 'node:fs';
import { loadRawConfig, type LoadInput } from './load.ts';
import { compileConfig, type Config } from './compile.ts';
export type { Config } from './compile.ts';
export { ConfigError } from './errors.ts';

export function readIfExists(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

export function loadConfig(input: Omit<LoadInput, 'readFile'> & { implicitFiles?: boolean }): Readonly<Config> {
  const implicit = input.implicitFiles ?? true;
  const explicit = input.flags.config !== undefined || input.env.ATTUNE_CONFIG !== undefined;
  // --detect-only reads files only when one is named (contract §1.4 step 2).
  const readFile = implicit || explicit ? readIfExists : (p: string) => (explicit && p === (input.flags.config ?? input.env.ATTUNE_CONFIG) ? readIfExists(p) : undefined);
  return compileConfig(loadRawConfig({ ...input, readFile }));
}
