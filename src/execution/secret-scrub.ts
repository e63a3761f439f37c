/**
 * Secret values kept out of everything an action's output reaches: the log artifact files, the
 * result's text fields, result.json and the agent's own log (`log.mirror_runtime_*`).
 *
 * Known before the run: the decrypted secret parameters (execution_secret_value, §5.5). Known only
 * after it: the values at the out_schema's secret paths, once the output is parsed. Each value is
 * hidden in the forms an action is likely to print it: the text itself, its JSON-escaped form (as
 * JSON.stringify and Python's json.dumps write it), every leaf of an object or array and the
 * compact JSON of the whole. Values shorter than MIN_SECRET_CHARS are not hidden (every "1" or
 * "yes" of the output would go) and booleans/null never are. Where occurrences of different
 * secrets overlap, the whole covered span is replaced, so no part of one survives next to another.
 */

export const REDACTED_TEXT = '[REDACTED]';
export const MIN_SECRET_CHARS = 4;

/** The texts to hide for these secret values, longest first (empty when there is nothing to hide). */
export function secretPatterns(values: readonly unknown[]): string[] {
  const out = new Set<string>();
  const add = (s: string) => {
    if ([...s].length >= MIN_SECRET_CHARS) out.add(s);
  };
  const addString = (s: string) => {
    add(s);
    const escaped = JSON.stringify(s).slice(1, -1);
    add(escaped);
    add(asciiEscaped(escaped));
  };
  const walk = (v: unknown, top: boolean) => {
    if (typeof v === 'string') addString(v);
    else if (typeof v === 'number' || typeof v === 'bigint') add(String(v));
    else if (v !== null && typeof v === 'object') {
      if (top) addString(JSON.stringify(v));
      for (const item of Array.isArray(v) ? v : Object.values(v)) walk(item, false);
    }
  };
  for (const v of values) walk(v, true);
  return [...out].sort((a, b) => b.length - a.length);
}

/** Python's default json.dumps: non-ASCII as lowercase \uXXXX (UTF-16 units). */
function asciiEscaped(s: string): string {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    out += c < 0x80 ? s[i] : `\\u${c.toString(16).padStart(4, '0')}`;
  }
  return out;
}

/** Text and JSON values with every pattern replaced. */
export class SecretScrubber {
  readonly patterns: readonly string[];
  constructor(patterns: readonly string[]) {
    this.patterns = patterns;
  }

  get active(): boolean {
    return this.patterns.length > 0;
  }

  text(s: string): string {
    if (!this.active || s === '') return s;
    const runs = coveredRuns(s.length, this.patterns.map((p) => ({ length: p.length, find: (from: number) => s.indexOf(p, from) })));
    if (runs.length === 0) return s;
    let out = '';
    let pos = 0;
    for (const [start, end] of runs) {
      out += s.slice(pos, start) + REDACTED_TEXT;
      pos = end;
    }
    return out + s.slice(pos);
  }

  /** Every string in a JSON value (object keys are names, not values: left alone). */
  deep<T>(value: T): T {
    if (!this.active) return value;
    const walk = (v: unknown): unknown => {
      if (typeof v === 'string') return this.text(v);
      if (Array.isArray(v)) return v.map(walk);
      if (v !== null && typeof v === 'object') {
        const out: Record<string, unknown> = {};
        // defineProperty: a "__proto__" key stays data.
        for (const [k, x] of Object.entries(v)) Object.defineProperty(out, k, { value: walk(x), enumerable: true, writable: true, configurable: true });
        return out;
      }
      return v;
    };
    return walk(value) as T;
  }

  /** A scrubber for one byte stream read in chunks. */
  stream(): StreamScrubber {
    return new StreamScrubber(this.patterns);
  }
}

/**
 * Merged [start, end) spans covered by any occurrence of any pattern (overlapping occurrences
 * included), in order.
 */
function coveredRuns(length: number, patterns: { length: number; find(from: number): number }[]): [number, number][] {
  const spans: [number, number][] = [];
  for (const p of patterns) {
    for (let i = p.find(0); i !== -1 && i < length; i = p.find(i + 1)) spans.push([i, i + p.length]);
  }
  if (spans.length === 0) return spans;
  spans.sort((a, b) => a[0] - b[0]);
  const merged: [number, number][] = [spans[0]];
  for (const [s, e] of spans.slice(1)) {
    const last = merged[merged.length - 1];
    if (s <= last[1]) last[1] = Math.max(last[1], e);
    else merged.push([s, e]);
  }
  return merged;
}

const EMPTY = Buffer.alloc(0);
const REDACTED_BYTES = Buffer.from(REDACTED_TEXT);

/**
 * Scrubs a byte stream chunk by chunk: a secret split across two reads is still caught. Whether a
 * byte lies inside a secret is known once `longest − 1` bytes after it have been seen, so that
 * many bytes wait for the next chunk (or end()); the same number of already emitted bytes is kept
 * as history, for occurrences that started before the waiting ones.
 */
export class StreamScrubber {
  readonly #patterns: Buffer[];
  readonly #keep: number;
  #history: Buffer = EMPTY;
  #pending: Buffer = EMPTY;
  /** The last emitted byte was inside a secret (its marker is already out). */
  #inSecret = false;

  constructor(patterns: readonly string[]) {
    this.#patterns = patterns.map((p) => Buffer.from(p, 'utf8')).filter((b) => b.length > 0);
    this.#keep = Math.max(0, ...this.#patterns.map((b) => b.length)) - 1;
  }

  /** The chunk's bytes that can be passed on now (copied: the caller may reuse the chunk). */
  write(chunk: Uint8Array): Buffer {
    if (this.#patterns.length === 0) return Buffer.from(chunk);
    this.#pending = this.#pending.length === 0 ? Buffer.from(chunk) : Buffer.concat([this.#pending, chunk]);
    return this.#emit(false);
  }

  /** Everything still waiting, at the end of the stream. */
  end(): Buffer {
    if (this.#patterns.length === 0) return EMPTY;
    return this.#emit(true);
  }

  #emit(final: boolean): Buffer {
    const buf = this.#history.length === 0 ? this.#pending : Buffer.concat([this.#history, this.#pending]);
    const from = this.#history.length;
    const known = final ? buf.length : buf.length - this.#keep;
    if (known <= from) return EMPTY;
    const runs = coveredRuns(buf.length, this.#patterns.map((p) => ({ length: p.length, find: (i: number) => buf.indexOf(p, i) })));
    const out: Buffer[] = [];
    let pos = from;
    let inSecret = this.#inSecret;
    for (const [start, end] of runs) {
      if (end <= pos) continue;
      if (start >= known) break;
      if (start > pos) {
        out.push(buf.subarray(pos, start));
        inSecret = false;
      }
      if (!inSecret) out.push(REDACTED_BYTES);
      pos = Math.min(end, known);
      inSecret = true;
    }
    if (pos < known) {
      out.push(buf.subarray(pos, known));
      inSecret = false;
    }
    this.#inSecret = inSecret;
    this.#history = Buffer.from(buf.subarray(Math.max(0, known - this.#keep), known));
    this.#pending = Buffer.from(buf.subarray(known));
    return out.length === 1 ? Buffer.from(out[0]) : Buffer.concat(out);
  }
}
