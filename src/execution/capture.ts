/**
 * Bounded output capture (docs/attune-compat.md §5.8), Attune's BoundedLogWriter: keep at most `limit − 128`
 * bytes, then append the notice once; everything after is counted and dropped. Memory is bounded by
 * `limit` however much the action writes. The bytes kept (data + notice) are handed back from
 * `write()` so a log file can receive exactly the same content.
 *
 * Storage is ONE contiguous buffer that grows ×16 up to the cap (64 KiB → 1 MiB → limit), so a full
 * capture leaves ~1 MiB of outgrown buffers behind, not a series; the text is decoded straight from
 * it (no concat copy), and the slices `write()` returns stay valid
 * (a growth copies into a new buffer; old slices keep the old one alive until they are written).
 * `write()` always copies, so callers may reuse the chunk's memory right after the call.
 */
export const NOTICE_RESERVE_BYTES = 128;
const INITIAL_CAPACITY = 64 * 1024;

export type StreamName = 'stdout' | 'stderr';

export function truncationNotice(stream: StreamName): string {
  return `\n\n[OUTPUT TRUNCATED: ${stream} exceeded size limit]\n`;
}

export interface CaptureResult {
  /** Lossy UTF-8 of the kept bytes (+ notice): invalid sequences become U+FFFD. */
  text: string;
  truncated: boolean;
  /** attempted − kept data bytes (0 when not truncated). */
  bytesTruncated: number;
  bytesAttempted: number;
}

export class BoundedCapture {
  readonly limit: number;
  readonly stream: StreamName;
  readonly #notice: Buffer;
  /** Data bytes that may be kept (limit − reserve). */
  readonly #room: number;
  #buf: Buffer | null = null;
  /** Bytes used in #buf (data, then the notice once truncated). */
  #used = 0;
  #kept = 0;
  #attempted = 0;
  #truncated = false;
  #text: string | null = null;

  constructor(stream: StreamName, limit: number) {
    this.stream = stream;
    this.limit = limit;
    this.#notice = Buffer.from(truncationNotice(stream), 'utf8');
    this.#room = Math.max(0, limit - NOTICE_RESERVE_BYTES);
  }

  /**
   * Record a chunk (copied: the caller may reuse its memory afterwards); returns the bytes appended
   * to the capture (possibly empty), a view that stays valid.
   */
  write(chunk: Uint8Array): Buffer {
    this.#attempted += chunk.length;
    // After result() the capture is sealed: late bytes are only counted.
    if (this.#truncated || chunk.length === 0 || this.#text !== null) return EMPTY;
    const left = this.#room - this.#kept;
    const take = Math.min(chunk.length, left);
    const overflow = chunk.length > left;
    const start = this.#used;
    const buf = this.#ensure(start + take + (overflow ? this.#notice.length : 0));
    if (take > 0) buf.set(take === chunk.length ? chunk : chunk.subarray(0, take), start);
    this.#used += take;
    this.#kept += take;
    if (overflow) {
      this.#notice.copy(buf, this.#used);
      this.#used += this.#notice.length;
      this.#truncated = true;
    }
    return buf.subarray(start, this.#used);
  }

  #ensure(need: number): Buffer {
    const cur = this.#buf;
    if (cur !== null && cur.length >= need) return cur;
    const max = this.#room + this.#notice.length;
    const cap = Math.min(max, Math.max(need, INITIAL_CAPACITY, (cur?.length ?? 0) * 16));
    const next = Buffer.allocUnsafeSlow(cap);
    if (cur !== null && this.#used > 0) cur.copy(next, 0, 0, this.#used);
    this.#buf = next;
    return next;
  }

  /** Bytes held right now (data + notice); never above `limit` (or the notice, for tiny limits). */
  get bufferedBytes(): number {
    return this.#used;
  }

  get truncated(): boolean {
    return this.#truncated;
  }

  /** The outcome; decoding happens once, after which the byte buffer is let go. */
  result(): CaptureResult {
    if (this.#text === null) {
      this.#text = this.#buf === null ? '' : this.#buf.toString('utf8', 0, this.#used);
      this.#buf = null;
    }
    return {
      text: this.#text,
      truncated: this.#truncated,
      bytesTruncated: this.#truncated ? this.#attempted - this.#kept : 0,
      bytesAttempted: this.#attempted,
    };
  }
}

const EMPTY = Buffer.alloc(0);
