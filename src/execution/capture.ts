/**
 * Bounded output capture (contract §5.8), Attune's BoundedLogWriter: keep at most `limit − 128`
 * bytes, then append the notice once; everything after is counted and dropped. Memory is bounded by
 * `limit` however much the action writes. The bytes kept (data + notice) are handed back from
 * `write()` so a log file can receive exactly the same content.
 */
export const NOTICE_RESERVE_BYTES = 128;

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
  #chunks: Buffer[] = [];
  #kept = 0;
  #attempted = 0;
  #truncated = false;

  constructor(stream: StreamName, limit: number) {
    this.stream = stream;
    this.limit = limit;
  }

  /** Record a chunk; returns the bytes appended to the capture (possibly empty). */
  write(chunk: Buffer): Buffer {
    this.#attempted += chunk.length;
    if (this.#truncated || chunk.length === 0) return EMPTY;
    const room = Math.max(0, this.limit - NOTICE_RESERVE_BYTES) - this.#kept;
    if (chunk.length <= room) {
      // Copy: the stream may reuse its buffer pool; we keep only what we own.
      const own = Buffer.from(chunk);
      this.#chunks.push(own);
      this.#kept += own.length;
      return own;
    }
    const head = Buffer.from(chunk.subarray(0, Math.max(0, room)));
    const notice = Buffer.from(truncationNotice(this.stream), 'utf8');
    if (head.length > 0) this.#chunks.push(head);
    this.#chunks.push(notice);
    this.#kept += head.length;
    this.#truncated = true;
    return Buffer.concat([head, notice]);
  }

  /** Bytes held in memory right now (data + notice); never above `limit`. */
  get bufferedBytes(): number {
    return this.#chunks.reduce((n, c) => n + c.length, 0);
  }

  get truncated(): boolean {
    return this.#truncated;
  }

  result(): CaptureResult {
    return {
      text: Buffer.concat(this.#chunks).toString('utf8'),
      truncated: this.#truncated,
      bytesTruncated: this.#truncated ? this.#attempted - this.#kept : 0,
      bytesAttempted: this.#attempted,
    };
  }
}

const EMPTY = Buffer.alloc(0);
