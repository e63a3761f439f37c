/**
 * Keeping `ExecutionCompleted` under the broker's message size limit. The result of a run can hold
 * 2 × 10 MiB of output, and control bytes grow 6× when JSON-escaped (`\u0001`): sent whole, such a
 * message exceeds RabbitMQ 4's default `max_message_size` (16 MiB) and the broker closes the
 * channel. The row keeps the full result; Attune's consumers reload the row (docs/attune-compat.md §4.8), so the
 * message only has to say that it was shortened. Pure functions.
 */
import { encodeEnvelope, type OutgoingMessage } from './envelope.ts';
import { completedPayload, type Completion } from './messages.ts';

/** The default of message_queue.max_message_bytes: a quarter of RabbitMQ 4's default limit. */
export const DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

/** Bytes `s` takes as a JSON string literal (quotes included), UTF-8 encoded, as JSON.stringify writes it. */
export function jsonStringBytes(s: string): number {
  return 2 + escapedBytes(s, 0, s.length);
}

/** Encoded size of s[from, to) inside a JSON string literal. */
function escapedBytes(s: string, from: number, to: number): number {
  let n = 0;
  for (let i = from; i < to; i++) n += unitBytes(s, i);
  return n;
}

/** Encoded size of the code unit at `i` (a surrogate pair counts 4 on its high half, 0 on its low half). */
function unitBytes(s: string, i: number): number {
  const c = s.charCodeAt(i);
  if (c < 0x80) {
    if (c >= 0x20) return c === 0x22 || c === 0x5c ? 2 : 1;
    return c === 0x08 || c === 0x09 || c === 0x0a || c === 0x0c || c === 0x0d ? 2 : 6;
  }
  if (c < 0x800) return 2;
  if (c >= 0xd800 && c <= 0xdbff) {
    const next = i + 1 < s.length ? s.charCodeAt(i + 1) : 0;
    return next >= 0xdc00 && next <= 0xdfff ? 4 : 6; // a lone surrogate is written as \udXXX
  }
  if (c >= 0xdc00 && c <= 0xdfff) {
    const prev = i > 0 ? s.charCodeAt(i - 1) : 0;
    return prev >= 0xd800 && prev <= 0xdbff ? 0 : 6;
  }
  return 3;
}

/** The longest prefix of `s` whose JSON-escaped body fits `maxBytes` (never splits a surrogate pair). */
export function jsonPrefix(s: string, maxBytes: number): string {
  let n = 0;
  let i = 0;
  for (; i < s.length; i++) {
    const b = unitBytes(s, i);
    const pair = b === 4; // high half of a pair: both halves go together
    if (n + b > maxBytes) break;
    n += b;
    if (pair) i++;
  }
  return s.slice(0, i);
}

/**
 * JSON size of a value as JSON.stringify writes it (UTF-8 bytes). Strings, and the fields of a plain
 * object, are measured without writing them (a result with 10 MiB of control bytes would be 60 MiB
 * of text); other values are serialised (JSON.stringify is fastest there).
 */
export function jsonBytes(value: unknown): number {
  if (typeof value === 'string') return jsonStringBytes(value);
  if (isRecord(value)) {
    let n = 2;
    let fields = 0;
    for (const [k, v] of Object.entries(value)) {
      if (omitted(v)) continue;
      n += jsonStringBytes(k) + 1 + (typeof v === 'string' ? jsonStringBytes(v) : serialisedBytes(v));
      fields++;
    }
    return n + Math.max(0, fields - 1);
  }
  return serialisedBytes(value);
}

function serialisedBytes(value: unknown): number {
  const text = JSON.stringify(value);
  return text === undefined ? 0 : Buffer.byteLength(text, 'utf8');
}

/** A plain JSON object (no toJSON, no class): what results parsed from JSON or built here are. */
function isRecord(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return (proto === Object.prototype || proto === null) && typeof (v as { toJSON?: unknown }).toJSON !== 'function';
}

/** Values JSON.stringify leaves out of objects. */
function omitted(v: unknown): boolean {
  return v === undefined || typeof v === 'function' || typeof v === 'symbol';
}

/** What a shortened string ends with: how much is left out and where the whole value is. */
export function shortenedNotice(omittedChars: number): string {
  return `\n[attune-agent: ${omittedChars} characters left out of this message to keep it under the broker's size limit; the full value is in execution.result]`;
}

/** What replaces a large non-text value (e.g. the parsed output in `data`). */
export function omittedNotice(bytes: number): string {
  return `[attune-agent: value of ${bytes} bytes left out of this message to keep it under the broker's size limit; the full value is in execution.result]`;
}

/** Values kept whole whatever the budget (ids, flags, short texts). */
const SMALL_BYTES = 4096;

/**
 * `result` shortened so its JSON takes at most `budget` bytes (UTF-8), or null when it already
 * does. Only top-level fields change: long strings (stdout, error, …) keep their beginning and end
 * with a notice; when the non-text fields alone are too big, the largest are replaced by a notice.
 * The budget is shared fairly: short strings stay whole, the long ones get equal shares of the rest.
 * A budget too small for even the notices leaves only the small fields.
 */
export function shortenResult(result: Record<string, unknown>, budget: number): Record<string, unknown> | null {
  const entries = Object.entries(result);
  const sizes = new Map<string, number>(entries.map(([k, v]) => [k, jsonBytes(v)]));
  const keyBytes = (k: string) => jsonStringBytes(k) + 2; // "key": and the comma
  const total = 2 + entries.reduce((n, [k]) => n + keyBytes(k) + sizes.get(k)!, 0);
  if (total <= budget) return null;

  const out: Record<string, unknown> = {};
  for (const [k, v] of entries) Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true });
  const isText = (k: string) => typeof out[k] === 'string';
  // The part no string shortening can reduce: keys, non-text values, and the strings' quotes.
  const fixedBytes = () => 2 + Object.keys(out).reduce((n, k) => n + keyBytes(k) + (isText(k) ? 2 + Math.min(sizes.get(k)! - 2, SMALL_BYTES) : sizes.get(k)!), 0);
  // 1. Non-text values too big for half the budget go, largest first.
  const bulky = Object.keys(out).filter((k) => !isText(k) && sizes.get(k)! > SMALL_BYTES).sort((a, b) => sizes.get(b)! - sizes.get(a)!);
  for (const k of bulky) {
    if (fixedBytes() <= budget / 2) break;
    out[k] = omittedNotice(sizes.get(k)!);
    sizes.set(k, jsonStringBytes(out[k] as string));
  }
  // 2. Long strings share what is left; each keeps SMALL_BYTES at least where the budget allows.
  const long = Object.keys(out).filter((k) => isText(k) && sizes.get(k)! - 2 > SMALL_BYTES);
  let left = budget - fixedBytes();
  const notice = jsonStringBytes(shortenedNotice(Number.MAX_SAFE_INTEGER)) - 2;
  const byNeed = [...long].sort((a, b) => sizes.get(a)! - sizes.get(b)!);
  const share = new Map<string, number>();
  for (let i = 0; i < byNeed.length; i++) {
    const k = byNeed[i];
    const extra = sizes.get(k)! - 2 - SMALL_BYTES; // beyond what fixedBytes already counted
    const fair = Math.floor(left / (byNeed.length - i));
    const given = Math.max(0, Math.min(extra, fair));
    share.set(k, SMALL_BYTES + given);
    left -= given;
  }
  for (const k of long) {
    const body = share.get(k)!;
    if (body >= sizes.get(k)! - 2) continue;
    const s = out[k] as string;
    const kept = jsonPrefix(s, Math.max(0, body - notice));
    out[k] = kept + shortenedNotice(s.length - kept.length);
  }
  if (jsonBytes(out) <= budget) return out;
  // 3. Nothing long fits: the small fields only.
  const small: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(out)) {
    if (jsonBytes(v) <= SMALL_BYTES) Object.defineProperty(small, k, { value: v, enumerable: true, writable: true, configurable: true });
  }
  return small;
}

/** What the timestamp and ids of a re-encoded envelope may add (they are made afresh each time). */
const ENVELOPE_SLACK = 64;

export type CompletedFields = Completion;

/**
 * The `ExecutionCompleted` message for `p`, at most `maxBytes` long: whole when it fits, else with
 * its result shortened (shortenResult) and `result_truncated: true`; `fullBytes` is then what the
 * result alone would have taken. The whole result is never serialised when it does not fit.
 */
export function encodeCompletedWithin(p: CompletedFields, maxBytes: number): { msg: OutgoingMessage; truncated: false } | { msg: OutgoingMessage; truncated: true; fullBytes: number } {
  const opts = { sourceService: 'worker' };
  // The message around the result, as sent when even a shortened result cannot fit.
  const frame = encodeEnvelope('ExecutionCompleted', completedPayload({ ...p, result: null, result_truncated: true }), opts);
  const budget = maxBytes - (frame.body.length - 'null'.length) - ENVELOPE_SLACK;
  const result = p.result === undefined ? null : p.result;
  let shortened: unknown;
  let fullBytes: number;
  if (isRecord(result)) {
    const r = shortenResult(result, budget);
    if (r === null) return { msg: encodeEnvelope('ExecutionCompleted', completedPayload(p), opts), truncated: false };
    shortened = r;
    fullBytes = jsonBytes(result);
  } else {
    fullBytes = jsonBytes(result);
    if (fullBytes <= budget) return { msg: encodeEnvelope('ExecutionCompleted', completedPayload(p), opts), truncated: false };
    if (typeof result === 'string') {
      const kept = jsonPrefix(result, Math.max(0, budget - 512));
      shortened = kept + shortenedNotice(result.length - kept.length);
    } else {
      shortened = omittedNotice(fullBytes);
    }
  }
  const msg = encodeEnvelope('ExecutionCompleted', completedPayload({ ...p, result: shortened, result_truncated: true }), opts);
  return { msg: msg.body.length <= maxBytes ? msg : frame, truncated: true, fullBytes };
}
