/**
 * Step 4: the one file, `<out>/attune-agent`: the launcher (build/launcher.ts) with a payload
 * appended (layout: build/launcher/onefile.h):
 *
 *   launcher | program (the Node SEA, page-aligned) | ld-linux | 6 libraries | addon | notices | table | footer
 *
 * The program is the glibc SEA with each DT_NEEDED library renamed (patchelf --replace-needed) to
 * a fixed-size placeholder `@ATTUNE@<soname>@###…`: at start the launcher writes the path of the
 * bundled copy there (a /proc/self/fd/N memfd, or a file of its cache directory), so the dynamic
 * loader opens exactly the bundled libraries. The SEA blob survives patchelf (it is a note in a
 * loaded segment; postject's lookup walks the program headers in memory).
 */
import { createHash } from 'node:crypto';
import { chmodSync, closeSync, copyFileSync, mkdirSync, openSync, readFileSync, realpathSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, join } from 'node:path';
import { runTool } from './files.ts';
import type { NoticeFile, SharedLib } from './portable.ts';

const MAGIC = 'ATTUNE-ONEFILE/1';
const ENTRY_SIZE = 104;
const FOOTER_SIZE = 64;
const PAGE = 4096;
export const PLACEHOLDER_PREFIX = '@ATTUNE@';
const PLACEHOLDER_SIZE = 256; // with its NUL

export const PIECE = { program: 1, interp: 2, library: 3, addon: 4, notice: 5 } as const;
export type PieceKind = keyof typeof PIECE;

export interface Piece { kind: PieceKind; name: string; offset: number; size: number; sha256: string }

export function placeholder(soname: string): string {
  const head = `${PLACEHOLDER_PREFIX}${soname}@`;
  return head + '#'.repeat(PLACEHOLDER_SIZE - 1 - head.length);
}

export interface OnefileInput {
  launcher: string;
  /** The glibc SEA executable (not the portable folder's patched copy). */
  sea: string;
  loader: string;
  libs: readonly SharedLib[];
  addon: string;
  notices: string;
  output: string;
  workDir: string;
}

/** The SEA with its libraries renamed to placeholders (ld-linux-x86-64.so.2 stays: glibc matches it by name). */
function programWithPlaceholders(sea: string, libs: readonly SharedLib[], workDir: string): string {
  const program = join(workDir, 'program');
  copyFileSync(sea, program);
  chmodSync(program, 0o644);
  const args: string[] = [];
  for (const lib of libs) {
    if (lib.name.startsWith('ld-linux')) continue;
    args.push('--replace-needed', lib.name, placeholder(lib.name));
  }
  runTool('patchelf', [...args, program]);
  const needed = runTool('patchelf', ['--print-needed', program]).stdout.split('\n').filter(Boolean);
  for (const n of needed) {
    if (!n.startsWith(PLACEHOLDER_PREFIX) && !n.startsWith('ld-linux')) throw new Error(`build: ${program} still needs '${n}' by name; the one file must bundle it`);
  }
  return program;
}

export function buildOnefile(input: OnefileInput): Piece[] {
  mkdirSync(input.workDir, { recursive: true });
  const program = programWithPlaceholders(input.sea, input.libs, input.workDir);
  const parts: { kind: PieceKind; name: string; data: Buffer; align: number }[] = [
    { kind: 'program', name: 'attune-agent', data: readFileSync(program), align: PAGE },
    { kind: 'interp', name: basename(input.loader), data: readFileSync(realpathSync(input.loader)), align: 8 },
    ...input.libs.filter((l) => !l.name.startsWith('ld-linux')).map((l) => ({ kind: 'library' as const, name: l.name, data: readFileSync(realpathSync(l.path)), align: 8 })),
    { kind: 'addon', name: basename(input.addon), data: readFileSync(input.addon), align: 8 },
    { kind: 'notice', name: 'LICENSES.txt', data: Buffer.from(input.notices), align: 8 },
  ];
  const tmp = `${input.output}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w', 0o755);
  const pieces: Piece[] = [];
  try {
    let pos = 0;
    const put = (b: Buffer) => {
      writeSync(fd, b, 0, b.length, pos);
      pos += b.length;
    };
    const pad = (align: number) => {
      const n = (align - (pos % align)) % align;
      if (n) put(Buffer.alloc(n));
    };
    put(readFileSync(input.launcher));
    for (const p of parts) {
      pad(p.align);
      pieces.push({ kind: p.kind, name: p.name, offset: pos, size: p.data.length, sha256: createHash('sha256').update(p.data).digest('hex') });
      put(p.data);
    }
    pad(8);
    const table = Buffer.alloc(ENTRY_SIZE * pieces.length);
    pieces.forEach((p, i) => {
      const o = i * ENTRY_SIZE;
      if (Buffer.byteLength(p.name) >= 48) throw new Error(`build: piece name ${p.name} is longer than 47 bytes`);
      table.write(p.name, o, 'utf8');
      table.writeBigUInt64LE(BigInt(p.offset), o + 48);
      table.writeBigUInt64LE(BigInt(p.size), o + 56);
      Buffer.from(p.sha256, 'hex').copy(table, o + 64);
      table.writeUInt32LE(PIECE[p.kind], o + 96);
    });
    const tableOffset = pos;
    put(table);
    const footer = Buffer.alloc(FOOTER_SIZE);
    footer.write(MAGIC, 0, 'latin1');
    footer.writeBigUInt64LE(BigInt(tableOffset), 16);
    footer.writeUInt32LE(pieces.length, 24);
    createHash('sha256').update(table).digest().copy(footer, 32);
    put(footer);
  } finally {
    closeSync(fd);
  }
  chmodSync(tmp, 0o755);
  renameSync(tmp, input.output);
  rmSync(program, { force: true });
  return pieces;
}

/** The pieces of a built one file, read back from its table (tests, bench). */
export function readPieces(file: string): Piece[] {
  const data = readFileSync(file);
  const footer = data.subarray(data.length - FOOTER_SIZE);
  if (footer.toString('latin1', 0, 16) !== MAGIC) throw new Error(`${file} has no one-file footer`);
  const tableOffset = Number(footer.readBigUInt64LE(16));
  const count = footer.readUInt32LE(24);
  const kinds = Object.fromEntries(Object.entries(PIECE).map(([k, v]) => [v, k])) as Record<number, PieceKind>;
  const out: Piece[] = [];
  for (let i = 0; i < count; i++) {
    const o = tableOffset + i * ENTRY_SIZE;
    out.push({
      name: data.toString('utf8', o, o + 48).replace(/\0+$/, ''),
      offset: Number(data.readBigUInt64LE(o + 48)),
      size: Number(data.readBigUInt64LE(o + 56)),
      sha256: data.toString('hex', o + 64, o + 96),
      kind: kinds[data.readUInt32LE(o + 96)],
    });
  }
  return out;
}

/** Debian packages whose files are inside the one file, with what they cover. */
export const ONEFILE_DEBIAN_NOTICES: readonly { pkg: string; covers: string }[] = [
  { pkg: 'libc6', covers: 'ld-linux-x86-64.so.2, libc, libm, libdl, libpthread (GNU C Library, LGPL-2.1+)' },
  { pkg: 'libstdc++6', covers: 'libstdc++.so.6 (GPL-3 with the GCC Runtime Library Exception)' },
  { pkg: 'libgcc-s1', covers: 'libgcc_s.so.1 (GPL-3 with the GCC Runtime Library Exception)' },
  { pkg: 'musl-dev', covers: 'the musl C library linked into the launcher (MIT)' },
];

/** The text `attune-agent --licenses` prints: an index, then every notice in full. */
export function onefileNotices(agentVersion: string, files: readonly NoticeFile[]): string {
  const parts = [
    `attune-agent ${agentVersion}: licence notices of everything inside this one file.`,
    '',
    'attune-agent itself is MIT-licensed. The file also carries, unmodified, the GNU C Library\'s',
    'dynamic loader and libraries, libstdc++ and libgcc_s, taken from Debian packages of the build',
    'host, and its launcher is linked with musl. Their sources are available from the Debian archive',
    '(https://sources.debian.org) under the package names and versions below.',
    '',
    ...files.map((f) => f.row),
    '',
  ];
  for (const f of files) parts.push('='.repeat(78), f.file, '='.repeat(78), (Buffer.isBuffer(f.text) ? f.text.toString('utf8') : f.text).trimEnd(), '');
  return parts.join('\n');
}
