/**
 * An older glibc than the build host's, for the "old glibc image" root: Debian 11's libc6 2.31,
 * libstdc++6 (GCC 10) and libgcc-s1, fetched once with apt-get from the Debian archive this machine
 * already uses (its bookworm entry, same URI and keyring, suite bullseye) into .cache/old-glibc/
 * and reused afterwards. Debian 12's own suites carry only glibc 2.36; buster's 2.28 has left the
 * archive's main host, bullseye's 2.31 is the oldest glibc it still serves. (Node 24's floor is
 * 2.28, so the plain SEA runs on this root too, with the root's libraries: the test shows that the
 * one file opens none of them, whatever their version.)
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const PACKAGES = ['libc6', 'libstdc++6', 'libgcc-s1'] as const;
const SUITE = 'bullseye';
const KEYRING = '/usr/share/keyrings/debian-archive-keyring.gpg';

function repoRoot(): string {
  return join(new URL('.', import.meta.url).pathname, '..', '..');
}

/** The URI of this machine's Debian archive entry (deb822 sources or a classic sources.list). */
function debianArchiveUri(): string {
  const candidates = ['/etc/apt/sources.list.d/debian.sources', '/etc/apt/sources.list'];
  for (const file of candidates) {
    if (!existsSync(file)) continue;
    const text = readFileSync(file, 'utf8');
    for (const stanza of text.split(/\n\s*\n/)) {
      const uri = /^URIs:\s*(\S+)/m.exec(stanza)?.[1];
      const suites = /^Suites:\s*(.*)$/m.exec(stanza)?.[1] ?? '';
      if (uri && /\bbookworm\b/.test(suites) && !/security/.test(uri)) return uri;
    }
    const line = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+bookworm\s+.*\bmain\b/m.exec(text);
    if (line) return line[1];
  }
  throw new Error(`old-glibc: no Debian bookworm archive entry in ${candidates.join(' or ')}; the old-glibc root needs Debian's archive`);
}

function apt(dir: string, args: string[]): void {
  const opts = [
    '-o', `Dir::Etc::sourcelist=${join(dir, 'sources.list')}`, '-o', 'Dir::Etc::sourceparts=/dev/null',
    '-o', `Dir::State::Lists=${join(dir, 'lists')}`, '-o', `Dir::Cache=${join(dir, 'cache')}`, '-o', 'Debug::NoLocking=1',
  ];
  const r = spawnSync('apt-get', [...opts, ...args], { cwd: join(dir, 'debs'), encoding: 'utf8', timeout: 300_000 });
  if (r.status !== 0) throw new Error(`old-glibc: apt-get ${args.join(' ')} failed (is Debian's archive reachable?):\n${r.stdout}${r.stderr}`);
}

/** A directory holding the three packages unpacked (lib/x86_64-linux-gnu/…, usr/lib/x86_64-linux-gnu/…). */
export function oldGlibcTree(): string {
  const dir = join(repoRoot(), '.cache', 'old-glibc');
  const tree = join(dir, 'tree');
  if (existsSync(join(tree, '.complete'))) return tree;
  for (const d of ['lists/partial', 'cache/archives/partial', 'debs']) mkdirSync(join(dir, d), { recursive: true });
  writeFileSync(join(dir, 'sources.list'), `deb [signed-by=${KEYRING}] ${debianArchiveUri()} ${SUITE} main\n`);
  if (!readdirSync(join(dir, 'debs')).some((f) => f.startsWith('libc6_'))) {
    apt(dir, ['update']);
    apt(dir, ['download', ...PACKAGES.map((p) => `${p}/${SUITE}`)]);
  }
  const staging = `${tree}.tmp-${process.pid}`;
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { recursive: true });
  for (const deb of readdirSync(join(dir, 'debs')).filter((f) => f.endsWith('.deb'))) {
    const r = spawnSync('dpkg-deb', ['-x', join(dir, 'debs', deb), staging], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`old-glibc: dpkg-deb -x ${deb}: ${r.stderr}`);
  }
  writeFileSync(join(staging, '.complete'), PACKAGES.join(' ') + '\n');
  rmSync(tree, { recursive: true, force: true });
  renameSync(staging, tree);
  return tree;
}

/** The glibc version of the unpacked tree (from libc.so.6's file name or its banner). */
export function oldGlibcVersion(tree: string): string {
  const r = spawnSync('strings', [join(tree, 'lib', 'x86_64-linux-gnu', 'libc.so.6')], { encoding: 'utf8', maxBuffer: 64 << 20 });
  return /GNU C Library \(Debian GLIBC ([\d.]+)/.exec(r.stdout)?.[1] ?? 'unknown';
}
