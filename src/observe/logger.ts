/** One pino logger, JSON lines on stdout (no transports: they do not survive bundling). */
import { StringDecoder } from 'node:string_decoder';
import { Writable } from 'node:stream';
import pino, { type Logger } from 'pino';
export type { Logger };

export function createLogger(level: string, base: Record<string, unknown> = {}): Logger {
  return pino({
    level,
    base: { service: 'attune-agent', ...base },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  });
}

/** What an output mirror needs of a logger (pino's child loggers and execution/process's RunLogger fit). */
export interface LineLogger {
  info(obj: object, msg?: string): void;
}

/**
 * `log.mirror_runtime_stdout_to_stdio` / `…stderr…`: action output copied into the agent's log as
 * JSON lines, one per output line — `{"stream":"stdout","msg":"<line>", execution_id, action_ref,
 * worker_id, …}` from the run's logger — instead of raw bytes that would break the JSON-lines stream
 * (and could not be told apart between concurrent executions). Lines longer than `maxLine`
 * characters are split; a last line without a newline is flushed after `idleMs` of silence.
 * The runner writes buffers it reuses afterwards: everything is consumed synchronously.
 */
export function outputMirror(log: LineLogger, stream: 'stdout' | 'stderr', opts: { maxLine?: number; idleMs?: number } = {}): NodeJS.WritableStream {
  const maxLine = opts.maxLine ?? 16_384;
  const idleMs = opts.idleMs ?? 200;
  const decoder = new StringDecoder('utf8');
  let pending = '';
  let timer: NodeJS.Timeout | null = null;
  const emit = (line: string) => log.info({ stream }, line);
  const flush = () => {
    timer = null;
    if (pending !== '') emit(pending);
    pending = '';
  };
  return new Writable({
    decodeStrings: true,
    write(chunk: Buffer, _enc, cb) {
      pending += decoder.write(chunk);
      let i: number;
      while ((i = pending.indexOf('\n')) >= 0) {
        emit(pending.slice(0, pending[i - 1] === '\r' ? i - 1 : i));
        pending = pending.slice(i + 1);
      }
      while (pending.length > maxLine) {
        emit(pending.slice(0, maxLine));
        pending = pending.slice(maxLine);
      }
      if (timer) clearTimeout(timer);
      timer = pending === '' ? null : setTimeout(flush, idleMs).unref();
      cb();
    },
    final(cb) {
      if (timer) clearTimeout(timer);
      pending += decoder.end();
      flush();
      cb();
    },
  });
}
