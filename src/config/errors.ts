/** A configuration problem an operator must fix; main.ts maps it to exit code 3. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}
