/**
 * Debian packages: which of the list (.ci/apt-packages.txt, the one list CI and the README's
 * commands use) are missing, and installing them. One dpkg-query call answers for the whole list,
 * so the check costs milliseconds; apt-get (and its index update) runs only when something is missing.
 */
import { readFileSync } from 'node:fs';
import { SetupError, mustRun, run } from './host.ts';

const PACKAGE_NAME = /^[a-z0-9][a-z0-9+.-]+$/;

/** Package names from a list file: one per line, `#` starts a comment. Duplicates dropped, order kept. */
export function parsePackageList(text: string, source = 'package list'): string[] {
  const names: string[] = [];
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.replace(/#.*/, '').trim();
    if (!line) continue;
    if (!PACKAGE_NAME.test(line)) throw new SetupError(`${source} line ${i + 1}: '${line}' is not a Debian package name (one name per line)`);
    if (!names.includes(line)) names.push(line);
  }
  return names;
}

export function readPackageList(path: string): string[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new SetupError(`cannot read the package list ${path}: ${(e as Error).message}`);
  }
  return parsePackageList(text, path);
}

/** Installed package names from `dpkg-query -W -f='${Package}\t${db:Status-Status}\n'` output. */
export function installedFromDpkgQuery(stdout: string): Set<string> {
  const installed = new Set<string>();
  for (const line of stdout.split('\n')) {
    const [name, status] = line.split('\t');
    if (name && status === 'installed') installed.add(name);
  }
  return installed;
}

/** The packages of `wanted` that dpkg does not list as installed (unknown, removed, half-configured). */
export async function missingPackages(wanted: readonly string[]): Promise<string[]> {
  if (wanted.length === 0) return [];
  // Exit 1 with "no packages found matching" for names dpkg never saw: those are the missing ones.
  const r = await run('dpkg-query', ['-W', '-f=${Package}\\t${db:Status-Status}\\n', ...wanted]);
  const installed = installedFromDpkgQuery(r.stdout);
  return wanted.filter((p) => !installed.has(p));
}

const APT_ENV = 'DEBIAN_FRONTEND=noninteractive';
const INSTALL_ARGS = ['install', '-y', '--no-install-recommends'];

/** The commands a root user would type to install `missing`. */
export function aptCommands(missing: readonly string[]): string[] {
  return ['apt-get update', `${APT_ENV} apt-get ${INSTALL_ARGS.join(' ')} ${missing.join(' ')}`];
}

export async function installPackages(missing: readonly string[], log: (line: string) => void): Promise<void> {
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  log(`installing ${missing.length} Debian package(s): ${missing.join(' ')}`);
  await mustRun('apt-get', ['-q', 'update'], { inherit: true, env });
  // Another apt (unattended-upgrades) may hold the lock for a while: wait for it instead of failing.
  await mustRun('apt-get', ['-q', '-o', 'DPkg::Lock::Timeout=300', ...INSTALL_ARGS, ...missing], { inherit: true, env });
  const still = await missingPackages(missing);
  if (still.length) throw new SetupError(`apt-get finished but these are still not installed: ${still.join(' ')}`, aptCommands(still));
}
