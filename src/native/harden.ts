/**
 * Process hardening, once the configuration (and with it every credential) has been read and
 * before any action can start (docs/security.md "What an action can see"). Actions run as the
 * agent's uid, so without this they could read the agent's credentials from
 * /proc/<agent>/environ, its memory (/proc/<agent>/mem, ptrace) and inherited descriptors.
 * The addon's harden() (build/native/attune-native.c) makes the agent not dumpable, zeroes its
 * initial environment block (process.env keeps working from heap copies) and marks every
 * descriptor >= 3 close-on-exec. The one file's launcher has already closed inherited
 * descriptors, and PID 1 (its init) has dropped its own environment (build/launcher/init.c).
 */
import { hardenFunction, type HardenReport } from './addon.ts';

export type HardenOutcome = { ok: true; report: HardenReport } | { ok: false; warning: string };

export function hardenProcess(): HardenOutcome {
  const fn = hardenFunction();
  if ('reason' in fn) {
    return {
      ok: false,
      warning: `process hardening unavailable (${fn.reason}): actions running as this uid can read the agent's credentials ` +
        'from /proc/<agent>/environ and its memory; ship lib/attune-pipes.node beside the executable or use the one file dist/attune-agent',
    };
  }
  try {
    const report = fn.harden();
    if (report.environBytes < 0) {
      return { ok: false, warning: 'the agent\'s initial environment could not be located (/proc/self/stat unreadable): it was not overwritten; mount /proc, or pass credentials in the configuration file' };
    }
    return { ok: true, report };
  } catch (e) {
    return { ok: false, warning: `process hardening failed (${(e as Error).message}): actions running as this uid may read the agent's credentials` };
  }
}
