/**
 * `worker.{id}.packtests` (docs/attune-compat.md §4.7 item 4): consumed so the executor's
 * `pack.test.dispatch.worker.{id}` publish is routable and never piles up, but attune-agent does
 * NOT run pack tests and writes no `pack_install` / `pack_test_execution` row. Each request is
 * logged at error level naming the pack install, then acked (redelivering it would change nothing).
 */
import type { Logger } from 'pino';
import type { Envelope } from '../protocol/envelope.ts';
import { decodePackTestRequested } from '../protocol/pack-messages.ts';
import type { Disposition } from '../mq/consumer.ts';

export function packTestsHandler(logger: Logger): (env: Envelope<unknown>) => Disposition {
  return (env) => {
    const log = logger.child({ message_id: env.message_id, message_type: env.message_type });
    if (env.message_type !== 'PackTestRequested') {
      log.info(`ignoring a ${env.message_type} message on the pack tests queue (acked)`);
      return 'ack';
    }
    const d = decodePackTestRequested(env.payload);
    if (!d.ok) {
      log.warn(`dropping PackTestRequested (nack, no requeue): ${d.error}`);
      return 'nack-drop';
    }
    const p = d.value;
    log.error(
      { pack_install_id: p.pack_install_id, pack_ref: p.pack_ref, pack_version: p.pack_version, trigger_reason: p.trigger_reason },
      `pack tests NOT RUN for pack ${p.pack_ref}${p.pack_version ? ` ${p.pack_version}` : ''} (pack_install ${p.pack_install_id}): ` +
        'attune-agent does not run pack tests and records no pack_test_execution; the pack install keeps the status the executor gave it. ' +
        'Run the tests on an Attune worker, or install the pack without tests (acked)',
    );
    return 'ack';
  };
}
