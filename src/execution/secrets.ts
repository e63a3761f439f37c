/**
 * Secret-backed values (docs/attune-compat.md §5.5, §5.9), byte-compatible with Attune's `crypto` and
 * `secret_values` modules: AES-256-GCM with the SHA-256 of `security.encryption_key` as key,
 * stored as a JSON string `BASE64(nonce(12) ‖ ciphertext ‖ tag(16))` of the value's compact JSON;
 * `encryption_key_hash` = hex SHA-256 of the key string; paths are JSON pointers; a redacted value
 * is the marker `{"$attune_secret": true, "redacted": true}`. Pure: the rows come from db/secret-values.ts.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import type { PreparedSecretValue, StoredSecretValue } from '../model.ts';

const NONCE_BYTES = 12;
const TAG_BYTES = 16;
export const MIN_KEY_CHARS = 32;

export class SecretError extends Error {}


export function redactionMarker(): Record<string, unknown> {
  return { $attune_secret: true, redacted: true };
}

export function hashEncryptionKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

function deriveKey(key: string): Buffer {
  if (key.length < MIN_KEY_CHARS) throw new SecretError(`Encryption key must be at least ${MIN_KEY_CHARS} characters`);
  return createHash('sha256').update(key, 'utf8').digest();
}

export function encryptJson(value: unknown, key: string): string {
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv('aes-256-gcm', deriveKey(key), nonce);
  const body = Buffer.concat([cipher.update(JSON.stringify(value), 'utf8'), cipher.final()]);
  return Buffer.concat([nonce, body, cipher.getAuthTag()]).toString('base64');
}

export function decryptJson(value: unknown, key: string): unknown {
  if (typeof value !== 'string') throw new SecretError('Encrypted JSON value must be a string');
  const raw = Buffer.from(value, 'base64');
  if (raw.length < NONCE_BYTES + TAG_BYTES) throw new SecretError('Invalid ciphertext: too short');
  const decipher = createDecipheriv('aes-256-gcm', deriveKey(key), raw.subarray(0, NONCE_BYTES));
  decipher.setAuthTag(raw.subarray(raw.length - TAG_BYTES));
  let text: string;
  try {
    text = Buffer.concat([decipher.update(raw.subarray(NONCE_BYTES, raw.length - TAG_BYTES)), decipher.final()]).toString('utf8');
  } catch {
    throw new SecretError('Decryption failed (wrong security.encryption_key, or the value is damaged)');
  }
  try {
    return JSON.parse(text);
  } catch {
    // Never the parser's message: V8 quotes the start of the text, i.e. of the secret.
    throw new SecretError('the decrypted value is not valid JSON');
  }
}

/** Put the decrypted values back at their paths (the execution's parameters before the run). */
export function restoreSecretValues(redacted: unknown, secrets: readonly StoredSecretValue[], key: string): unknown {
  const expected = hashEncryptionKey(key);
  let out = structuredClone(redacted);
  for (const s of secrets) {
    if (s.encryption_key_hash && s.encryption_key_hash !== expected) {
      throw new SecretError(`Encryption key hash mismatch for secret path '${s.json_path}' (this agent's security.encryption_key is not the one that encrypted it)`);
    }
    let value: unknown;
    try {
      value = decryptJson(s.encrypted_value, key);
    } catch (e) {
      throw new SecretError(`secret path '${s.json_path}': ${(e as Error).message}`);
    }
    out = setAtPointer(out, s.json_path, value);
  }
  return out;
}

/** The values present at these JSON pointers (the restored secrets, for output scrubbing). */
export function valuesAtPaths(value: unknown, paths: readonly string[]): unknown[] {
  const out: unknown[] = [];
  for (const p of paths) {
    const found = getAtPointer(value, p);
    if (found.present) out.push(found.value);
  }
  return out;
}

/**
 * Secret paths of a parameter/output schema: JSON-Schema style (`properties`, nested) or Attune's
 * flat style (`{name: {type, secret}}`); a property with `secret: true` is a path.
 */
export function secretPathsFromSchema(schema: unknown): string[] {
  if (!isObject(schema)) return [];
  const paths: string[] = [];
  const walk = (node: unknown, path: string, allowRoot: boolean) => {
    if (!isObject(node)) return;
    if (node.secret === true && (allowRoot || path !== '')) {
      paths.push(path);
      return;
    }
    if (isObject(node.properties)) {
      for (const [k, child] of Object.entries(node.properties)) walk(child, `${path}/${escapeSegment(k)}`, true);
    }
  };
  if ('properties' in schema) walk(schema, '', false);
  else for (const [k, def] of Object.entries(schema)) walk(def, `/${escapeSegment(k)}`, true);
  return [...new Set(paths)].sort();
}

/** Replace the values present at `paths` by the marker; returns what was taken. */
export function redactPaths(value: unknown, paths: readonly string[]): { redacted: unknown; taken: { json_path: string; value: unknown }[] } {
  let out = value;
  const taken: { json_path: string; value: unknown }[] = [];
  for (const path of new Set(paths)) {
    const found = getAtPointer(out, path);
    if (!found.present) continue;
    taken.push({ json_path: path, value: found.value });
    if (out === value) out = structuredClone(value);
    out = setAtPointer(out, path, redactionMarker());
  }
  return { redacted: out, taken };
}

export function prepareSecretValues(taken: readonly { json_path: string; value: unknown }[], key: string, sourceKind: string): PreparedSecretValue[] {
  const hash = hashEncryptionKey(key);
  return taken.map((t) => ({ json_path: t.json_path, encrypted_value: encryptJson(t.value, key), encryption_key_hash: hash, source_kind: sourceKind, source_ref: t.json_path }));
}

function getAtPointer(value: unknown, pointer: string): { present: boolean; value?: unknown } {
  let cur = value;
  for (const seg of segments(pointer)) {
    if (Array.isArray(cur)) {
      if (!/^\d+$/.test(seg) || Number(seg) >= cur.length) return { present: false };
      cur = cur[Number(seg)];
    } else if (isObject(cur) && Object.hasOwn(cur, seg)) {
      cur = cur[seg];
    } else {
      return { present: false };
    }
  }
  return { present: true, value: cur };
}

/** Attune's set_at_pointer: missing object members are created, out-of-range array indexes ignored. */
function setAtPointer(root: unknown, pointer: string, replacement: unknown): unknown {
  const segs = segments(pointer);
  if (segs.length === 0) return replacement;
  let cur = root;
  for (let i = 0; i < segs.length; i++) {
    const seg = segs[i];
    const last = i === segs.length - 1;
    if (isObject(cur)) {
      if (last) cur[seg] = replacement;
      else {
        if (!Object.hasOwn(cur, seg)) cur[seg] = {};
        cur = cur[seg];
      }
    } else if (Array.isArray(cur)) {
      if (!/^\d+$/.test(seg) || Number(seg) >= cur.length) return root;
      if (last) cur[Number(seg)] = replacement;
      else cur = cur[Number(seg)];
    } else {
      return root;
    }
  }
  return root;
}

function segments(pointer: string): string[] {
  if (pointer === '') return [];
  return pointer.replace(/^\//, '').split('/').map((s) => s.replaceAll('~1', '/').replaceAll('~0', '~'));
}

function escapeSegment(s: string): string {
  return s.replaceAll('~', '~0').replaceAll('/', '~1');
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}
