/**
 * Cancellation, in one place: why a run is stopped (the reason its AbortSignal carries) and the
 * `execution.result` of a cancelled execution, whether its process ran or never started.
 */

/** `cancel`: a user's ExecutionCancelRequested; `shutdown`: the agent stopping (second signal or drain timeout). */
export type CancelReason = 'cancel' | 'shutdown';

export const CANCELLED_BY_USER = 'Execution cancelled by user';
export const CANCELLED_BY_SHUTDOWN = 'Execution cancelled: attune-agent shutting down';

/** The reason an aborted signal carries: `shutdown` when the agent stops, anything else is a user's cancel. */
export function cancelReasonOf(signal: AbortSignal): CancelReason {
  return signal.reason === 'shutdown' ? 'shutdown' : 'cancel';
}

/** The result of a cancelled execution; `ran`: its process's exit code and duration (none: never started). */
export function cancelledResult(reason: CancelReason, ran: { exitCode: number | null; durationMs: number } = { exitCode: null, durationMs: 0 }): Record<string, unknown> {
  const shutdown = reason === 'shutdown';
  return {
    succeeded: false,
    cancelled: true,
    cancel_reason: shutdown ? 'shutdown' : 'user',
    exit_code: ran.exitCode,
    duration_ms: ran.durationMs,
    error: shutdown ? CANCELLED_BY_SHUTDOWN : CANCELLED_BY_USER,
  };
}
