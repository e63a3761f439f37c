/**
 * Step 3: the portable folder, `<out>/opt/attune/agent/`, which runs in any x86_64 Linux image
 * (glibc, musl/alpine, busybox, distroless, scratch): the executable's ELF interpreter and RPATH
 * are rewritten to point at a bundled glibc loader and the libraries `ldd` lists.
 *
 * The ELF interpreter path must be absolute, so `/opt/attune/agent` is a fixed contract (it is
 * also Attune's documented mount path). The absolute directory comes first in the RPATH because
 * `$ORIGIN` cannot be resolved where /proc is not mounted; DT_RPATH (--force-rpath) rather than
 * DT_RUNPATH so a hostile LD_LIBRARY_PATH cannot override the bundled libraries.
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync, realpathSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { basename, join } from 'node:path';
import { normalizeTree, runTool } from './files.ts';

export const AGENT_DIR = '/opt/attune/agent';
export const AGENT_LIB_DIR = `${AGENT_DIR}/lib`;
export const AGENT_RPATH = `${AGENT_LIB_DIR}:$ORIGIN/lib`;
export const TINI_SOURCE = '/usr/bin/tini-static';

/** Debian packages whose files ship in the folder, with the copyright file that covers them. */
const DEBIAN_NOTICES: readonly { pkg: string; covers: string }[] = [
  { pkg: 'libc6', covers: 'lib/ld-linux-x86-64.so.2, libc, libm, libdl, libpthread (GNU C Library, LGPL-2.1+)' },
  { pkg: 'libstdc++6', covers: 'lib/libstdc++.so.6 (GPL-3 with the GCC Runtime Library Exception)' },
  { pkg: 'libgcc-s1', covers: 'lib/libgcc_s.so.1 (GPL-3 with the GCC Runtime Library Exception)' },
  { pkg: 'tini', covers: 'tini-static (MIT)' },
];
/** Full licence texts the Debian copyright files refer to (from base-files). */
const COMMON_LICENSES = ['LGPL-2.1', 'GPL-2', 'GPL-3'];

export interface SharedLib { name: string; path: string }

/** The loader and libraries the dynamic linker resolves for `exe` on this host (via ldd). */
export function sharedLibraries(exe: string): { loader: string; libs: SharedLib[] } {
  const loader = runTool('patchelf', ['--print-interpreter', exe]).stdout.trim();
  const libs: SharedLib[] = [];
  for (const line of runTool('ldd', [exe]).stdout.split('\n')) {
    const missing = /^\s*(\S+) => not found/.exec(line);
    if (missing) throw new Error(`build: ${exe} needs ${missing[1]}, which this build host lacks; install it (apt) and rebuild`);
    const m = /^\s*(\S+) => (\/\S+) \(0x[0-9a-f]+\)$/.exec(line);
    if (m) libs.push({ name: m[1], path: m[2] });
  }
  if (!loader.startsWith('/') || libs.length === 0) throw new Error(`build: cannot determine the libraries of ${exe} (interpreter '${loader}')`);
  return { loader, libs: libs.sort((a, b) => a.name.localeCompare(b.name)) };
}

function debianVersion(pkg: string): string {
  try {
    return runTool('dpkg-query', ['-W', '-f', '${Version}', pkg]).stdout.trim();
  } catch {
    return 'unknown (dpkg-query unavailable)';
  }
}

export interface PortableInput {
  /** The glibc single executable (dist/attune-agent). */
  exe: string;
  /** attune-pipes.node (build/native.ts), shipped as lib/attune-pipes.node. */
  addon: string;
  /** Root of the folder tree; the agent lands in `<outRoot>/opt/attune/agent`. */
  outRoot: string;
  nodeLicense: string;
  nodeVersion: string;
  thirdPartyNotices: string;
  agentVersion: string;
  epoch: number;
}

export function buildPortable(input: PortableInput): string {
  const agentDir = join(input.outRoot, AGENT_DIR);
  rmSync(input.outRoot, { recursive: true, force: true });
  mkdirSync(join(agentDir, 'lib'), { recursive: true });
  mkdirSync(join(agentDir, 'LICENSES', 'common-licenses'), { recursive: true });

  const { loader, libs } = sharedLibraries(input.exe);
  const loaderName = basename(loader);
  copyFileSync(realpathSync(loader), join(agentDir, 'lib', loaderName));
  for (const lib of libs) copyFileSync(realpathSync(lib.path), join(agentDir, 'lib', lib.name));

  const exe = join(agentDir, 'attune-agent');
  copyFileSync(input.exe, exe);
  chmodSync(exe, 0o755);
  runTool('patchelf', ['--set-interpreter', `${AGENT_LIB_DIR}/${loaderName}`, '--force-rpath', '--set-rpath', AGENT_RPATH, exe]);
  const interp = runTool('patchelf', ['--print-interpreter', exe]).stdout.trim();
  const rpath = runTool('patchelf', ['--print-rpath', exe]).stdout.trim();
  if (interp !== `${AGENT_LIB_DIR}/${loaderName}` || rpath !== AGENT_RPATH) {
    throw new Error(`build: patchelf left interpreter '${interp}' and rpath '${rpath}' on ${exe}`);
  }

  if (!existsSync(TINI_SOURCE)) throw new Error(`build: ${TINI_SOURCE} is missing; apt-get install tini (it reaps orphans when the agent is PID 1)`);
  copyFileSync(TINI_SOURCE, join(agentDir, 'tini-static'));
  copyFileSync(input.addon, join(agentDir, 'lib', basename(input.addon)));

  writeLicenses(join(agentDir, 'LICENSES'), input, [loaderName, ...libs.map((l) => l.name)]);

  const executables = new Set(['attune-agent', 'tini-static', `lib/${loaderName}`]);
  const prefix = `${AGENT_DIR.slice(1)}/`; // paths below are relative to outRoot
  normalizeTree(input.outRoot, (rel) => rel.startsWith(prefix) && executables.has(rel.slice(prefix.length)), input.epoch);
  return agentDir;
}

/** One licence file: its name in LICENSES/, a line for the README, its text. */
export interface NoticeFile { file: string; row: string; text: Buffer | string }

export interface NoticeInput { nodeLicense: string; nodeVersion: string; thirdPartyNotices: string }

/**
 * The notices for files taken from Debian packages (`packages`: package → what it covers), Node's
 * licence, the bundled npm packages and the full licence texts the Debian copyright files refer to.
 */
export function noticeFiles(input: NoticeInput, packages: readonly { pkg: string; covers: string }[]): NoticeFile[] {
  const out: NoticeFile[] = [];
  for (const { pkg, covers } of packages) {
    const src = `/usr/share/doc/${pkg}/copyright`;
    if (!existsSync(src)) throw new Error(`build: ${src} is missing; the ${pkg} package's notice must ship with the agent (apt-get install --reinstall ${pkg})`);
    const file = `${pkg}.copyright`;
    out.push({ file, row: `${file.padEnd(28)} Debian ${pkg} ${debianVersion(pkg)}: ${covers}`, text: readFileSync(realpathSync(src)) });
  }
  out.push({ file: 'node.LICENSE', row: `${'node.LICENSE'.padEnd(28)} Node.js v${input.nodeVersion} (MIT and bundled third-party licences): the runtime inside attune-agent`, text: readFileSync(input.nodeLicense) });
  out.push({ file: 'npm-packages.txt', row: `${'npm-packages.txt'.padEnd(28)} npm packages compiled into attune-agent`, text: input.thirdPartyNotices });
  for (const l of COMMON_LICENSES) {
    const src = `/usr/share/common-licenses/${l}`;
    if (existsSync(src)) {
      out.push({ file: `common-licenses/${l}`, row: `${`common-licenses/${l}`.padEnd(28)} full licence text referred to by the Debian copyright files`, text: readFileSync(src) });
    }
  }
  return out;
}

function writeLicenses(dir: string, input: PortableInput, libNames: readonly string[]): void {
  const files = noticeFiles(input, DEBIAN_NOTICES);
  for (const f of files) writeFileSync(join(dir, f.file), f.text);
  writeFileSync(
    join(dir, 'README'),
    [
      `attune-agent ${input.agentVersion} portable folder (${AGENT_DIR}): licence notices.`,
      '',
      'attune-agent itself is MIT-licensed. The folder also ships, unmodified, these files taken from',
      `Debian packages of the build host: ${libNames.map((n) => `lib/${n}`).join(', ')}, tini-static.`,
      'Their sources are available from the Debian archive (https://sources.debian.org) under the',
      'package names and versions below.',
      '',
      ...files.map((f) => f.row),
      '',
    ].join('\n'),
  );
}
