/**
 * A durable-queue consumer with manual acks (docs/attune-compat.md §4.4). Deliveries are handled one at a time,
 * in order, like Attune's consumer loop: a handler that waits (for an execution permit) holds back
 * the rest, and prefetch bounds what the broker hands over meanwhile.
 *
 * - Undecodable bodies are nacked without requeue and logged with the reason; never a crash or stall.
 * - The channel is rebuilt after a loss (connection or channel) with full-jitter backoff, and the
 *   consumer re-subscribes, unless `cancel()` was called.
 * - An ack for a delivery whose channel died cannot be sent (delivery tags belong to their channel).
 *   RabbitMQ requeues such a message and redelivers it with `redelivered = true`; the handler must
 *   tolerate the duplicate (the execution service guards by execution id and row status).
 * - Buffered deliveries of a dead channel are discarded unhandled, for the same reason.
 */
import type { Channel, ConsumeMessage } from 'amqplib';
import type { Logger } from 'pino';
import { decodeMessage, type DecodeOptions, type Decoded, type Envelope } from '../protocol/envelope.ts';
import { Backoff, type BackoffOptions } from '../backoff.ts';
import type { MqConnection } from './connection.ts';
import { BROKER_RPC_TIMEOUT_MS, settleWithin } from './settle.ts';

export type Disposition = 'ack' | 'nack-requeue' | 'nack-drop';

export interface DeliveryInfo {
  deliveryTag: number;
  redelivered: boolean;
  exchange: string;
  routingKey: string;
  consumerTag: string;
  /** When this consumer received it (ms since the epoch): how long it has been held unacked. */
  receivedAt: number;
}

export interface ConsumerOptions<P> {
  connection: MqConnection;
  queue: string;
  consumerTag: string;
  prefetch: number;
  decodePayload: (payload: unknown) => Decoded<P>;
  handler: (envelope: Envelope<P>, delivery: DeliveryInfo) => Promise<Disposition> | Disposition;
  logger: Logger;
  /** Runs on the consumer's channel before each basic.consume, e.g. re-declaring its queue. */
  beforeConsume?: (ch: Channel) => Promise<void>;
  decodeOptions?: DecodeOptions;
  backoff?: BackoffOptions;
}

export interface ConsumerStats {
  delivered: number;
  acked: number;
  requeued: number;
  dropped: number;
  undecodable: number;
  /** Settlements that could not be sent because the delivery's channel was gone. */
  lostSettlements: number;
  /** Buffered deliveries discarded because their channel died before they were handled. */
  discarded: number;
}

interface Session {
  ch: Channel;
  open: boolean;
}

interface Pending {
  session: Session;
  msg: ConsumeMessage;
  receivedAt: number;
}

export class QueueConsumer<P> {
  readonly #o: ConsumerOptions<P>;
  readonly #log: Logger;
  readonly #backoff: Backoff;
  readonly #buffer: Pending[] = [];
  readonly #idleWaiters: Array<() => void> = [];
  readonly stats: ConsumerStats = { delivered: 0, acked: 0, requeued: 0, dropped: 0, undecodable: 0, lostSettlements: 0, discarded: 0 };
  #session: Session | null = null;
  #opening: Promise<void> | null = null;
  #timer: NodeJS.Timeout | null = null;
  #pumping = false;
  #stopped = false;
  #started = false;
  #cancelling: Promise<void> | null = null;
  readonly #onConnected = (): void => {
    this.#backoff.reset();
    this.#ensureSession();
  };

  constructor(opts: ConsumerOptions<P>) {
    this.#o = opts;
    this.#log = opts.logger.child({ queue: opts.queue, consumer_tag: opts.consumerTag });
    this.#backoff = new Backoff(opts.backoff);
  }

  /** True while subscribed (deliveries can arrive). */
  get consuming(): boolean {
    return this.#session?.open === true && !this.#stopped;
  }

  /** True once `cancel()` or `close()` was called: no more deliveries will be taken. */
  get cancelled(): boolean {
    return this.#cancelling !== null;
  }

  /** Subscribe. Rejects if the first basic.consume fails (e.g. queue missing, 403); later losses are recovered. */
  async start(): Promise<void> {
    if (this.#started) throw new Error(`consumer ${this.#o.consumerTag} already started`);
    this.#started = true;
    this.#o.connection.on('connected', this.#onConnected);
    try {
      await this.#openSession();
    } catch (e) {
      this.#stopped = true;
      this.#o.connection.off('connected', this.#onConnected);
      throw e;
    }
  }

  /**
   * Stop deliveries (basic.cancel) for good — the first step of a graceful drain. The channel stays
   * open so deliveries already received can still be handled and acked; no re-subscribe follows.
   */
  cancel(): Promise<void> {
    this.#cancelling ??= (async () => {
      this.#stopped = true;
      this.#o.connection.off('connected', this.#onConnected);
      if (this.#timer) clearTimeout(this.#timer);
      this.#timer = null;
      if (this.#opening) await settleWithin(this.#opening, BROKER_RPC_TIMEOUT_MS);
      const s = this.#session;
      if (s?.open) {
        let failed: Error | null = null;
        const outcome = await settleWithin(
          s.ch.cancel(this.#o.consumerTag).catch((e: Error) => {
            failed = e;
          }),
          BROKER_RPC_TIMEOUT_MS,
        );
        if (outcome === 'timeout') this.#log.warn(`basic.cancel got no answer within ${BROKER_RPC_TIMEOUT_MS} ms (connection dead?); deliveries stop with the channel`);
        else if (failed) this.#log.debug({ err: (failed as Error).message }, 'basic.cancel failed (channel already gone)');
        else this.#log.info('stopped consuming (basic.cancel); delivered messages are still handled');
      }
    })();
    return this.#cancelling;
  }

  /** Resolves when every received delivery has been handled and settled. */
  idle(): Promise<void> {
    if (!this.#pumping && this.#buffer.length === 0) return Promise.resolve();
    return new Promise((r) => this.#idleWaiters.push(r));
  }

  /** Cancel, then close the channel; unsettled deliveries go back to the queue (broker requeue). */
  async close(): Promise<void> {
    await this.cancel();
    const s = this.#session;
    this.#session = null;
    if (s?.open) {
      s.open = false;
      await settleWithin(s.ch.close(), BROKER_RPC_TIMEOUT_MS);
    }
    this.#discardBuffered();
  }

  #ensureSession(): void {
    if (this.#stopped || this.#opening || this.#session?.open) return;
    this.#openSession().catch((e) => {
      if (this.#stopped) return;
      this.#log.warn(`could not resume consuming ${this.#o.queue}: ${(e as Error).message}; retrying`);
      this.#scheduleRetry();
    });
  }

  #scheduleRetry(): void {
    if (this.#stopped || this.#timer) return;
    const delay = this.#backoff.next();
    this.#timer = setTimeout(() => {
      this.#timer = null;
      // Without a connection, the `connected` event brings us back.
      if (this.#o.connection.model) this.#ensureSession();
    }, delay);
  }

  #openSession(): Promise<void> {
    this.#opening ??= this.#doOpen().finally(() => {
      this.#opening = null;
    });
    return this.#opening;
  }

  async #doOpen(): Promise<void> {
    const model = this.#o.connection.model;
    if (!model) throw new Error(`not connected to RabbitMQ (consumer ${this.#o.consumerTag})`);
    const ch = await model.createChannel();
    const session: Session = { ch, open: true };
    ch.on('error', (err: Error) => this.#log.warn(`consumer channel closed by RabbitMQ: ${err.message}`));
    ch.on('close', () => this.#onSessionClosed(session));
    try {
      await ch.prefetch(this.#o.prefetch);
      if (this.#o.beforeConsume) await this.#o.beforeConsume(ch);
      if (this.#stopped) throw new Error('consumer cancelled while (re)subscribing');
      await ch.consume(this.#o.queue, (msg) => this.#onDelivery(session, msg), { consumerTag: this.#o.consumerTag, noAck: false });
    } catch (e) {
      session.open = false;
      await settleWithin(ch.close(), BROKER_RPC_TIMEOUT_MS);
      throw e;
    }
    this.#session = session;
    this.#backoff.reset();
    this.#log.info({ prefetch: this.#o.prefetch }, `consuming ${this.#o.queue}`);
  }

  #onSessionClosed(session: Session): void {
    session.open = false;
    this.#discardBuffered();
    // A session that never finished subscribing is handled by its opener.
    if (this.#session !== session) return;
    this.#session = null;
    if (this.#stopped) return;
    this.#log.warn(`consumer channel for ${this.#o.queue} closed; resubscribing`);
    this.#scheduleRetry();
  }

  #onDelivery(session: Session, msg: ConsumeMessage | null): void {
    if (msg === null) {
      // The broker cancelled the subscription (queue deleted or failed over): rebuild the session.
      this.#log.warn(`RabbitMQ cancelled the subscription to ${this.#o.queue} (queue deleted?); resubscribing`);
      session.open = false;
      if (this.#session === session) this.#session = null;
      session.ch.close().catch(() => undefined);
      if (!this.#stopped) this.#scheduleRetry();
      return;
    }
    this.stats.delivered++;
    this.#buffer.push({ session, msg, receivedAt: Date.now() });
    void this.#pump();
  }

  async #pump(): Promise<void> {
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      for (let next = this.#buffer.shift(); next; next = this.#buffer.shift()) {
        if (!next.session.open) {
          this.stats.discarded++;
          continue;
        }
        await this.#handle(next);
      }
    } finally {
      this.#pumping = false;
      for (const w of this.#idleWaiters.splice(0)) w();
    }
  }

  async #handle({ session, msg, receivedAt }: Pending): Promise<void> {
    const decoded = decodeMessage(msg.content, this.#o.decodePayload, this.#o.decodeOptions);
    if (!decoded.ok) {
      this.stats.undecodable++;
      this.#log.warn(
        { delivery_tag: msg.fields.deliveryTag, message_id: msg.properties.messageId, redelivered: msg.fields.redelivered, bytes: msg.content.length },
        `dropping undecodable message from ${this.#o.queue} (nack, no requeue): ${decoded.error}`,
      );
      this.#settle(session, msg, 'nack-drop');
      return;
    }
    const env = decoded.value;
    const info: DeliveryInfo = {
      deliveryTag: msg.fields.deliveryTag,
      redelivered: msg.fields.redelivered,
      exchange: msg.fields.exchange,
      routingKey: msg.fields.routingKey,
      consumerTag: msg.fields.consumerTag,
      receivedAt,
    };
    let disposition: Disposition;
    try {
      disposition = await this.#o.handler(env, info);
    } catch (e) {
      // Unexpected handler failure: dropping beats an endless redelivery loop (Attune: non-retriable → no requeue).
      this.#log.error({ err: e, message_id: env.message_id, message_type: env.message_type }, `handler failed for a message from ${this.#o.queue}; dropped (nack, no requeue)`);
      disposition = 'nack-drop';
    }
    this.#settle(session, msg, disposition, env.message_id);
  }

  #settle(session: Session, msg: ConsumeMessage, d: Disposition, messageId?: string): void {
    if (!session.open) {
      this.stats.lostSettlements++;
      this.#log.warn(
        { delivery_tag: msg.fields.deliveryTag, message_id: messageId, disposition: d },
        `cannot ${d} a message from ${this.#o.queue}: its channel is gone; RabbitMQ will redeliver it (redelivered=true)`,
      );
      return;
    }
    try {
      if (d === 'ack') session.ch.ack(msg);
      else session.ch.nack(msg, false, d === 'nack-requeue');
    } catch (e) {
      this.stats.lostSettlements++;
      this.#log.warn({ message_id: messageId, disposition: d }, `could not ${d} a message from ${this.#o.queue} (${(e as Error).message}); RabbitMQ will redeliver it`);
      return;
    }
    if (d === 'ack') this.stats.acked++;
    else if (d === 'nack-requeue') this.stats.requeued++;
    else this.stats.dropped++;
  }

  #discardBuffered(): void {
    for (let i = this.#buffer.length - 1; i >= 0; i--) {
      if (!this.#buffer[i].session.open) {
        this.#buffer.splice(i, 1);
        this.stats.discarded++;
      }
    }
  }
}
