/**
 * Confirm-channel publisher (docs/attune-compat.md §4.5) with an in-memory outbox, so the status and completion
 * of an action that finished while the broker was away are published once it is back.
 *
 * - Every message waits for the broker's confirm; `publish()` resolves then.
 * - Properties as Attune sets them: delivery mode 2, content type application/json, message id,
 *   correlation id, timestamp (Unix seconds). No `mandatory` flag.
 * - Connection lost with messages unconfirmed → they stay queued and are republished in order on
 *   the next connection (at-least-once: a message the broker received but did not confirm before
 *   the loss is sent again; Attune's consumers reload the row, so a duplicate is harmless).
 * - One refused message never takes others down with it. A broker nack names its message: it is
 *   retried once, then rejected. A channel closed by a broker error (e.g. a message over RabbitMQ's
 *   `max_message_size`) names none: the messages that were in flight on it are sent again on a new
 *   channel ONE AT A TIME, so the one that closes the channel while alone on it is known; it is
 *   retried once more alone, then rejected, and every other message is delivered.
 * - A message larger than `maxMessageBytes` is rejected at once, never sent.
 * - The outbox is bounded (count and bytes); past the bound `publish()` rejects at once.
 */
import type { ConfirmChannel } from 'amqplib';
import type { Logger } from 'pino';
import type { OutgoingMessage } from '../protocol/envelope.ts';
import { Backoff, type BackoffOptions } from '../backoff.ts';
import type { MqConnection } from './connection.ts';
import { BROKER_RPC_TIMEOUT_MS, settleWithin } from './settle.ts';

export interface PublisherOptions {
  connection: MqConnection;
  logger: Logger;
  /** Most messages held while unconfirmed. Default 10 000. */
  maxOutboxMessages?: number;
  /** Most body bytes held while unconfirmed. Default 128 MiB. */
  maxOutboxBytes?: number;
  /** Attempts per message that end in a broker error attributed to it (not a lost connection). Default 2. */
  maxAttempts?: number;
  /** Largest body accepted (message_queue.max_message_bytes); larger ones are rejected unsent. Default: no limit. */
  maxMessageBytes?: number;
  backoff?: BackoffOptions;
}

export class PublishError extends Error {
  override name = 'PublishError';
}

interface Item {
  msg: OutgoingMessage;
  attempts: number;
  /** The channel it is in flight on; null while queued. */
  inflight: Session | null;
  /** Was in flight on a channel the broker closed with an error: sent again alone, to find the culprit. */
  suspect: boolean;
  done: boolean;
  resolve: () => void;
  reject: (e: Error) => void;
}

interface Session {
  ch: ConfirmChannel;
  open: boolean;
  /** Set when the broker closed the channel with an error (vs. the connection dropping). */
  brokerError: Error | null;
}

export class ConfirmPublisher {
  readonly #o: PublisherOptions;
  readonly #log: Logger;
  readonly #backoff: Backoff;
  readonly #outbox: Item[] = [];
  readonly #flushWaiters: Array<() => void> = [];
  #bytes = 0;
  #session: Session | null = null;
  #opening: Promise<void> | null = null;
  #timer: NodeJS.Timeout | null = null;
  #waitingDrain = false;
  #closed = false;
  readonly #onConnected = (): void => {
    this.#backoff.reset();
    this.#ensureSession();
  };

  constructor(opts: PublisherOptions) {
    this.#o = opts;
    this.#log = opts.logger.child({ component: 'publisher' });
    this.#backoff = new Backoff(opts.backoff);
    opts.connection.on('connected', this.#onConnected);
    if (opts.connection.model) this.#ensureSession();
  }

  /** Messages not yet confirmed by the broker. */
  get pending(): number {
    return this.#outbox.length;
  }

  /** Queue `msg`; resolves once the broker confirms it. Rejects when the outbox is full, on close, or after the retry. */
  publish(msg: OutgoingMessage): Promise<void> {
    if (this.#closed) return Promise.reject(new PublishError(`publisher closed: ${msg.messageType} ${msg.messageId} not sent`));
    const maxMessage = this.#o.maxMessageBytes;
    if (maxMessage !== undefined && msg.body.length > maxMessage) {
      return Promise.reject(new PublishError(`${msg.messageType} ${msg.messageId} is ${msg.body.length} bytes, over message_queue.max_message_bytes (${maxMessage}): not sent (the broker would close the channel)`));
    }
    const maxN = this.#o.maxOutboxMessages ?? 10_000;
    const maxB = this.#o.maxOutboxBytes ?? 128 * 1024 * 1024;
    if (this.#outbox.length >= maxN || this.#bytes + msg.body.length > maxB) {
      return Promise.reject(
        new PublishError(`outbox full (${this.#outbox.length} messages, ${this.#bytes} bytes unconfirmed; RabbitMQ at ${this.#o.connection.safeUrl} unreachable?): ${msg.messageType} ${msg.messageId} not sent`),
      );
    }
    return new Promise<void>((resolve, reject) => {
      this.#outbox.push({ msg, attempts: 0, inflight: null, suspect: false, done: false, resolve, reject });
      this.#bytes += msg.body.length;
      this.#pump();
    });
  }

  /** Wait until every queued message is confirmed. True when the outbox emptied within `timeoutMs`. */
  async flush(timeoutMs: number): Promise<boolean> {
    if (this.#outbox.length === 0) return true;
    let timer: NodeJS.Timeout | undefined;
    let waiter: (() => void) | undefined;
    const emptied = new Promise<boolean>((r) => {
      waiter = () => r(true);
      this.#flushWaiters.push(waiter);
    });
    const timedOut = new Promise<boolean>((r) => {
      timer = setTimeout(() => r(false), timeoutMs);
    });
    const result = await Promise.race([emptied, timedOut]);
    clearTimeout(timer);
    const i = this.#flushWaiters.indexOf(waiter!);
    if (i >= 0) this.#flushWaiters.splice(i, 1);
    return result;
  }

  /** Stop: reject what is still unconfirmed (call `flush` first) and close the channel. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#o.connection.off('connected', this.#onConnected);
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    const left = this.#outbox.splice(0);
    this.#bytes = 0;
    if (left.length > 0) this.#log.error({ count: left.length }, `publisher closed with ${left.length} unconfirmed messages: they are lost`);
    for (const item of left) item.done = true;
    for (const item of left) item.reject(new PublishError(`publisher closed before RabbitMQ confirmed ${item.msg.messageType} ${item.msg.messageId}`));
    this.#notifyFlushed();
    if (this.#opening) await settleWithin(this.#opening, BROKER_RPC_TIMEOUT_MS);
    const s = this.#session;
    this.#session = null;
    if (s?.open) {
      s.open = false;
      await settleWithin(s.ch.close(), BROKER_RPC_TIMEOUT_MS);
    }
  }

  #ensureSession(): void {
    if (this.#closed || this.#opening || this.#session?.open) return;
    this.#opening = this.#open()
      .then(() => this.#pump())
      .catch((e) => {
        this.#log.warn(`could not open the publish channel: ${(e as Error).message}; retrying`);
        this.#scheduleRetry();
      })
      .finally(() => {
        this.#opening = null;
      });
  }

  #scheduleRetry(): void {
    if (this.#closed || this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      if (this.#o.connection.model) this.#ensureSession();
    }, this.#backoff.next());
  }

  async #open(): Promise<void> {
    const model = this.#o.connection.model;
    if (!model) throw new Error('not connected to RabbitMQ');
    const ch = await model.createConfirmChannel();
    const session: Session = { ch, open: true, brokerError: null };
    // Emitted before the channel's close, and so before amqplib fails the unconfirmed callbacks.
    ch.on('error', (err: Error) => {
      session.brokerError = err;
      this.#log.warn(`publish channel closed by RabbitMQ: ${err.message}`);
      this.#attribute(session, err);
    });
    ch.on('close', () => this.#onClosed(session));
    ch.on('drain', () => {
      this.#waitingDrain = false;
      this.#pump();
    });
    if (this.#closed) {
      session.open = false;
      await settleWithin(ch.close(), BROKER_RPC_TIMEOUT_MS);
      return;
    }
    // Whatever was in flight on an older channel can no longer be confirmed there.
    for (const item of this.#outbox) item.inflight = null;
    this.#session = session;
    this.#waitingDrain = false;
  }

  #onClosed(session: Session): void {
    session.open = false;
    if (this.#session !== session) return;
    this.#session = null;
    if (this.#closed) return;
    if (!this.#o.connection.model) return; // connection lost: the `connected` event reopens the channel
    // Broker error on a live connection: recreate right away (the one retry); otherwise back off.
    if (session.brokerError) this.#ensureSession();
    else this.#scheduleRetry();
  }

  #pump(): void {
    const s = this.#session;
    if (!s?.open || this.#waitingDrain || this.#closed) return;
    // After a broker error that named no message: the suspects go out one at a time, and nothing
    // else meanwhile, until each is confirmed or found to be the one the broker refuses.
    const suspect = this.#outbox.find((i) => i.suspect);
    if (suspect) {
      if (!this.#outbox.some((i) => i.inflight === s)) this.#send(s, suspect);
      return;
    }
    for (const item of this.#outbox) {
      if (item.inflight) continue;
      if (!this.#send(s, item)) return;
    }
  }

  /** Publish `item` on `s`; false when nothing more should be written now (closing channel, full buffer). */
  #send(s: Session, item: Item): boolean {
    item.inflight = s;
    const m = item.msg;
    let writable: boolean;
    try {
      writable = s.ch.publish(
        m.exchange,
        m.routingKey,
        m.body,
        { deliveryMode: 2, contentType: 'application/json', messageId: m.messageId, correlationId: m.correlationId, timestamp: m.timestampSec },
        (err: unknown) => this.#onConfirm(s, item, err as Error | null),
      );
    } catch (e) {
      // The channel is closing; the next channel picks the item up.
      item.inflight = null;
      this.#log.debug({ err: (e as Error).message }, 'publish on a closing channel');
      return false;
    }
    if (!writable) {
      this.#waitingDrain = true; // socket buffer full: wait for 'drain'
      return false;
    }
    return true;
  }

  /**
   * The broker closed `s` with an error. A message alone in flight on it is the cause: it uses up
   * an attempt. Several in flight: any of them may be, so none is charged; all become suspects and
   * go out again one at a time (#pump).
   */
  #attribute(s: Session, err: Error): void {
    const inflight = this.#outbox.filter((i) => i.inflight === s && !i.done);
    if (inflight.length === 1) {
      const item = inflight[0];
      item.suspect = true;
      this.#charge(item, err.message);
      return;
    }
    for (const item of inflight) item.suspect = true;
    if (inflight.length > 1) this.#log.warn({ in_flight: inflight.length }, 'publish channel closed by a broker error with several messages unconfirmed: sending them again one at a time to find the one it refuses');
  }

  /** One failed attempt of `item` the broker refused; rejected (and dropped) once it has used them all. */
  #charge(item: Item, why: string): void {
    item.attempts++;
    const maxAttempts = this.#o.maxAttempts ?? 2;
    if (item.attempts < maxAttempts) return;
    item.inflight = null;
    this.#remove(item);
    this.#log.error({ message_id: item.msg.messageId, message_type: item.msg.messageType, attempts: item.attempts, bytes: item.msg.body.length },
      `RabbitMQ refused ${item.msg.messageType} to ${item.msg.exchange}/${item.msg.routingKey}: ${why}`);
    item.reject(new PublishError(`RabbitMQ refused ${item.msg.messageType} ${item.msg.messageId} after ${item.attempts} attempts: ${why}`));
  }

  #onConfirm(s: Session, item: Item, err: Error | null): void {
    // Ignore late callbacks: item rejected by close() or #charge, or already re-sent on a newer channel.
    if (item.inflight !== s || item.done) return;
    item.inflight = null;
    if (!err) {
      this.#remove(item);
      item.resolve();
      if (item.suspect) this.#pump(); // innocent: the next suspect, or back to sending in bulk
      return;
    }
    if (err.message === 'message nacked') {
      // A nack names its message: charged, and retried on the live channel while attempts remain.
      this.#charge(item, err.message);
      this.#pump();
    }
    // Otherwise the channel closed (connection lost, or a broker error already attributed in
    // #attribute): the item stays queued for the next channel.
  }

  #remove(item: Item): void {
    item.done = true;
    const i = this.#outbox.indexOf(item);
    if (i >= 0) {
      this.#outbox.splice(i, 1);
      this.#bytes -= item.msg.body.length;
    }
    if (this.#outbox.length === 0) this.#notifyFlushed();
  }

  #notifyFlushed(): void {
    for (const w of this.#flushWaiters.splice(0)) w();
  }
}
