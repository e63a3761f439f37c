/** Version extraction from `--version` output (docs/attune-compat.md §2.1). Pure. */
import type { VersionStyle } from '../runtimes.ts';

const SEMVER_LIKE = /(?:v|go)?(\d+\.\d+(?:\.\d+)?)/;
const JAVA_STYLE = /version\s+"([^"]+)"/;

export function parseVersion(output: string, style: VersionStyle): string | null {
  if (style === 'java') {
    const m = JAVA_STYLE.exec(output);
    if (m) return m[1];
  }
  const m = SEMVER_LIKE.exec(output);
  return m ? m[1] : null;
}
