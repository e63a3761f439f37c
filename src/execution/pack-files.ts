/**
 * Where an action's code comes from (docs/attune-compat.md §5.3), volume transport only:
 * - pinned release: `{packs_base_dir}/.releases/sha256/{digest}/pack/actions/{entrypoint}`; the
 *   release counts as present only if `pack/pack.yaml` exists and either the `.attune-release-ready`
 *   marker holds the digest or `pack.tar.gz` hashes to it;
 * - otherwise the legacy layout `{packs_base_dir}/{pack_ref}/actions/{entrypoint}`.
 * A non-adhoc action whose file is missing fails (Attune would run the entrypoint text as a shell
 * script). Adhoc actions without a file carry their code inline in `entrypoint`.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { isAbsolute, join, relative, resolve } from 'node:path';
import type { ActionRow, ExecutionRow } from '../model.ts';

export type ActionSource =
  | { kind: 'file'; path: string; packDir: string; packDirExists: boolean }
  | { kind: 'inline'; code: string; packDir: string; packDirExists: boolean };

export type ActionSourceResult = { ok: true; source: ActionSource } | { ok: false; error: string };

export interface ResolveInput {
  packsBaseDir: string;
  action: Pick<ActionRow, 'ref' | 'pack_ref' | 'entrypoint' | 'is_adhoc'>;
  execution: Pick<ExecutionRow, 'pack_release_digest' | 'executable_snapshot'>;
  /** Digests already verified by this agent (hashing pack.tar.gz once per release is enough). */
  verifiedReleases?: Set<string>;
}

const DIGEST = /^[0-9a-f]{64}$/;
/**
 * Attune's pack-ref rule (RefValidator::validate_pack_ref): a lowercase letter, then lowercase
 * letters, digits, `-` or `_`. A pack ref names a directory under packs_base_dir (and
 * runtime_envs_dir), so nothing else — no `/`, `.` or `..` — may reach a path.
 */
export const PACK_REF = /^[a-z][a-z0-9_-]*$/;
export const PACK_REF_RULE = "a lowercase letter, then lowercase letters, digits, '-' or '_'";
export const RELEASE_MARKER = '.attune-release-ready';

export function releaseRoot(packsBaseDir: string, digest: string): string {
  return join(packsBaseDir, '.releases', 'sha256', digest);
}

export async function resolveActionSource(input: ResolveInput): Promise<ActionSourceResult> {
  const { action } = input;
  const digest = input.execution.pack_release_digest ?? input.execution.executable_snapshot?.release?.digest ?? null;

  let packDir: string;
  if (digest) {
    const release = await checkRelease(input.packsBaseDir, digest, input.verifiedReleases);
    if (!release.ok) return { ok: false, error: `action ${action.ref}: ${release.error}` };
    packDir = release.packDir;
  } else {
    if (typeof action.pack_ref !== 'string' || !PACK_REF.test(action.pack_ref)) {
      return { ok: false, error: `action ${action.ref}: pack_ref ${JSON.stringify(action.pack_ref)} is not a pack ref (${PACK_REF_RULE}), so it cannot name a directory under packs_base_dir=${input.packsBaseDir}; fix the action's pack_ref` };
    }
    packDir = join(input.packsBaseDir, action.pack_ref);
  }
  // Attune looks for a file only for core packs or non-adhoc actions; other adhoc actions are inline.
  const inlineOnly = action.is_adhoc && !action.pack_ref.startsWith('core');
  const file = actionFilePath(packDir, action.entrypoint);
  // One stat in the common case: an existing {packDir}/actions/{entrypoint} (a path inside packDir,
  // actionFilePath) means the pack directory exists; it is looked at itself only otherwise.
  const fileExists = !inlineOnly && file.ok ? await isFile(file.path) : false;
  const packDirExists = fileExists || (await isDir(packDir));
  if (inlineOnly) {
    return { ok: true, source: { kind: 'inline', code: action.entrypoint, packDir, packDirExists } };
  }
  if (action.is_adhoc) {
    if (file.ok && fileExists) return { ok: true, source: { kind: 'file', path: file.path, packDir, packDirExists } };
    return { ok: true, source: { kind: 'inline', code: action.entrypoint, packDir, packDirExists } };
  }
  if (!file.ok) return { ok: false, error: `action ${action.ref}: ${file.error}` };
  if (fileExists) return { ok: true, source: { kind: 'file', path: file.path, packDir, packDirExists } };
  const where = packDirExists
    ? `the pack directory ${packDir} has no file actions/${action.entrypoint}`
    : `the pack directory ${packDir} does not exist (is the packs volume mounted at packs_base_dir=${input.packsBaseDir}?)`;
  return { ok: false, error: `action ${action.ref}: action file not found: ${file.path} — ${where}; fix the action's entrypoint or the pack contents` };
}

/** `{packDir}/actions/{entrypoint}`, refusing paths that leave the pack directory. */
export function actionFilePath(packDir: string, entrypoint: string): { ok: true; path: string } | { ok: false; error: string } {
  if (entrypoint.trim() === '') return { ok: false, error: 'the action has an empty entrypoint' };
  if (entrypoint.includes('\0') || entrypoint.includes('\n')) return { ok: false, error: `entrypoint ${JSON.stringify(entrypoint.slice(0, 60))} is not a file path` };
  if (isAbsolute(entrypoint)) return { ok: false, error: `entrypoint ${JSON.stringify(entrypoint)} is absolute; it must be relative to the pack's actions/ directory` };
  if (entrypoint.split('/').includes('..')) return { ok: false, error: `entrypoint ${JSON.stringify(entrypoint)} has a '..' component; it must name a file inside the pack's actions/ directory` };
  // Lexical (no realpath): with no '..' and not absolute this always holds; kept as the invariant.
  const path = resolve(packDir, 'actions', entrypoint);
  const rel = relative(resolve(packDir, 'actions'), path);
  if (rel === '' || rel === '..' || rel.startsWith('../') || isAbsolute(rel)) {
    return { ok: false, error: `entrypoint ${JSON.stringify(entrypoint)} points outside the pack directory ${packDir}` };
  }
  return { ok: true, path };
}

async function checkRelease(
  packsBaseDir: string,
  digest: string,
  verified: Set<string> | undefined,
): Promise<{ ok: true; packDir: string } | { ok: false; error: string }> {
  if (!DIGEST.test(digest)) return { ok: false, error: `pack release digest ${JSON.stringify(digest)} is not 64 lowercase hex characters` };
  const root = releaseRoot(packsBaseDir, digest);
  const packDir = join(root, 'pack');
  const short = `sha256:${digest.slice(0, 12)}`;
  if (!(await isFile(join(packDir, 'pack.yaml')))) {
    return { ok: false, error: `pack release ${short} is not on this worker: ${join(packDir, 'pack.yaml')} not found (packs.transport=volume; mount the Attune packs volume at packs_base_dir=${packsBaseDir})` };
  }
  if (verified?.has(digest)) return { ok: true, packDir };
  const marker = await readFile(join(root, RELEASE_MARKER), 'utf8').catch(() => null);
  if (marker !== null && marker.trim() === digest) {
    verified?.add(digest);
    return { ok: true, packDir };
  }
  const archive = join(root, 'pack.tar.gz');
  const actual = await sha256File(archive).catch(() => null);
  if (actual === digest) {
    verified?.add(digest);
    return { ok: true, packDir };
  }
  const why = actual === null
    ? `neither ${RELEASE_MARKER} (with the digest) nor pack.tar.gz exists in ${root}`
    : `${archive} hashes to sha256:${actual.slice(0, 12)}…, not the pinned digest`;
  return { ok: false, error: `pack release ${short} cannot be verified: ${why}; re-publish the pack release` };
}

function sha256File(path: string): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const h = createHash('sha256');
    createReadStream(path)
      .on('data', (c) => h.update(c))
      .on('error', reject)
      .on('end', () => resolvePromise(h.digest('hex')));
  });
}

async function isFile(path: string): Promise<boolean> {
  return stat(path).then((s) => s.isFile(), () => false);
}

async function isDir(path: string): Promise<boolean> {
  return stat(path).then((s) => s.isDirectory(), () => false);
}
