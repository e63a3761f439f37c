/**
 * Pack lifecycle payloads (docs/attune-compat.md §4.7 items 3–4): `PackRegistered` / `PackDeleted`
 * on `worker.{id}.packs`, `PackTestRequested` on `worker.{id}.packtests`. Total decoders: what does
 * not fit is refused with the field it is about; fields the agent does not use are ignored.
 */
import { describe, isPlainObject, type Decoded } from './envelope.ts';

export interface PackRegistered {
  pack_id: number;
  pack_ref: string;
  version: string | null;
  release_id: number | null;
  release_digest: string | null;
  /** Lowercase runtime names the pack's actions use. */
  runtime_names: string[];
}

export interface PackDeleted {
  pack_id: number;
  pack_ref: string;
  /** Relative to runtime_envs_dir (Attune's serde default: []). */
  runtime_environment_paths: string[];
  release_digests: string[];
}

export interface PackTestRequested {
  pack_install_id: number;
  pack_ref: string;
  /** Required strings in Attune's PackTestRequestedPayload. */
  pack_version: string;
  trigger_reason: string;
  /** A staged candidate (`{packs_base_dir}/.pack-test-{id}` on a volume), or null: the active pack. */
  candidate_path: string | null;
  /** The attempt's secret (never logged); its hash is pack_install.candidate_access_token_hash. */
  candidate_access_token: string | null;
}

const isId = (v: unknown): v is number => Number.isSafeInteger(v);
const isStr = (v: unknown): v is string => typeof v === 'string';
const DIGEST = /^[0-9a-f]{64}$/;

type Fields = Record<string, unknown>;

function req<T>(p: Fields, k: string, check: (v: unknown) => v is T, what: string): Decoded<T> {
  const v = p[k];
  return check(v) ? { ok: true, value: v } : { ok: false, error: `field "${k}" must be ${what}, got ${describe(v)}` };
}

function opt<T>(p: Fields, k: string, check: (v: unknown) => v is T, what: string): Decoded<T | null> {
  const v = p[k];
  if (v === undefined || v === null) return { ok: true, value: null };
  return check(v) ? { ok: true, value: v } : { ok: false, error: `field "${k}" must be ${what} or null, got ${describe(v)}` };
}

function strings(p: Fields, k: string): Decoded<string[]> {
  const v = p[k];
  if (v === undefined || v === null) return { ok: true, value: [] };
  if (!Array.isArray(v) || !v.every(isStr)) return { ok: false, error: `field "${k}" must be a list of strings, got ${describe(v)}` };
  return { ok: true, value: v };
}

export function decodePackRegistered(payload: unknown): Decoded<PackRegistered> {
  if (!isPlainObject(payload)) return { ok: false, error: `payload must be an object, got ${describe(payload)}` };
  const packId = req(payload, 'pack_id', isId, 'an integer id');
  if (!packId.ok) return packId;
  const packRef = req(payload, 'pack_ref', isStr, 'a string');
  if (!packRef.ok) return packRef;
  const version = opt(payload, 'version', isStr, 'a string');
  if (!version.ok) return version;
  const releaseId = opt(payload, 'release_id', isId, 'an integer id');
  if (!releaseId.ok) return releaseId;
  const digest = opt(payload, 'release_digest', (v): v is string => isStr(v) && DIGEST.test(v), 'a lowercase sha256 (64 hex digits)');
  if (!digest.ok) return digest;
  const runtimes = strings(payload, 'runtime_names');
  if (!runtimes.ok) return runtimes;
  return {
    ok: true,
    value: { pack_id: packId.value, pack_ref: packRef.value, version: version.value, release_id: releaseId.value, release_digest: digest.value, runtime_names: runtimes.value },
  };
}

export function decodePackDeleted(payload: unknown): Decoded<PackDeleted> {
  if (!isPlainObject(payload)) return { ok: false, error: `payload must be an object, got ${describe(payload)}` };
  const packId = req(payload, 'pack_id', isId, 'an integer id');
  if (!packId.ok) return packId;
  const packRef = req(payload, 'pack_ref', isStr, 'a string');
  if (!packRef.ok) return packRef;
  const paths = strings(payload, 'runtime_environment_paths');
  if (!paths.ok) return paths;
  const digests = strings(payload, 'release_digests');
  if (!digests.ok) return digests;
  return { ok: true, value: { pack_id: packId.value, pack_ref: packRef.value, runtime_environment_paths: paths.value, release_digests: digests.value } };
}

export function decodePackTestRequested(payload: unknown): Decoded<PackTestRequested> {
  if (!isPlainObject(payload)) return { ok: false, error: `payload must be an object, got ${describe(payload)}` };
  const id = req(payload, 'pack_install_id', isId, 'an integer id');
  if (!id.ok) return id;
  const packRef = req(payload, 'pack_ref', isStr, 'a string');
  if (!packRef.ok) return packRef;
  const version = req(payload, 'pack_version', isStr, 'a string');
  if (!version.ok) return version;
  const reason = req(payload, 'trigger_reason', isStr, 'a string');
  if (!reason.ok) return reason;
  const candidate = opt(payload, 'candidate_path', isStr, 'a string');
  if (!candidate.ok) return candidate;
  const token = opt(payload, 'candidate_access_token', isStr, 'a string');
  if (!token.ok) return token;
  return {
    ok: true,
    value: {
      pack_install_id: id.value, pack_ref: packRef.value, pack_version: version.value, trigger_reason: reason.value,
      candidate_path: candidate.value, candidate_access_token: token.value,
    },
  };
}
