/**
 * The optional HTTP listener (`worker.health_port`, off when 0):
 *   GET /healthz  200 while the process runs (liveness: never fails on a database or broker outage,
 *                 so Kubernetes does not restart an agent that is waiting for them to come back)
 *   GET /readyz   200 when registered, connected to the database and the broker, consuming and not
 *                 draining; 503 otherwise. The JSON body lists each check.
 *   GET /metrics  Prometheus text (metrics.ts)
 * Plain node:http, no framework; the listener never keeps the process alive (unref) and is closed
 * last, so /readyz shows `draining` for the whole shutdown.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Logger } from './logger.ts';
import type { AgentMetrics } from './metrics.ts';

export interface Readiness {
  ready: boolean;
  checks: Record<string, boolean>;
}

export interface HealthServerOptions {
  host: string;
  port: number;
  log: Logger;
  metrics: AgentMetrics | null;
}

export class HealthServer {
  readonly #o: HealthServerOptions;
  #server: Server | null = null;
  #readiness: () => Readiness = () => ({ ready: false, checks: {} });

  constructor(o: HealthServerOptions) {
    this.#o = o;
  }

  /** Listen; /readyz answers from `readiness` (the worker's lifecycle knows it). */
  async start(readiness: () => Readiness): Promise<void> {
    this.#readiness = readiness;
    const server = createServer((req, res) => void this.#handle(req, res));
    server.keepAliveTimeout = 5_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.#o.port, this.#o.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (e) => this.#o.log.warn({ err: e.message }, 'health listener error'));
    server.unref();
    this.#server = server;
    this.#o.log.info({ host: this.#o.host, port: this.#o.port }, 'health listener on /healthz, /readyz, /metrics');
  }

  async close(): Promise<void> {
    const s = this.#server;
    this.#server = null;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    try {
      if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'text/plain', 'method not allowed\n');
      if (path === '/healthz' || path === '/livez') return send(res, 200, 'application/json', '{"status":"ok"}\n');
      if (path === '/readyz') {
        const r = this.#readiness();
        return send(res, r.ready ? 200 : 503, 'application/json', JSON.stringify({ status: r.ready ? 'ready' : 'not ready', checks: r.checks }) + '\n');
      }
      if (path === '/metrics') {
        if (!this.#o.metrics) return send(res, 404, 'text/plain', 'metrics disabled\n');
        const m = await this.#o.metrics.render();
        return send(res, 200, m.contentType, m.body);
      }
      send(res, 404, 'text/plain', 'not found: try /healthz, /readyz or /metrics\n');
    } catch (e) {
      this.#o.log.warn({ err: (e as Error).message, path }, 'health endpoint failed');
      send(res, 500, 'text/plain', 'internal error\n');
    }
  }
}

function send(res: ServerResponse, code: number, type: string, body: string): void {
  res.writeHead(code, { 'content-type': type, 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body) });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}
