/**
 * Attune's content-addressed runtime environment key (attune_common `runtime_cache.rs`
 * `RuntimeCacheKey::new`, used by the worker's `runtime/process.rs` for every execution that
 * carries `ATTUNE_PACK_RELEASE_DIGEST`, i.e. whose row has a `pack_release_digest`):
 * `{runtime_envs_dir}/sha256/{key}`, where key = lowercase hex SHA-256 over seven values, each
 * written as its UTF-8 byte length (Rust `usize::to_le_bytes`: 8 bytes little-endian on the
 * 64-bit targets Attune ships, 4 on 32-bit ones) followed by its bytes, in this order:
 *
 * 1. the format version `"1"`;
 * 2. the release digest (64 lowercase hex; anything else → no key, the legacy layout is used);
 * 3. the dependency digest: SHA-256 (hex) of the runtime's (or the chosen version's own)
 *    `dependencies.manifest_file` read from the pack dir, or of no bytes when the config has no
 *    `dependencies` or the file cannot be read;
 * 4. the runtime name (`lower(runtime.name)`);
 * 5. the chosen runtime version's `version`, or `"default"`;
 * 6. the platform `{std::env::consts::OS}:{ARCH}:{libc}`: `linux:x86_64:musl` /
 *    `linux:aarch64:musl` for Attune's shipped worker (the agent binary is built for the
 *    `*-unknown-linux-musl` targets, docker/Dockerfile.agent); a worker built for glibc says `gnu`;
 * 7. the worker image format: `ATTUNE_WORKER_IMAGE_FORMAT_VERSION` from the worker's own
 *    environment, else the worker crate's version (`CARGO_PKG_VERSION`, the workspace's `0.6.0`).
 * Everything here is plain data: nothing Rust-specific that a port cannot reproduce.
 */
import { createHash } from 'node:crypto';

export const RUNTIME_CACHE_FORMAT_VERSION = '1';
/** The Attune release this agent stands in for (its worker's CARGO_PKG_VERSION). */
export const ATTUNE_WORKER_VERSION = '0.6.0';
/** SHA-256 of no bytes: the dependency digest of a runtime without a readable manifest. */
export const SHA256_OF_NOTHING = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
/** The `.attune-pack-ref` marker Attune writes into a ready `sha256/{key}` environment (read by its PackDeleted purge). */
export const PACK_REF_MARKER = '.attune-pack-ref';
/** The directory below runtime_envs_dir that holds the content-addressed environments. */
export const CACHE_DIR = 'sha256';

const DIGEST = /^[0-9a-f]{64}$/;

export interface RuntimeCacheKeyInput {
  releaseDigest: string;
  dependencyDigest: string;
  runtimeName: string;
  /** The chosen runtime_version's `version`, or `default`. */
  runtimeVersion: string;
  platform: string;
  workerImageFormat: string;
  /** Bytes of Rust's usize on the worker's target (8 on x86_64/aarch64). */
  usizeBytes?: 4 | 8;
}

/** The key (64 hex), or null when a digest is not lowercase SHA-256 hex (Attune then uses the legacy layout). */
export function runtimeCacheKey(k: RuntimeCacheKeyInput): string | null {
  if (!DIGEST.test(k.releaseDigest) || !DIGEST.test(k.dependencyDigest)) return null;
  const width = k.usizeBytes ?? 8;
  const h = createHash('sha256');
  for (const value of [RUNTIME_CACHE_FORMAT_VERSION, k.releaseDigest, k.dependencyDigest, k.runtimeName, k.runtimeVersion, k.platform, k.workerImageFormat]) {
    const bytes = Buffer.from(value, 'utf8');
    const len = Buffer.alloc(width);
    if (width === 8) len.writeBigUInt64LE(BigInt(bytes.length));
    else len.writeUInt32LE(bytes.length);
    h.update(len);
    h.update(bytes);
  }
  return h.digest('hex');
}

/** Node's process.arch → Rust's std::env::consts::ARCH. */
const RUST_ARCH: Readonly<Record<string, string>> = {
  x64: 'x86_64', arm64: 'aarch64', ia32: 'x86', arm: 'arm', riscv64: 'riscv64', ppc64: 'powerpc64',
  s390x: 's390x', loong64: 'loongarch64', mips: 'mips', mipsel: 'mips', mips64el: 'mips64',
};
/** Node's process.platform → Rust's std::env::consts::OS. */
const RUST_OS: Readonly<Record<string, string>> = { linux: 'linux', darwin: 'macos', win32: 'windows', freebsd: 'freebsd', openbsd: 'openbsd', netbsd: 'netbsd', sunos: 'solaris', android: 'android' };

/** The platform string Attune's shipped (musl) worker computes on this machine's OS and CPU. */
export function attunePlatform(platform: string = process.platform, arch: string = process.arch, libc = 'musl'): string {
  return `${RUST_OS[platform] ?? platform}:${RUST_ARCH[arch] ?? arch}:${libc}`;
}

/** Rust's usize width on this CPU (what the length prefixes are). */
export function usizeBytesOf(arch: string = process.arch): 4 | 8 {
  return arch === 'ia32' || arch === 'arm' || arch === 'mips' || arch === 'mipsel' ? 4 : 8;
}

/** What Attune's worker reads for the image format: its own environment's variable (even empty), else its version. */
export function workerImageFormat(env: Readonly<Record<string, string | undefined>> = process.env): string {
  return env.ATTUNE_WORKER_IMAGE_FORMAT_VERSION ?? ATTUNE_WORKER_VERSION;
}

export interface CacheIdentity { platform: string; workerImageFormat: string; usizeBytes: 4 | 8 }

/** This agent as Attune's worker on this machine would identify itself in the key. */
export function thisWorkerIdentity(env: Readonly<Record<string, string | undefined>> = process.env): CacheIdentity {
  return { platform: attunePlatform(), workerImageFormat: workerImageFormat(env), usizeBytes: usizeBytesOf() };
}
