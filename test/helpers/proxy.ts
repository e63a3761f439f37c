/**
 * A TCP proxy for outage tests. RabbitMQ and PostgreSQL are shared with other test files, so they
 * are never stopped: the agent under test connects through this proxy instead, and the test cuts
 * the proxy.
 *
 *   const proxy = await TcpProxy.start(5672);          // listens on 127.0.0.1:<random port>
 *   proxy.url('amqp://guest:guest@127.0.0.1:5672/%2f')   // same URL, pointing at the proxy
 *   await proxy.outage(3000);                           // drop every connection, refuse new ones for 3 s
 *
 * While "down" the proxy keeps listening but drops each new connection at once: a client sees its
 * connection die during the handshake, as with a server that is going away. Cut connections are
 * dropped at the TCP level, so neither side gets a protocol-level goodbye (no AMQP close, no
 * PostgreSQL Terminate). (Plain destroy, not resetAndDestroy: with RSTs a test process was once seen spinning at exit in
 * Node's handle cleanup; suspected, not proven.)
 */
import net from 'node:net';

export class TcpProxy {
  readonly targetHost: string;
  readonly targetPort: number;
  readonly #server: net.Server;
  readonly #pairs = new Set<{ client: net.Socket; upstream: net.Socket }>();
  #down = false;
  #downTimer: NodeJS.Timeout | null = null;
  /** Connections accepted and forwarded (for assertions that the client came back). */
  accepted = 0;
  /** Connections dropped at once because the proxy was down. */
  refused = 0;
  /**
   * Sees every chunk a client sends (after it is forwarded). `conn.dropResponses()` makes the proxy
   * swallow everything the server sends back on that connection from then on: the server acts on
   * the request, the client never hears the answer (a cut between commit and reply).
   */
  onClientData: ((chunk: Buffer, conn: { dropResponses(): void }) => void) | null = null;

  private constructor(server: net.Server, targetHost: string, targetPort: number) {
    this.#server = server;
    this.targetHost = targetHost;
    this.targetPort = targetPort;
  }

  static async start(targetPort: number, targetHost = '127.0.0.1'): Promise<TcpProxy> {
    const server = net.createServer({ noDelay: true });
    const proxy = new TcpProxy(server, targetHost, targetPort);
    server.on('connection', (s) => proxy.#onConnection(s));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    return proxy;
  }

  get port(): number {
    return (this.#server.address() as net.AddressInfo).port;
  }

  get down(): boolean {
    return this.#down;
  }

  /** Live forwarded connections. */
  get connections(): number {
    return this.#pairs.size;
  }

  /** `url` with its host and port replaced by the proxy's. */
  url(url: string): string {
    const u = new URL(url);
    u.hostname = '127.0.0.1';
    u.port = String(this.port);
    return u.toString();
  }

  /** Drop every forwarded connection now (both sides), without refusing new ones. */
  cut(): number {
    const n = this.#pairs.size;
    for (const p of [...this.#pairs]) this.#reset(p);
    return n;
  }

  /** Cut every connection and refuse (drop) new ones until `up()`, or for `ms` when given. */
  goDown(ms?: number): void {
    this.#down = true;
    this.cut();
    if (this.#downTimer) clearTimeout(this.#downTimer);
    this.#downTimer = ms === undefined ? null : setTimeout(() => this.up(), ms);
  }

  up(): void {
    if (this.#downTimer) clearTimeout(this.#downTimer);
    this.#downTimer = null;
    this.#down = false;
  }

  /** goDown for `ms`, resolving when the proxy accepts again. */
  async outage(ms: number): Promise<void> {
    this.goDown();
    await new Promise((r) => setTimeout(r, ms));
    this.up();
  }

  async close(): Promise<void> {
    this.up();
    this.cut();
    await new Promise<void>((r) => this.#server.close(() => r()));
  }

  #onConnection(client: net.Socket): void {
    client.on('error', () => undefined);
    if (this.#down) {
      this.refused++;
      client.destroy();
      return;
    }
    this.accepted++;
    const upstream = net.connect({ host: this.targetHost, port: this.targetPort, noDelay: true });
    upstream.on('error', () => undefined);
    const pair = { client, upstream };
    this.#pairs.add(pair);
    client.pipe(upstream);
    upstream.pipe(client);
    const conn = {
      dropResponses: (): void => {
        upstream.unpipe(client);
        upstream.on('data', () => undefined); // keep reading, into the void
      },
    };
    client.on('data', (chunk: Buffer) => this.onClientData?.(chunk, conn));
    const done = (): void => {
      if (!this.#pairs.delete(pair)) return;
      client.destroy();
      upstream.destroy();
    };
    client.on('close', done);
    upstream.on('close', done);
  }

  #reset(p: { client: net.Socket; upstream: net.Socket }): void {
    this.#pairs.delete(p);
    // Both sides at once; data still buffered in the proxy is dropped, as when a network path dies.
    p.client.unpipe();
    p.upstream.unpipe();
    p.client.destroy();
    p.upstream.destroy();
  }
}
