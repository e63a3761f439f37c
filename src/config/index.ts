/** Load + compile configuration from the real process (files, env, flags). */
import { readFileSync } from 'node:fs';
import { loadRawConfig, type LoadInput } from './load.ts';
import { compileConfig, compileDetectConfig, type Config, type DetectConfig } from './compile.ts';
export type { Config, DetectConfig } from './compile.ts';
export { ConfigError } from './errors.ts';

export function readIfExists(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

type ConfigInput = Omit<LoadInput, 'readFile'>;

/** `implicitFiles: false` (tests): files are read only when one is named, never ./config.yaml alone. */
export function loadConfig(input: ConfigInput & { implicitFiles?: boolean }): Readonly<Config> {
  const readFile = input.implicitFiles === false ? filesOnlyWhenNamed(input) : readIfExists;
  return compileConfig(loadRawConfig({ ...input, readFile }));
}

function filesOnlyWhenNamed(input: ConfigInput): (p: string) => string | undefined {
  const named = input.flags.config ?? input.env.ATTUNE_CONFIG;
  return named !== undefined ? readIfExists : () => undefined;
}

/**
 * `--detect-only`: reads a file only when one is named (docs/attune-compat.md §1.4 step 2) and validates only
 * the keys detection uses (compileDetectConfig).
 */
export function loadDetectConfig(input: ConfigInput): Readonly<DetectConfig> {
  return compileDetectConfig(loadRawConfig({ ...input, readFile: filesOnlyWhenNamed(input) }));
}
