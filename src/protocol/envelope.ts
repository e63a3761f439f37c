/**
 * Attune's `MessageEnvelope<T>` (docs/attune-compat.md §4.6): decode (pure, total — returns a result, never
 * throws) and encode (the JSON serde writes, field for field and in the same order).
 *
 * The decoder follows what Attune's serde types accept, with these deliberate differences:
 * - nesting past serde_json's recursion limit (127 levels) is refused by a scan before parsing;
 * - `__proto__` keys are dropped wherever they appear;
 * - integral floats such as `5.0` pass where serde wants an integer (JSON.parse cannot tell them
 *   apart and the value is exact), and `version: null` / `headers: null` mean "absent";
 * - ids must be exact in a JS number (|id| < 2^53), a subset of Rust's i64.
 */
import { randomUUID } from 'node:crypto';
import { isMessageType, routeFor, type MessageType } from './names.ts';

export type Decoded<T> = { ok: true; value: T } | { ok: false; error: string };

export interface EnvelopeHeaders {
  retry_count: number;
  source_service?: string;
  trace_id?: string;
  /** Attune flattens arbitrary extra header keys in beside the named ones. */
  [extra: string]: unknown;
}

export interface Envelope<P = unknown> {
  message_id: string;
  correlation_id: string;
  message_type: MessageType;
  version: string;
  /** RFC 3339, as received (or as written by `createEnvelope`). */
  timestamp: string;
  headers: EnvelopeHeaders;
  payload: P;
}

export interface DecodeOptions {
  /** Bodies larger than this are refused before parsing. Default 32 MiB. */
  maxBytes?: number;
  /** Deepest JSON nesting accepted. Default 127: serde_json's recursion limit refuses a 128th level. */
  maxDepth?: number;
  /** Source of the UUIDs that replace a missing/null message_id or correlation_id. */
  newId?: () => string;
}

const DEFAULT_MAX_BYTES = 32 * 1024 * 1024;
const DEFAULT_MAX_DEPTH = 127;
const U32_MAX = 0xffff_ffff;

const ok = <T>(value: T): Decoded<T> => ({ ok: true, value });
const fail = <T>(error: string): Decoded<T> => ({ ok: false, error });

/** Decode a delivery body into an envelope with an untyped payload. Never throws. */
export function decodeEnvelope(body: Uint8Array | string, opts: DecodeOptions = {}): Decoded<Envelope<unknown>> {
  try {
    return decodeUnsafe(body, opts);
  } catch (e) {
    // Belt and braces: every path above returns a result; this catches what cannot be foreseen.
    return fail(`invalid envelope: ${(e as Error)?.message ?? String(e)}`);
  }
}

/** Decode the envelope and then its payload with `decodePayload`. Never throws. */
export function decodeMessage<P>(body: Uint8Array | string, decodePayload: (payload: unknown) => Decoded<P>, opts: DecodeOptions = {}): Decoded<Envelope<P>> {
  const env = decodeEnvelope(body, opts);
  if (!env.ok) return env;
  let payload: Decoded<P>;
  try {
    payload = decodePayload(env.value.payload);
  } catch (e) {
    payload = fail(`payload decoder failed: ${(e as Error)?.message ?? String(e)}`);
  }
  if (!payload.ok) return fail(`invalid ${env.value.message_type} payload (message_id ${env.value.message_id}): ${payload.error}`);
  return ok({ ...env.value, payload: payload.value });
}

/** Stateless between calls (no `stream: true`): one decoder for every message. */
const UTF8_STRICT = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function decodeUnsafe(body: Uint8Array | string, opts: DecodeOptions): Decoded<Envelope<unknown>> {
  const maxBytes = opts.maxBytes ?? DEFAULT_MAX_BYTES;
  let text: string;
  if (typeof body === 'string') {
    if (body.length > maxBytes) return fail(`message body is larger than ${maxBytes} bytes`);
    text = body;
  } else if (body instanceof Uint8Array) {
    if (body.byteLength > maxBytes) return fail(`message body is ${body.byteLength} bytes, more than the ${maxBytes} accepted`);
    if (body.byteLength === 0) return fail('message body is empty (expected a JSON envelope)');
    try {
      // fatal: invalid UTF-8 is an error (serde_json refuses it too); ignoreBOM keeps a BOM so JSON.parse rejects it like serde.
      text = UTF8_STRICT.decode(body);
    } catch {
      return fail('message body is not valid UTF-8');
    }
  } else {
    return fail('message body is not bytes or text');
  }

  const maxDepth = opts.maxDepth ?? DEFAULT_MAX_DEPTH;
  const depth = nestingDepth(text, maxDepth);
  if (depth > maxDepth) return fail(`message body nests JSON deeper than ${maxDepth} levels`);

  let raw: unknown;
  try {
    raw = JSON.parse(text, dropProtoKeys);
  } catch (e) {
    return fail(`message body is not JSON: ${(e as Error).message}`);
  }
  if (!isPlainObject(raw)) return fail(`envelope must be a JSON object, got ${describe(raw)}`);

  const newId = opts.newId ?? randomUUID;
  const messageId = uuidField(raw, 'message_id', newId);
  if (!messageId.ok) return messageId;
  const correlationId = uuidField(raw, 'correlation_id', newId);
  if (!correlationId.ok) return correlationId;

  if (!Object.hasOwn(raw, 'message_type')) return fail('envelope field "message_type" is missing');
  const messageType = raw.message_type;
  if (!isMessageType(messageType)) return fail(`envelope field "message_type" is ${describe(messageType)}: not an Attune message type (PascalCase, e.g. "ExecutionRequested")`);

  let version = '1.0';
  if (Object.hasOwn(raw, 'version') && raw.version !== null) {
    if (typeof raw.version !== 'string') return fail(`envelope field "version" must be a string, got ${describe(raw.version)}`);
    version = raw.version;
  }

  if (!Object.hasOwn(raw, 'timestamp') || raw.timestamp === null) return fail('envelope field "timestamp" is missing (an RFC 3339 time is required)');
  if (!isRfc3339(raw.timestamp)) return fail(`envelope field "timestamp" is ${describe(raw.timestamp)}: not an RFC 3339 time`);

  const headers = decodeHeaders(raw.headers);
  if (!headers.ok) return headers;

  if (!Object.hasOwn(raw, 'payload')) return fail('envelope field "payload" is missing');

  return ok({
    message_id: messageId.value,
    correlation_id: correlationId.value,
    message_type: messageType,
    version,
    timestamp: raw.timestamp,
    headers: headers.value,
    payload: raw.payload,
  });
}

function decodeHeaders(value: unknown): Decoded<EnvelopeHeaders> {
  if (value === undefined || value === null) return ok({ retry_count: 0 });
  if (!isPlainObject(value)) return fail(`envelope field "headers" must be an object, got ${describe(value)}`);
  const out: EnvelopeHeaders = { retry_count: 0 };
  for (const [key, v] of Object.entries(value)) {
    if (key === '__proto__') continue;
    if (key === 'retry_count') {
      if (v === undefined) continue;
      if (!Number.isInteger(v) || (v as number) < 0 || (v as number) > U32_MAX) return fail(`header "retry_count" must be a whole number from 0 to ${U32_MAX}, got ${describe(v)}`);
      out.retry_count = v as number;
    } else if (key === 'source_service') {
      if (v === null) continue;
      if (typeof v !== 'string') return fail(`header "source_service" must be a string, got ${describe(v)}`);
      out.source_service = v;
    } else if (key === 'trace_id') {
      if (v === null) continue;
      const id = parseUuid(v);
      if (id === null) return fail(`header "trace_id" must be a UUID, got ${describe(v)}`);
      out.trace_id = id;
    } else {
      out[key] = v;
    }
  }
  return ok(out);
}

function uuidField(raw: Record<string, unknown>, key: string, newId: () => string): Decoded<string> {
  const v = raw[key];
  if (!Object.hasOwn(raw, key) || v === null) return ok(newId());
  const id = parseUuid(v);
  return id === null ? fail(`envelope field "${key}" must be a UUID, got ${describe(v)}`) : ok(id);
}

const HEX32 = /^[0-9a-fA-F]{32}$/;
const HYPHENATED = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

/** The forms the Rust `uuid` crate parses (hyphenated, simple, braced, urn); normalised to lowercase hyphenated. */
export function parseUuid(v: unknown): string | null {
  if (typeof v !== 'string' || v.length > 45) return null;
  let s = v;
  if (s.startsWith('urn:uuid:')) s = s.slice(9);
  else if (s.startsWith('{') && s.endsWith('}')) s = s.slice(1, -1);
  if (HYPHENATED.test(s)) return s.toLowerCase();
  if (HEX32.test(s)) {
    const h = s.toLowerCase();
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }
  return null;
}

// chrono's DateTime<Utc> parser accepts RFC 3339 with `T`, `t` or a space between date and time.
const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-](\d{2}):(\d{2}))$/;

export function isRfc3339(v: unknown): v is string {
  if (typeof v !== 'string' || v.length > 64) return false;
  const m = RFC3339.exec(v);
  if (!m) return false;
  const [y, mo, d, h, mi, s] = [m[1], m[2], m[3], m[4], m[5], m[6]].map(Number);
  if (mo < 1 || mo > 12 || d < 1 || d > daysIn(y, mo) || h > 23 || mi > 59 || s > 60) return false;
  if (m[9] !== undefined && (Number(m[9]) > 23 || Number(m[10]) > 59)) return false;
  return true;
}

function daysIn(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}

/** RFC 3339 UTC the way chrono writes it: `…:05Z` or `…:05.123Z` (no `.000`). */
export function formatTimestamp(d: Date): string {
  return d.toISOString().replace(/\.000Z$/, 'Z');
}

/** Depth of the deepest `[`/`{` nesting, stopping early once past `limit`. Strings are skipped. */
function nestingDepth(text: string, limit: number): number {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x7b || c === 0x5b) {
      if (++depth > limit) return depth;
    } else if (c === 0x7d || c === 0x5d) {
      depth--;
    }
  }
  return depth < 0 ? 0 : depth;
}

/** JSON.parse reviver: removes own `__proto__` keys so no later merge can touch a prototype. */
function dropProtoKeys(key: string, value: unknown): unknown {
  return key === '__proto__' ? undefined : value;
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A short, log-safe description of a JSON value for error messages. */
export function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? `${v.slice(0, 57)}...` : v);
  if (typeof v === 'number') return Number.isFinite(v) ? String(v) : 'a number out of range';
  return String(v);
}

// ---------------------------------------------------------------------------------------------
// Encoding

export interface EncodeOptions {
  /** `headers.source_service`; worker messages use "worker". Omitted when not given. */
  sourceService?: string;
  /** Defaults to the new message_id, like Attune's `MessageEnvelope::new`. */
  correlationId?: string;
  traceId?: string;
  now?: Date;
  newId?: () => string;
}

/** A message ready for `basic.publish`: body plus the properties Attune's publisher sets. */
export interface OutgoingMessage {
  messageType: MessageType;
  exchange: string;
  routingKey: string;
  body: Buffer;
  messageId: string;
  correlationId: string;
  /** Unix seconds (AMQP `timestamp` property). */
  timestampSec: number;
}

export function createEnvelope<P>(type: MessageType, payload: P, opts: EncodeOptions = {}): Envelope<P> {
  const now = opts.now ?? new Date();
  const messageId = (opts.newId ?? randomUUID)();
  const headers: EnvelopeHeaders = { retry_count: 0 };
  if (opts.sourceService !== undefined) headers.source_service = opts.sourceService;
  if (opts.traceId !== undefined) headers.trace_id = opts.traceId;
  return {
    message_id: messageId,
    correlation_id: opts.correlationId ?? messageId,
    message_type: type,
    version: '1.0',
    timestamp: formatTimestamp(now),
    headers,
    payload,
  };
}

/** Serialise an envelope with serde's field order. Throws only for payloads JSON cannot hold (BigInt, cycles). */
export function serializeEnvelope(env: Envelope<unknown>): Buffer {
  const { retry_count, source_service, trace_id, ...extra } = env.headers;
  const headers: Record<string, unknown> = { retry_count };
  if (source_service !== undefined && source_service !== null) headers.source_service = source_service;
  if (trace_id !== undefined && trace_id !== null) headers.trace_id = trace_id;
  for (const [k, v] of Object.entries(extra)) if (k !== '__proto__') headers[k] = v;
  return Buffer.from(
    JSON.stringify({
      message_id: env.message_id,
      correlation_id: env.correlation_id,
      message_type: env.message_type,
      version: env.version,
      timestamp: env.timestamp,
      headers,
      payload: env.payload,
    }),
    'utf8',
  );
}

/** Build and serialise a new envelope, routed by its message type (exchange + routing key). */
export function encodeEnvelope<P>(type: MessageType, payload: P, opts: EncodeOptions = {}): OutgoingMessage {
  const env = createEnvelope(type, payload, opts);
  const { exchange, routingKey } = routeFor(type);
  return {
    messageType: type,
    exchange,
    routingKey,
    body: serializeEnvelope(env),
    messageId: env.message_id,
    correlationId: env.correlation_id,
    timestampSec: Math.floor(Date.parse(env.timestamp) / 1000),
  };
}
