/**
 * The execution service's `StatusPublisher` port on top of the confirm publisher: builds the
 * `ExecutionStatusChanged` / `ExecutionCompleted` envelopes (source_service "worker", fresh ids)
 * and hands them to the outbox. Never throws; a message that cannot be sent is logged as LOST
 * with the execution id. No message goes out larger than `maxMessageBytes`: an `ExecutionCompleted`
 * whose result would make it larger is sent with the result shortened (`result_truncated: true`;
 * protocol/message-size.ts), because a message over the broker's limit closes the channel.
 */
import type { Logger } from 'pino';
import { encodeEnvelope, type OutgoingMessage } from '../protocol/envelope.ts';
import { collectAfterLargeRelease } from '../native/memory.ts';
import { statusChangedPayload, type Completion, type StatusChange } from '../protocol/messages.ts';
import { DEFAULT_MAX_MESSAGE_BYTES, encodeCompletedWithin } from '../protocol/message-size.ts';
import type { MessageType } from '../protocol/names.ts';
import type { ConfirmPublisher } from './publisher.ts';

export interface StatusPublisherAdapter {
  statusChanged(p: StatusChange): void;
  completed(p: Completion): void;
}

export interface StatusPublisherOptions {
  /** message_queue.max_message_bytes. Default 4 MiB. */
  maxMessageBytes?: number;
}

export function createStatusPublisher(publisher: Pick<ConfirmPublisher, 'publish'>, logger: Logger, opts: StatusPublisherOptions = {}): StatusPublisherAdapter {
  const maxBytes = opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  const send = (type: MessageType, executionId: number, build: () => OutgoingMessage): void => {
    let msg: OutgoingMessage;
    try {
      msg = build();
    } catch (e) {
      logger.error({ execution_id: executionId, message_type: type, err: e }, `LOST MESSAGE: cannot encode ${type} for execution ${executionId}: ${(e as Error).message}`);
      return;
    }
    if (msg.body.length > maxBytes) {
      logger.error({ execution_id: executionId, message_type: type, bytes: msg.body.length, max_bytes: maxBytes },
        `LOST MESSAGE: ${type} for execution ${executionId} is ${msg.body.length} bytes, over message_queue.max_message_bytes (${maxBytes})`);
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
    statusChanged: (p) => send('ExecutionStatusChanged', p.execution_id, () => encodeEnvelope('ExecutionStatusChanged', statusChangedPayload(p), { sourceService: 'worker' })),
    completed: (p) => send('ExecutionCompleted', p.execution_id, () => {
      const fitted = encodeCompletedWithin(p, maxBytes);
      if (fitted.truncated) {
        logger.warn({ execution_id: p.execution_id, result_bytes: fitted.fullBytes, message_bytes: fitted.msg.body.length, max_bytes: maxBytes },
          `ExecutionCompleted for execution ${p.execution_id}: result shortened to fit message_queue.max_message_bytes (result_truncated: true); execution.result holds it whole`);
      }
      return fitted.msg;
    }),
  };
}
