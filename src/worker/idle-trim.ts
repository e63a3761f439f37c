/**
 * Give memory back when the agent has nothing to do (idle RSS, issue 4's ≤ 80 MB).
 *
 * Right after start-up the agent is ~80 MB RSS, ~55 MB of it pages of its own executable (Node's
 * code and read-only data) touched while starting — module loading, configuration, detection,
 * registration — and never again. Once the agent has been idle for IDLE_TRIM_MS after start-up,
 * those pages are dropped (the addon's releaseMemory(true): MADV_DONTNEED on clean read-only file
 * mappings; the page cache keeps them, what is used again faults back in from there), after a full
 * V8 collection and malloc_trim. Later idle periods (after executions) only collect and
 * malloc_trim: the code an execution runs stays resident for the next one, so no execution pays
 * page faults for it and a burst never pays for a trim (the timer restarts with every finished
 * execution and does nothing while one runs).
 */
import type { Logger } from 'pino';
import { releaseIdleMemory } from '../native/memory.ts';

export const IDLE_TRIM_MS = 1000;
/** `off`: never trim (e.g. to compare memory figures). */
export const IDLE_TRIM_ENV = 'ATTUNE_AGENT_IDLE_TRIM';

export interface IdleTrimmerOptions {
  /** True when no execution runs or waits. */
  isIdle(): boolean;
  /** What trimming does; the file bytes released (default: releaseIdleMemory). */
  trim?: (filePages: boolean) => number;
  idleMs?: number;
  log?: Pick<Logger, 'debug' | 'info'>;
}

export class IdleTrimmer {
  readonly #opts: IdleTrimmerOptions;
  #timer: NodeJS.Timeout | undefined;
  #trims = 0;
  #stopped = false;

  constructor(opts: IdleTrimmerOptions) {
    this.#opts = opts;
  }

  /** Activity (start-up done, an execution finished): trim once the agent stays idle. */
  touch(): void {
    if (this.#stopped) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#fire(), this.#opts.idleMs ?? IDLE_TRIM_MS);
    this.#timer.unref(); // never what keeps the agent alive
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #fire(): void {
    this.#timer = undefined;
    if (!this.#opts.isIdle()) return; // the running execution's end touches again
    const started = performance.now();
    const filePages = this.#trims === 0; // start-up's pages, once
    const released = (this.#opts.trim ?? releaseIdleMemory)(filePages);
    this.#trims++;
    const fields = { released_mb: +(released / 1048576).toFixed(1), trim_ms: +(performance.now() - started).toFixed(1) };
    // Once, at info: an operator watching RSS sees why it dropped.
    if (filePages) this.#opts.log?.info(fields, 'start-up memory given back');
    else this.#opts.log?.debug(fields, 'idle: memory given back');
  }
}
