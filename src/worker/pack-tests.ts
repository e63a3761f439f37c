/**
 * `worker.{id}.packtests` (docs/attune-compat.md §4.7 item 4): consumed so the executor's
 * `pack.test.dispatch.worker.{id}` publish is routable. attune-agent does NOT run pack tests: a
 * request for this worker's running `pack_install` attempt is finished as `failed` with an error
 * saying so (as Attune's worker finishes an attempt whose tests cannot run), so the install does
 * not hang in `running`; a request for a missing, finished or other worker's attempt is ignored
 * (acked), as Attune's worker does. Every request is logged at error level naming the install.
 */
import type { Logger } from 'pino';
import type { Envelope } from '../protocol/envelope.ts';
import { decodePackTestRequested, type PackTestRequested } from '../protocol/pack-messages.ts';
import type { DeliveryInfo, Disposition } from '../mq/consumer.ts';
import { PACK_REF, PACK_REF_RULE } from '../execution/pack-files.ts';
import type { PackInstallRow } from '../db/pack-installs.ts';

export interface PackTestsDeps {
  workerId: number;
  findInstall: (id: number) => Promise<PackInstallRow | null>;
  failRunning: (id: number, errorMessage: string) => Promise<boolean>;
  log: Logger;
}

export function notRunMessage(p: Pick<PackTestRequested, 'pack_ref' | 'pack_version' | 'pack_install_id'>): string {
  return `Pack tests were not run: attune-agent does not run pack tests (pack ${p.pack_ref}${p.pack_version ? ` ${p.pack_version}` : ''}, install ${p.pack_install_id}); ` +
    'run them on an Attune worker, or disable the pack\'s tests (pack.yaml testing.enabled: false)';
}

export function packTestsHandler(d: PackTestsDeps): (env: Envelope<unknown>, delivery: DeliveryInfo) => Promise<Disposition> {
  return async (env, delivery) => {
    const log = d.log.child({ message_id: env.message_id, message_type: env.message_type });
    if (env.message_type !== 'PackTestRequested') {
      log.info(`ignoring a ${env.message_type} message on the pack tests queue (acked)`);
      return 'ack';
    }
    const decoded = decodePackTestRequested(env.payload);
    if (!decoded.ok) {
      log.warn(`dropping PackTestRequested (nack, no requeue): ${decoded.error}`);
      return 'nack-drop';
    }
    const p = decoded.value;
    const fields = { pack_install_id: p.pack_install_id, pack_ref: p.pack_ref, pack_version: p.pack_version, trigger_reason: p.trigger_reason };
    if (!PACK_REF.test(p.pack_ref)) {
      log.warn(fields, `dropping PackTestRequested (nack, no requeue): pack_ref ${JSON.stringify(p.pack_ref)} is not a pack ref (${PACK_REF_RULE})`);
      return 'nack-drop';
    }
    try {
      const install = await d.findInstall(p.pack_install_id);
      if (!install) {
        log.warn(fields, `pack tests of ${p.pack_ref}: pack_install ${p.pack_install_id} does not exist; ignored (acked)`);
        return 'ack';
      }
      if (install.status !== 'running' || install.assigned_worker_id !== d.workerId) {
        log.info({ ...fields, status: install.status, assigned_worker_id: install.assigned_worker_id }, `pack tests of ${p.pack_ref}: stale or misrouted request (pack_install ${p.pack_install_id} is ${install.status}, assigned to worker ${install.assigned_worker_id}); ignored (acked)`);
        return 'ack';
      }
      const message = notRunMessage(p);
      const failed = await d.failRunning(p.pack_install_id, message);
      log.error(fields, `pack tests NOT RUN for pack ${p.pack_ref}${p.pack_version ? ` ${p.pack_version}` : ''} (pack_install ${p.pack_install_id}): ` +
        (failed ? 'the install is marked failed' : 'the install was no longer running') + '; attune-agent does not run pack tests — run them on an Attune worker (acked)');
      return 'ack';
    } catch (e) {
      // The database answered with an error: retried once, then dropped (the executor's own deadline fails the install).
      log.error({ ...fields, err: (e as Error).message }, `pack tests of ${p.pack_ref}: cannot read or update pack_install ${p.pack_install_id}: ${(e as Error).message}` +
        (delivery.redelivered ? ' (dropped)' : ' (requeued once)'));
      return delivery.redelivered ? 'nack-drop' : 'nack-requeue';
    }
  };
}
