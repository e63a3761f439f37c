/** Exit codes. Only src/main.ts exits; README "Exit codes" documents this table. */
export const EXIT = {
  OK: 0,
  /** Unexpected internal error (a bug): the log line says what. */
  INTERNAL: 1,
  /** Command-line usage error (unknown flag, missing value). */
  USAGE: 2,
  /** Invalid configuration: the message names the key, the value and what is allowed. */
  CONFIG: 3,
  /** A dependency failed at start-up: database or broker unreachable, wrong schema, bad credentials. */
  STARTUP: 4,
  /** `install`: the target directory cannot hold or run the agent (e.g. a noexec mount). */
  INSTALL: 5,
} as const;

/** Conventional shell code for death by signal. */
export function exitCodeForSignal(signal: NodeJS.Signals): number {
  const n: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15 };
  return 128 + (n[signal] ?? 0);
}
