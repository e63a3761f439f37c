/** `attune-agent install <dir>`: filled in by the distribution issue. */
import { EXIT } from './exit-codes.ts';
export async function installAgent(_opts: { targetDir: string; sourceDir?: string }): Promise<number> {
  process.stderr.write('attune-agent install: not implemented yet\n');
  return EXIT.INSTALL;
}
