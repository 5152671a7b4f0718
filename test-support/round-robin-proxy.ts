import { Agent, createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One node behind the balancer: a loopback HTTP address. */
export interface Backend {
  host: string;
  port: number;
}

/**
 * A load balancer for tests on loopback: each HTTP request goes to the next backend in turn (not
 * each connection, so a client's keep-alive connection still reaches every node), as HAProxy's
 * `balance roundrobin` with `option redispatch` does. A backend that refuses a connection is
 * skipped for `downForMs`, and a request without a body it could not be sent is sent to the next.
 * Listens on 127.0.0.1; forwards to loopback only.
 */
export class RoundRobinProxy {
  readonly #server: Server;
  readonly #backends: Backend[];
  readonly #down = new Map<number, number>();
  readonly #agent = new Agent({ keepAlive: true });
  readonly #downForMs: number;
  #next = 0;
  /** Requests sent to each backend, by index. */
  readonly sent: number[];

  private constructor(server: Server, backends: Backend[], downForMs: number) {
    this.#server = server;
    this.#backends = backends;
    this.#downForMs = downForMs;
    this.sent = backends.map(() => 0);
  }

  static async start(backends: Backend[], opts: { downForMs?: number } = {}): Promise<RoundRobinProxy> {
    for (const b of backends) {
      if (!/^127\.\d+\.\d+\.\d+$/.test(b.host)) throw new RangeError(`RoundRobinProxy: backends are on loopback only, got ${b.host}`);
    }
    const server = createServer();
    const proxy = new RoundRobinProxy(server, [...backends], opts.downForMs ?? 5000);
    server.on('request', (req, res) => proxy.#forward(req, res, 0));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return proxy;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  /** Backends in turn, skipping those marked down (all down: the next one anyway). */
  #pick(): number {
    for (let i = 0; i < this.#backends.length; i++) {
      const index = this.#next++ % this.#backends.length;
      if ((this.#down.get(index) ?? 0) <= Date.now()) return index;
    }
    return this.#next++ % this.#backends.length;
  }

  #forward(req: IncomingMessage, res: ServerResponse, attempt: number): void {
    const index = this.#pick();
    const backend = this.#backends[index]!;
    this.sent[index]!++;
    const bodyless = req.headers['content-length'] === undefined && req.headers['transfer-encoding'] === undefined;
    const upstream = request({ host: backend.host, port: backend.port, method: req.method, path: req.url, headers: req.headers, agent: this.#agent });
    upstream.on('response', (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.rawHeaders);
      answer.pipe(res);
    });
    upstream.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'ECONNREFUSED' || error.code === 'ECONNRESET') this.#down.set(index, Date.now() + this.#downForMs);
      if (!res.headersSent && bodyless && error.code === 'ECONNREFUSED' && attempt + 1 < this.#backends.length) {
        this.#forward(req, res, attempt + 1);
      } else if (!res.headersSent) {
        res.writeHead(502, { 'content-type': 'text/plain' }).end(`backend ${backend.host}:${backend.port}: ${error.message}\n`);
      } else {
        res.destroy(error);
      }
    });
    res.on('close', () => { if (!res.writableFinished) upstream.destroy(); });
    if (bodyless) upstream.end();
    else req.pipe(upstream);
  }

  async close(): Promise<void> {
    this.#agent.destroy();
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
