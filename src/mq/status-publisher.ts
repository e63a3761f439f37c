/**
 * The execution service's `StatusPublisher` port on top of the confirm publisher: builds the
 * `ExecutionStatusChanged` / `ExecutionCompleted` envelopes (source_service "worker", fresh ids)
 * and hands them to the outbox. Never throws; a message that cannot be sent is logged as LOST
 * with the execution id.
 */
import type { Logger } from 'pino';
import { encodeEnvelope, type OutgoingMessage } from '../protocol/envelope.ts';
import { collectAfterLargeRelease } from '../native/memory.ts';
import { completedPayload, statusChangedPayload, type Completion, type StatusChange } from '../protocol/messages.ts';
import type { MessageType } from '../protocol/names.ts';
import type { ConfirmPublisher } from './publisher.ts';

export function createStatusPublisher(publisher: Pick<ConfirmPublisher, 'publish'>, logger: Logger): { statusChanged(p: StatusChange): void; completed(p: Completion): void } {
  const send = (type: MessageType, executionId: number, build: () => unknown): void => {
    let msg: OutgoingMessage;
    try {
      msg = encodeEnvelope(type, build(), { sourceService: 'worker' });
    } catch (e) {
      logger.error({ execution_id: executionId, message_type: type, err: e }, `LOST MESSAGE: cannot encode ${type} for execution ${executionId}: ${(e as Error).message}`);
      return;
    }
    // A big result (up to 2 × 10 MiB of output) was JSON text a moment ago, now garbage: collected
    // before amqplib copies the body into frames, so the two copies never coexist with the text.
    collectAfterLargeRelease(msg.body.length);
    publisher.publish(msg).then(
      () => logger.debug({ execution_id: executionId, message_type: type, message_id: msg.messageId }, `published ${type}`),
      (e: Error) => logger.error({ execution_id: executionId, message_type: type, message_id: msg.messageId }, `LOST MESSAGE: ${type} for execution ${executionId} not published: ${e.message}`),
    );
  };
  return {
    statusChanged: (p) => send('ExecutionStatusChanged', p.execution_id, () => statusChangedPayload(p)),
    completed: (p) => send('ExecutionCompleted', p.execution_id, () => completedPayload(p)),
  };
}
