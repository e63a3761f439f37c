/**
 * Process result → terminal execution status and `execution.result` JSON (docs/attune-compat.md §5.8–5.9). Pure.
 *
 * Status comes from the run's own flags (cancelled > timeout > completed > failed). Unlike Attune,
 * an error text that merely contains "cancelled" does not turn a failure into a cancellation.
 */
import YAML from 'yaml';
import type { TerminalStatus } from '../model.ts';
import { cancelledResult } from './cancel.ts';
import type { ProcessExit } from './process.ts';

export type OutputFormat = 'text' | 'json' | 'yaml' | 'jsonl';

export interface Outcome {
  status: TerminalStatus;
  result: Record<string, unknown>;
  /** The parsed output, when there is one (what `result.json` holds). */
  data: unknown;
}

export interface OutcomeOptions {
  outputFormat: OutputFormat;
  /** Absolute path of this execution's stderr log file, when one was written. */
  stderrLogPath: string | null;
  /** The effective timeout, for the `Execution timed out after N seconds` text. */
  timeoutMs: number;
}

/** Attune ignores a stdin broken pipe only for actions that exited 0 this fast. */
export const FAST_EXIT_MS = 500;

type RunFacts = Pick<ProcessExit,
  'exitCode' | 'timedOut' | 'cancelled' | 'durationMs' | 'stdout' | 'stderr' | 'stdoutTruncated' |
  'stdoutBytesTruncated' | 'stderrTruncated' | 'stderrBytesTruncated' | 'logsIncomplete' | 'stdinError'>;

export function decideOutcome(run: RunFacts, opts: OutcomeOptions): Outcome {
  const parsed = run.exitCode === 0 && run.stdout.trim() !== '' && !run.timedOut && run.cancelled === null
    ? parseOutput(run.stdout, opts.outputFormat)
    : undefined;
  const stdout = parsed === undefined ? run.stdout : '';
  const error = run.timedOut || run.cancelled !== null ? null : errorText(run);

  let status: TerminalStatus;
  let result: Record<string, unknown> = {};
  if (run.cancelled !== null) {
    status = 'cancelled';
    result = cancelledResult(run.cancelled, run);
  } else if (run.timedOut) {
    status = 'timeout';
    result.succeeded = false;
    result.timed_out = true;
    result.exit_code = -1;
    result.duration_ms = run.durationMs;
    result.error = `Execution timed out after ${formatSeconds(opts.timeoutMs)} seconds`;
  } else if (run.exitCode === 0 && error === null) {
    status = 'completed';
    result.exit_code = 0;
    result.duration_ms = run.durationMs;
    result.succeeded = true;
  } else {
    status = 'failed';
    result.succeeded = false;
    result.exit_code = run.exitCode;
    result.duration_ms = run.durationMs;
    result.error = error;
  }

  if (stdout !== '') result.stdout = stdout;
  if (opts.stderrLogPath && run.stderr.trim() !== '') result.stderr_log = opts.stderrLogPath;
  if (status !== 'completed') {
    if (run.stdoutTruncated) {
      result.stdout_truncated = true;
      result.stdout_bytes_truncated = run.stdoutBytesTruncated;
    }
    if (run.stderrTruncated) {
      result.stderr_truncated = true;
      result.stderr_bytes_truncated = run.stderrBytesTruncated;
    }
  }
  if (parsed !== undefined) {
    result.data = parsed;
    const ack = queueAck(parsed);
    if (ack !== undefined) result.queue_ack = ack;
  }
  if (run.logsIncomplete) result.logs_incomplete = true;
  return { status, result: jsonbSafe(result) as Record<string, unknown>, data: parsed };
}

/**
 * PostgreSQL JSONB rejects U+0000 (`\u0000`), which binary action output easily contains, and lone
 * surrogates (`"\ud800"` parses in JS but not in PostgreSQL): the result written to
 * `execution.result` carries U+FFFD instead (result.json keeps the original).
 */
export function jsonbSafe(value: unknown): unknown {
  if (typeof value === 'string') {
    const s = value.includes('\0') ? value.replaceAll('\0', '\uFFFD') : value;
    return s.isWellFormed() ? s : s.toWellFormed();
  }
  if (Array.isArray(value)) return value.map(jsonbSafe);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      // defineProperty: a parsed "__proto__" key must stay data, not become the prototype.
      Object.defineProperty(out, jsonbSafe(k) as string, { value: jsonbSafe(v), enumerable: true, writable: true, configurable: true });
    }
    return out;
  }
  return value;
}

/** Attune's error precedence: stdin write error (unless a harmless broken pipe), then exit code. */
function errorText(run: RunFacts): string | null {
  if (run.stdinError) {
    const brokenPipe = run.stdinError.code === 'EPIPE';
    const harmless = brokenPipe && run.exitCode === 0 && run.durationMs < FAST_EXIT_MS;
    if (!harmless) return `Failed to write parameters to stdin: ${run.stdinError.message}`;
  }
  if (run.exitCode === 0) return null;
  if (run.stderr === '') return `Command exited with code ${run.exitCode}`;
  const lines = splitLines(run.stderr);
  return lines.length > 5 ? lines[lines.length - 1] : run.stderr;
}

/** Rust `str::lines()`: split on \n, strip one trailing \r, no final empty line. */
function splitLines(text: string): string[] {
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines.map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
}

export function parseOutput(stdout: string, format: OutputFormat): unknown {
  const trimmed = stdout.trim();
  if (trimmed === '') return undefined;
  switch (format) {
    case 'text':
      return undefined;
    case 'json': {
      const whole = tryJson(trimmed);
      if (whole !== undefined) return whole;
      const lines = splitLines(trimmed);
      return lines.length > 0 ? tryJson(lines[lines.length - 1]) : undefined;
    }
    case 'yaml':
      try {
        const v = YAML.parse(trimmed, { maxAliasCount: 100 }) as unknown;
        return v === undefined ? undefined : v;
      } catch {
        return undefined;
      }
    case 'jsonl': {
      const items: unknown[] = [];
      for (const line of splitLines(trimmed)) {
        const v = tryJson(line);
        if (v !== undefined) items.push(v);
      }
      return items.length > 0 ? items : undefined;
    }
  }
}

function tryJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function queueAck(data: unknown): unknown {
  if (data === null || typeof data !== 'object' || Array.isArray(data)) return undefined;
  return (data as Record<string, unknown>).queue_ack;
}

function formatSeconds(ms: number): string {
  return ms % 1000 === 0 ? String(ms / 1000) : (ms / 1000).toFixed(3).replace(/0+$/, '');
}

/** Context could not be prepared (parameters, environment, token): nothing was started. */
export function preparationFailure(message: string, extra: Record<string, unknown> = {}): Outcome {
  return { status: 'failed', result: { succeeded: false, error: `Failed to prepare execution context: ${message}`, ...extra }, data: undefined };
}

/** The action could not be run at all (file/interpreter missing, spawn error, pack release missing). */
export function executionFailure(message: string, extra: Record<string, unknown> = {}): Outcome {
  return { status: 'failed', result: { succeeded: false, error: `Action execution failed: ${message}`, ...extra }, data: undefined };
}
