/** ExecutionCompleted messages by execution id, for sections that drive the real agent through the broker. */
import type { ChannelModel } from 'amqplib';

/** Completions (`execution.completed`) by execution id, from anyone publishing on attune.executions. */
export class Completions {
  readonly #waiters = new Map<number, () => void>();
  readonly #seen = new Set<number>();
  static async open(model: ChannelModel): Promise<Completions> {
    const c = new Completions();
    const ch = await model.createChannel();
    const { queue } = await ch.assertQueue('', { exclusive: true, autoDelete: true, durable: false });
    await ch.bindQueue(queue, 'attune.executions', 'execution.completed');
    await ch.consume(queue, (msg) => {
      if (!msg) return;
      const id = (JSON.parse(msg.content.toString('utf8')) as { payload?: { execution_id?: number } }).payload?.execution_id;
      if (typeof id !== 'number') return;
      c.#seen.add(id);
      c.#waiters.get(id)?.();
    }, { noAck: true });
    return c;
  }
  wait(id: number, timeoutMs: number): Promise<void> {
    if (this.#seen.has(id)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`bench: no ExecutionCompleted for execution ${id} within ${timeoutMs} ms`)), timeoutMs);
      this.#waiters.set(id, () => {
        clearTimeout(timer);
        this.#waiters.delete(id);
        resolve();
      });
    });
  }
}
