/**
 * The payloads the worker consumes and publishes (docs/attune-compat.md §4.7–4.8): total decoders for what
 * arrives, builders for what leaves (fields in Attune's serde order).
 */
import type { ExecutionStatus, TerminalStatus } from '../model.ts';
import { describe, formatTimestamp, isPlainObject, isRfc3339, type Decoded } from './envelope.ts';

/** What the worker reads from an `ExecutionRequested` dispatch; every other field is ignored. */
export interface ExecutionRequested {
  execution_id: number;
  action_ref: string;
  worker_id: number;
  release_id: number | null;
  release_digest: string | null;
}

export interface ExecutionCancelRequested {
  execution_id: number;
  worker_id: number;
}

export interface ExecutionStatusChanged {
  execution_id: number;
  action_ref: string;
  previous_status: string;
  new_status: string;
  changed_at: string;
}

export interface ExecutionCompleted {
  execution_id: number;
  action_id: number;
  action_ref: string;
  status: string;
  result: unknown;
  completed_at: string;
  /**
   * Agent extension, present only when true: `result` was shortened to keep the message under the
   * broker's size limit (the row holds it whole). Attune's serde ignores fields it does not know.
   */
  result_truncated?: true;
}

type Fields = Record<string, unknown>;

function field<T>(p: Fields, key: string, check: (v: unknown) => v is T, expected: string, optional: boolean): Decoded<T | null> {
  const v = Object.hasOwn(p, key) ? p[key] : undefined;
  if (v === undefined || v === null) {
    return optional ? { ok: true, value: null } : { ok: false, error: `field "${key}" is ${v === null ? 'null' : 'missing'} (expected ${expected})` };
  }
  return check(v) ? { ok: true, value: v } : { ok: false, error: `field "${key}" must be ${expected}, got ${describe(v)}` };
}

/** Attune ids are i64; here they must also be exact in a JS number (|id| < 2^53). */
const isId = (v: unknown): v is number => Number.isSafeInteger(v);
const isString = (v: unknown): v is string => typeof v === 'string';
const ID = 'an integer id';

export function decodeExecutionRequested(payload: unknown): Decoded<ExecutionRequested> {
  if (!isPlainObject(payload)) return { ok: false, error: `payload must be an object, got ${describe(payload)}` };
  const executionId = field(payload, 'execution_id', isId, ID, false);
  if (!executionId.ok) return executionId;
  const actionRef = field(payload, 'action_ref', isString, 'a string', false);
  if (!actionRef.ok) return actionRef;
  const workerId = field(payload, 'worker_id', isId, ID, false);
  if (!workerId.ok) return workerId;
  const releaseId = field(payload, 'release_id', isId, `${ID} or null`, true);
  if (!releaseId.ok) return releaseId;
  const releaseDigest = field(payload, 'release_digest', isString, 'a string or null', true);
  if (!releaseDigest.ok) return releaseDigest;
  return {
    ok: true,
    value: {
      execution_id: executionId.value!,
      action_ref: actionRef.value!,
      worker_id: workerId.value!,
      release_id: releaseId.value,
      release_digest: releaseDigest.value,
    },
  };
}

export function decodeExecutionCancelRequested(payload: unknown): Decoded<ExecutionCancelRequested> {
  if (!isPlainObject(payload)) return { ok: false, error: `payload must be an object, got ${describe(payload)}` };
  const executionId = field(payload, 'execution_id', isId, ID, false);
  if (!executionId.ok) return executionId;
  const workerId = field(payload, 'worker_id', isId, ID, false);
  if (!workerId.ok) return workerId;
  return { ok: true, value: { execution_id: executionId.value!, worker_id: workerId.value! } };
}

/** `new_status` values Attune's worker publishes; anything else goes out as "unknown". */
const PUBLISHED_STATUSES: ReadonlySet<string> = new Set(['running', 'completed', 'failed', 'canceling', 'cancelled', 'timeout']);

/** Accept a Date or an RFC 3339 string; strings chrono would write as `…Z` are normalised. */
function timeText(t: Date | string | undefined): string {
  if (t === undefined) return formatTimestamp(new Date());
  if (t instanceof Date) return formatTimestamp(t);
  if (!isRfc3339(t)) throw new TypeError(`not an RFC 3339 time: ${describe(t)}`);
  return t.replace(/\.000Z$/, 'Z');
}

/** What an ExecutionStatusChanged is built from (the status publisher's input): the time as a Date or RFC 3339 text, default now. */
export type StatusChange = Omit<ExecutionStatusChanged, 'changed_at'> & { changed_at?: Date | string };

/** What an ExecutionCompleted is built from: our terminal status (capitalised here) or an already capitalised name. */
export type Completion = Omit<ExecutionCompleted, 'status' | 'completed_at'> & { status: TerminalStatus | string; completed_at?: Date | string };

export function statusChangedPayload(p: StatusChange): ExecutionStatusChanged {
  return {
    execution_id: p.execution_id,
    action_ref: p.action_ref,
    previous_status: p.previous_status,
    new_status: PUBLISHED_STATUSES.has(p.new_status) ? p.new_status : 'unknown',
    changed_at: timeText(p.changed_at),
  };
}

/** The Rust `ExecutionStatus` Debug name: `completed` → `Completed`, `timeout` → `Timeout`. */
export function completionStatusName(status: ExecutionStatus | string): string {
  return status.charAt(0).toUpperCase() + status.slice(1);
}

export function completedPayload(p: Completion): ExecutionCompleted {
  return {
    execution_id: p.execution_id,
    action_id: p.action_id,
    action_ref: p.action_ref,
    status: completionStatusName(p.status),
    result: p.result === undefined ? null : p.result,
    completed_at: timeText(p.completed_at),
    ...(p.result_truncated ? { result_truncated: true as const } : {}),
  };
}
