import { BlockList, createServer, connect, isIP, type Server, type Socket } from 'node:net';

/**
 * A fault-injecting TCP proxy on loopback, for tests, benchmarks and `outpost demo`.
 *
 * It stands between a child site and its parent (or any client and server) and simulates the
 * WAN between them: delay, limited bandwidth, a refusing or silently cut link, corrupted bytes.
 * Project rule: WAN conditions are simulated with this proxy on loopback, never by sending
 * traffic anywhere else — so it listens on 127.0.0.1 only and refuses any target that is not
 * a loopback address literal (127.0.0.0/8, ::1).
 *
 * ```ts
 * const wan = await FaultProxy.start({ target: { host: '127.0.0.1', port: centralPort } });
 * // start the edge with --parent wan.url
 * wan.latency(40, 5).bandwidth(10e6); // a 40±5 ms, 10 MB/s link
 * wan.blackhole();                    // a silent cut: everything hangs
 * wan.heal();                         // back to plain forwarding; hung connections are reset
 * await wan.close();
 * ```
 *
 * It is a byte-level proxy: it knows nothing of HTTP. "Request direction" below means client →
 * target (`toTarget`), "response direction" target → client (`toClient`).
 *
 * Conditions are switched at runtime, without restarting anything, and apply to connections
 * already open as well as to new ones:
 *
 * - Shaping — `latency()` and `bandwidth()` — are two independent knobs that combine with each
 *   other and with a fault (a 50 ms link can also corrupt bytes). A byte first waits for its
 *   turn on the bandwidth limiter, then travels for the latency.
 * - Faults — `refuse()`, `blackhole()`, `corrupt()` — at most one at a time; setting one
 *   replaces the previous one. Shaping knobs do not end a fault.
 * - `pass()` and `heal()` drop both shaping and fault. They differ only for connections a
 *   blackhole stalled mid-exchange: `pass()` lets them carry on where they stopped (a short
 *   outage TCP survives), `heal()` resets them so their clients fail at once and reconnect (an
 *   outage long enough for TCP to give up) instead of each waiting for its own timeout.
 * - `cut()` is a one-shot event: it resets the connections open now and changes no mode.
 *
 * Cuts (`cut()`, `refuse()`, `heal()` of stalled connections, a failed connection to the target)
 * reset both sides with a TCP RST, so the client sees ECONNRESET, not a clean end of stream
 * that could pass for a complete response. (A side the proxy has already ended — its peer saw
 * the end of stream — is just closed.)
 *
 * Memory is bounded: each direction of each connection buffers at most `maxBufferedBytes`
 * before it stops reading its source (TCP back-pressure then reaches the sender). Like a TCP
 * window, that also caps one connection's throughput under latency to about
 * `maxBufferedBytes / latency`.
 *
 * All state lives in the instance (no module-level mutable state); `close()` stops listening,
 * resets every connection and clears every timer. A `signal` given to `start()` closes the
 * proxy when it aborts.
 */
export class FaultProxy {
  readonly #server: Server;
  readonly #shared: SharedState;
  readonly #connections = new Set<ProxiedConnection>();
  readonly #signal: AbortSignal | undefined;
  readonly #onAbort = (): void => { void this.close(); };
  #closing: Promise<void> | undefined;

  /** `http://127.0.0.1:PORT` — where clients should send their requests instead of the target. */
  readonly url: string;
  /** The port the proxy listens on, on 127.0.0.1. */
  readonly port: number;
  /** Where traffic goes (a loopback address). */
  readonly target: Readonly<FaultProxyTarget>;

  /**
   * Listens on 127.0.0.1:`listenPort` (0, the default, picks a free port) and forwards every
   * connection to `target`, in `pass` mode. Rejects a target that is not a loopback address
   * literal before opening anything.
   */
  static async start(options: FaultProxyOptions): Promise<FaultProxy> {
    const target = checkTarget(options.target);
    const listenPort = options.listenPort ?? 0;
    if (!Number.isInteger(listenPort) || listenPort < 0 || listenPort > 65535) {
      throw new RangeError(`FaultProxy: listenPort must be an integer 0..65535, got ${listenPort}`);
    }
    const maxBufferedBytes = options.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES;
    if (!Number.isInteger(maxBufferedBytes) || maxBufferedBytes < 1) {
      throw new RangeError(`FaultProxy: maxBufferedBytes must be a positive integer, got ${maxBufferedBytes}`);
    }
    options.signal?.throwIfAborted();
    const server = createServer({ allowHalfOpen: true, noDelay: true });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: LISTEN_HOST, port: listenPort }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const proxy = new FaultProxy(server, target, maxBufferedBytes, options.random ?? Math.random, options.signal);
    if (options.signal?.aborted === true) {
      await proxy.close();
      throw options.signal.reason;
    }
    return proxy;
  }

  private constructor(
    server: Server, target: FaultProxyTarget, maxBufferedBytes: number, random: () => number, signal: AbortSignal | undefined,
  ) {
    this.#server = server;
    this.target = Object.freeze({ ...target });
    this.#shared = new SharedState(target, maxBufferedBytes, random);
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('FaultProxy: server has no TCP address');
    this.port = address.port;
    this.url = `http://${LISTEN_HOST}:${this.port}`;
    server.on('connection', (socket) => this.#accept(socket));
    // Errors after listen (e.g. EMFILE on accept) must not crash the process running the tests.
    server.on('error', () => undefined);
    this.#signal = signal;
    signal?.addEventListener('abort', this.#onAbort, { once: true });
  }

  /** The conditions in force now. */
  get mode(): FaultProxyMode {
    const c = this.#shared.conditions;
    const f = c.fault;
    return {
      latencyMs: c.latencyMs,
      jitterMs: c.jitterMs,
      bytesPerSecond: Number.isFinite(c.bytesPerSecond) ? c.bytesPerSecond : null,
      fault: f.kind,
      corrupt: f.kind === 'corrupt' ? { afterBytes: f.afterBytes, everyNth: f.everyNth, limit: f.limit } : null,
    };
  }

  /**
   * Plain forwarding: no latency, no bandwidth limit, no fault. Connections held by a blackhole
   * resume where they stopped; what they had sent meanwhile is delivered.
   */
  pass(): this {
    for (const conn of this.#connections) conn.held = false;
    this.#set({ latencyMs: 0, jitterMs: 0, bytesPerSecond: Infinity, fault: NO_FAULT });
    return this;
  }

  /**
   * Delays every chunk of data, in each direction, by `ms` ± `jitterMs` (uniform, never below
   * zero), keeping byte order: a chunk never overtakes an earlier one of the same direction, so
   * jitter stretches gaps but never reorders. `latency(0)` removes the delay. The delay is
   * one-way: a request/response round trip takes at least 2 × `ms`. Applies to data read from
   * now on; chunks already in flight keep the delay they were given.
   */
  latency(ms: number, jitterMs = 0): this {
    if (!(Number.isFinite(ms) && ms >= 0)) throw new RangeError(`FaultProxy.latency: ms must be a finite number >= 0, got ${ms}`);
    if (!(Number.isFinite(jitterMs) && jitterMs >= 0)) {
      throw new RangeError(`FaultProxy.latency: jitterMs must be a finite number >= 0, got ${jitterMs}`);
    }
    this.#set({ ...this.#shared.conditions, latencyMs: ms, jitterMs });
    return this;
  }

  /**
   * Limits throughput to `bytesPerSecond` in each direction. The limit is a token bucket per
   * direction SHARED BY ALL CONNECTIONS of this proxy, like one WAN link: two concurrent
   * downloads each get about half. Bursts are small (about 20 ms worth of bytes), so throughput
   * measured over a few hundred milliseconds is close to the limit. `bandwidth(Infinity)`
   * removes the limit.
   */
  bandwidth(bytesPerSecond: number): this {
    if (!(bytesPerSecond > 0)) {
      throw new RangeError(`FaultProxy.bandwidth: bytesPerSecond must be > 0 (Infinity: unlimited), got ${bytesPerSecond}`);
    }
    this.#shared.setRate(bytesPerSecond);
    for (const conn of this.#connections) conn.resetPacing();
    this.#set({ ...this.#shared.conditions, bytesPerSecond });
    return this;
  }

  /**
   * Connection refused, as near as a listening socket can get: new connections are accepted and
   * immediately reset (the client sees ECONNRESET), and connections open now are reset. The
   * target sees nothing of new connections.
   */
  refuse(): this {
    this.#set({ ...this.#shared.conditions, fault: { kind: 'refuse' } });
    this.#resetAll();
    return this;
  }

  /**
   * A silent WAN cut. Connections open now and new ones (the TCP handshake with the proxy still
   * succeeds) stay open, but nothing is forwarded in either direction, so clients hang until
   * their own timeouts. What clients send is held (up to `maxBufferedBytes`, then back-pressure),
   * not dropped; connections born during the blackhole are not opened to the target until it
   * ends. End it with `heal()` (stalled connections are reset) or `pass()` (they resume).
   */
  blackhole(): this {
    for (const conn of this.#connections) conn.held = true;
    this.#set({ ...this.#shared.conditions, fault: { kind: 'blackhole' } });
    return this;
  }

  /**
   * Flips the lowest bit of bytes in the response direction (target → client), to test
   * verification of image bytes. Counted per connection from the later of its opening and this
   * call: the first `afterBytes` bytes pass intact, then the byte at offset `afterBytes` and
   * every `everyNth` byte after it (default 1: every byte) is flipped, at most `limit` bytes per
   * connection (default unlimited; `limit: 1` gives a single-bit error). Lengths never change,
   * so framing by Content-Length survives, but a flip inside HTTP headers or chunk-size lines
   * (a later response on the same keep-alive connection) breaks parsing instead: pick
   * `afterBytes` past the response headers and use fresh connections when that matters.
   */
  corrupt(options: CorruptOptions): this {
    const { afterBytes, everyNth = 1, limit = Infinity } = options;
    if (!(Number.isInteger(afterBytes) && afterBytes >= 0)) {
      throw new RangeError(`FaultProxy.corrupt: afterBytes must be an integer >= 0, got ${afterBytes}`);
    }
    if (!(Number.isInteger(everyNth) && everyNth >= 1)) {
      throw new RangeError(`FaultProxy.corrupt: everyNth must be an integer >= 1, got ${everyNth}`);
    }
    if (!(limit === Infinity || (Number.isInteger(limit) && limit >= 0))) {
      throw new RangeError(`FaultProxy.corrupt: limit must be an integer >= 0 or Infinity, got ${limit}`);
    }
    for (const conn of this.#connections) conn.held = false;
    const generation = this.#shared.nextCorruptGeneration();
    this.#set({ ...this.#shared.conditions, fault: { kind: 'corrupt', afterBytes, everyNth, limit, generation } });
    return this;
  }

  /** Resets every connection open now (both sides, with RST), once. The mode does not change. */
  cut(): this {
    this.#resetAll();
    return this;
  }

  /**
   * Back to `pass` (no shaping, no fault). Connections a blackhole stalled — with bytes or an
   * end of stream stuck in either direction, i.e. a client waiting on them — are reset so their
   * clients fail now and reconnect through the healed link. Connections the blackhole held while
   * idle (e.g. pooled keep-alive connections) carry on, as they would after a real outage; a
   * pooled connection that was reset is only noticed by its client on its next turn of the
   * event loop, so a request sent in the same tick as `heal()` may still fail with ECONNRESET.
   */
  heal(): this {
    for (const conn of [...this.#connections]) {
      if (conn.held && conn.stalled) {
        this.#shared.stats.connections.cut++;
        conn.destroy();
      }
    }
    return this.pass();
  }

  /** Counters since start (or the last `resetStats()`). */
  stats(): FaultProxyStats {
    const s = this.#shared.stats;
    return {
      connections: { ...s.connections, active: this.#connections.size },
      toTarget: { ...s.toTarget },
      toClient: { ...s.toClient },
    };
  }

  /** Zeroes the counters (not `connections.active`, which is always the current count). */
  resetStats(): void {
    this.#shared.stats = emptyStats();
  }

  /** Stops listening, resets every connection and clears every timer. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#signal?.removeEventListener('abort', this.#onAbort);
      this.#shared.closed = true;
      const closed = new Promise<void>((resolve) => { this.#server.close(() => resolve()); });
      for (const conn of [...this.#connections]) conn.destroy();
      await closed;
    })();
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #set(conditions: Conditions): void {
    this.#shared.conditions = conditions;
    for (const conn of [...this.#connections]) conn.kick();
  }

  #resetAll(): void {
    for (const conn of [...this.#connections]) {
      this.#shared.stats.connections.cut++;
      conn.destroy();
    }
  }

  #accept(socket: Socket): void {
    socket.on('error', () => undefined);
    const shared = this.#shared;
    if (shared.closed) {
      resetSocket(socket);
      return;
    }
    shared.stats.connections.accepted++;
    if (shared.conditions.fault.kind === 'refuse') {
      shared.stats.connections.refused++;
      resetSocket(socket);
      return;
    }
    const conn = new ProxiedConnection(socket, shared, () => this.#connections.delete(conn));
    this.#connections.add(conn);
    if (shared.conditions.fault.kind === 'blackhole') conn.held = true;
    else conn.kick();
  }
}

export interface FaultProxyTarget {
  /** A loopback address literal: 127.0.0.0/8 or ::1 (host names, even `localhost`, are refused). */
  host: string;
  port: number;
}

export interface FaultProxyOptions {
  target: FaultProxyTarget;
  /** Port to listen on, on 127.0.0.1; 0 (default) picks a free one. */
  listenPort?: number;
  /** Closes the proxy when aborted (and makes `start()` reject if already aborted). */
  signal?: AbortSignal;
  /** Per direction per connection, before reading from the source pauses. Default 4 MiB. */
  maxBufferedBytes?: number;
  /** Source of latency jitter, in [0, 1). Default Math.random; pass a seeded one to replay. */
  random?: () => number;
}

export interface CorruptOptions {
  /** Bytes of the response direction, per connection, left intact before the first flip. */
  afterBytes: number;
  /** Flip every Nth byte from `afterBytes` on. Default 1 (every byte). */
  everyNth?: number;
  /** At most this many flipped bytes per connection. Default Infinity. */
  limit?: number;
}

export type FaultKind = 'none' | 'refuse' | 'blackhole' | 'corrupt';

export interface FaultProxyMode {
  readonly latencyMs: number;
  readonly jitterMs: number;
  /** null: unlimited. */
  readonly bytesPerSecond: number | null;
  readonly fault: FaultKind;
  readonly corrupt: Readonly<Required<CorruptOptions>> | null;
}

export interface FaultProxyDirectionStats {
  /** Bytes read from the source side. */
  received: number;
  /** Bytes written to the destination side. */
  forwarded: number;
  /** Bytes read but never forwarded because their connection was reset or closed. */
  dropped: number;
  /** Bytes flipped by `corrupt()` (response direction only). */
  corrupted: number;
}

export interface FaultProxyStats {
  connections: {
    /** Connections the proxy accepted, including refused ones. */
    accepted: number;
    /** Open now. */
    active: number;
    /** Reset at accept because of `refuse()`. */
    refused: number;
    /** Reset by `cut()`, `refuse()` or `heal()`. */
    cut: number;
    /** Reset because connecting to the target failed (target down). */
    failed: number;
  };
  /** Client → target (requests). */
  toTarget: FaultProxyDirectionStats;
  /** Target → client (responses). */
  toClient: FaultProxyDirectionStats;
}

// ---------------------------------------------------------------------------------------------

const LISTEN_HOST = '127.0.0.1';
const DEFAULT_MAX_BUFFERED_BYTES = 4 * 1024 * 1024;

type Direction = 'toTarget' | 'toClient';

type Fault =
  | { readonly kind: 'none' }
  | { readonly kind: 'refuse' }
  | { readonly kind: 'blackhole' }
  | {
    readonly kind: 'corrupt'; readonly afterBytes: number; readonly everyNth: number; readonly limit: number;
    /** Distinguishes successive corrupt() calls, so each restarts the per-connection count. */
    readonly generation: number;
  };

const NO_FAULT: Fault = { kind: 'none' };

interface Conditions {
  readonly latencyMs: number;
  readonly jitterMs: number;
  /** Infinity: unlimited. */
  readonly bytesPerSecond: number;
  readonly fault: Fault;
}

function checkTarget(target: FaultProxyTarget | undefined): FaultProxyTarget {
  if (target === undefined || target === null) throw new TypeError('FaultProxy: target { host, port } is required');
  const { host, port } = target;
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new RangeError(`FaultProxy: target port must be an integer 1..65535, got ${port}`);
  }
  const family = isIP(host);
  const loopback = new BlockList();
  loopback.addSubnet('127.0.0.0', 8, 'ipv4');
  loopback.addAddress('::1', 'ipv6');
  loopback.addSubnet('::ffff:127.0.0.0', 104, 'ipv6');
  if (family === 0 || !loopback.check(host, family === 4 ? 'ipv4' : 'ipv6')) {
    throw new RangeError(
      `FaultProxy: target host must be a loopback address literal (e.g. 127.0.0.1), got ${JSON.stringify(host)}; `
      + 'WAN faults are simulated on loopback only',
    );
  }
  return { host, port };
}

function emptyDirection(): FaultProxyDirectionStats {
  return { received: 0, forwarded: 0, dropped: 0, corrupted: 0 };
}

function emptyStats(): Omit<FaultProxyStats, 'connections'> & { connections: Omit<FaultProxyStats['connections'], 'active'> } {
  return {
    connections: { accepted: 0, refused: 0, cut: 0, failed: 0 },
    toTarget: emptyDirection(),
    toClient: emptyDirection(),
  };
}

/**
 * Resets a socket with RST (ECONNRESET on the other end) when it can, else destroys it.
 * Not after `end()`: libuv refuses to reset a stream with a shutdown under way (UV_EINVAL), and
 * Node's `resetAndDestroy()` then leaks the handle, which keeps the process alive. Its peer has
 * seen the end of stream already anyway.
 */
function resetSocket(socket: Socket | undefined): void {
  if (socket === undefined || socket.destroyed) return;
  if (socket.connecting || socket.writableEnded) {
    socket.destroy();
    return;
  }
  try {
    socket.resetAndDestroy();
  } catch {
    socket.destroy();
  }
}

/**
 * A token bucket that lets callers go into debt: `reserve(n)` always takes `n` tokens and
 * answers how long to wait until they are paid for. Callers reserve one slice at a time and
 * wait before reserving the next, so concurrent connections interleave fairly.
 */
class TokenBucket {
  #rate = Infinity;
  #burst = 0;
  #tokens = 0;
  #at = 0;
  /** Largest slice to reserve at once: about 20 ms worth of bytes. */
  quantum = 64 * 1024;

  setRate(bytesPerSecond: number, now: number): void {
    this.#rate = bytesPerSecond;
    if (!Number.isFinite(bytesPerSecond)) return;
    this.quantum = Math.max(1, Math.min(64 * 1024, Math.floor(bytesPerSecond / 50)));
    this.#burst = this.quantum;
    this.#tokens = this.#burst;
    this.#at = now;
  }

  /** Takes `n` tokens; returns the milliseconds until they are paid for (0: now). */
  reserve(n: number, now: number): number {
    const elapsed = Math.max(0, now - this.#at);
    this.#at = Math.max(this.#at, now);
    this.#tokens = Math.min(this.#burst, this.#tokens + (elapsed * this.#rate) / 1000) - n;
    return this.#tokens >= 0 ? 0 : (-this.#tokens / this.#rate) * 1000;
  }
}

/** What the connections of one proxy share: conditions, limiters, counters. */
class SharedState {
  conditions: Conditions = { latencyMs: 0, jitterMs: 0, bytesPerSecond: Infinity, fault: NO_FAULT };
  stats = emptyStats();
  closed = false;
  readonly buckets: Record<Direction, TokenBucket> = { toTarget: new TokenBucket(), toClient: new TokenBucket() };
  readonly target: FaultProxyTarget;
  readonly maxBufferedBytes: number;
  readonly random: () => number;
  #corruptGeneration = 0;

  constructor(target: FaultProxyTarget, maxBufferedBytes: number, random: () => number) {
    this.target = target;
    this.maxBufferedBytes = maxBufferedBytes;
    this.random = random;
  }

  setRate(bytesPerSecond: number): void {
    const now = performance.now();
    this.buckets.toTarget.setRate(bytesPerSecond, now);
    this.buckets.toClient.setRate(bytesPerSecond, now);
  }

  nextCorruptGeneration(): number {
    return ++this.#corruptGeneration;
  }
}

/** One client connection and, once forwarding is allowed, its connection to the target. */
class ProxiedConnection {
  readonly client: Socket;
  upstream: Socket | undefined;
  upstreamConnected = false;
  /** Open while a blackhole was on (so heal() resets it if it is stalled). */
  held = false;
  closed = false;
  readonly #shared: SharedState;
  readonly #onGone: () => void;
  readonly #toTarget: Pipe;
  readonly #toClient: Pipe;
  #clientClosed = false;
  #upstreamClosed = false;

  constructor(client: Socket, shared: SharedState, onGone: () => void) {
    this.client = client;
    this.#shared = shared;
    this.#onGone = onGone;
    this.#toTarget = new Pipe('toTarget', this, shared);
    this.#toClient = new Pipe('toClient', this, shared);
    client.setNoDelay(true);
    client.on('data', (chunk: Buffer) => this.#toTarget.onData(chunk));
    client.on('end', () => this.#toTarget.onEnd());
    client.on('close', (hadError) => {
      this.#clientClosed = true;
      this.#sideClosed(hadError);
    });
  }

  source(direction: Direction): Socket | undefined {
    return direction === 'toTarget' ? this.client : this.upstream;
  }

  /** Where a direction writes, or undefined while that side is not connected yet. */
  destination(direction: Direction): Socket | undefined {
    if (direction === 'toClient') return this.client;
    return this.upstreamConnected ? this.upstream : undefined;
  }

  /** Re-evaluates the conditions: connects to the target if allowed, moves data along. */
  kick(): void {
    if (this.closed) return;
    const kind = this.#shared.conditions.fault.kind;
    if (kind === 'blackhole' || kind === 'refuse') return;
    this.#connectUpstream();
    this.#toTarget.pump();
    this.#toClient.pump();
  }

  /** Something is stuck in it: a client (or the target) is waiting on it. */
  get stalled(): boolean {
    return this.#toTarget.stalled || this.#toClient.stalled;
  }

  resetPacing(): void {
    this.#toTarget.resetPacing();
    this.#toClient.resetPacing();
  }

  /** Resets both sides with RST and drops what is queued. */
  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    this.#toTarget.dispose();
    this.#toClient.dispose();
    resetSocket(this.client);
    resetSocket(this.upstream);
    this.#onGone();
  }

  #connectUpstream(): void {
    if (this.upstream !== undefined || this.closed) return;
    const { host, port } = this.#shared.target;
    const upstream = connect({ host, port, allowHalfOpen: true, noDelay: true });
    this.upstream = upstream;
    upstream.on('error', () => undefined);
    upstream.once('connect', () => {
      this.upstreamConnected = true;
      this.kick();
    });
    upstream.on('data', (chunk: Buffer) => this.#toClient.onData(chunk));
    upstream.on('end', () => this.#toClient.onEnd());
    upstream.on('close', (hadError) => {
      if (!this.upstreamConnected && !this.closed) this.#shared.stats.connections.failed++;
      this.#upstreamClosed = true;
      this.#sideClosed(hadError || !this.upstreamConnected);
    });
  }

  /**
   * A side closed. After an error (or a failed connect) the other side is reset at once; after
   * an orderly close the other side finishes on its own (its pipe forwards the end of stream).
   */
  #sideClosed(abrupt: boolean): void {
    if (this.closed) return;
    if (abrupt) {
      this.destroy();
      return;
    }
    if (this.#clientClosed && (this.upstream === undefined || this.#upstreamClosed)) {
      this.closed = true;
      this.#toTarget.dispose();
      this.#toClient.dispose();
      this.#onGone();
    }
  }
}

/**
 * One direction of one connection: source socket → [bandwidth limiter] → [latency] → destination.
 * Stage one (`#pending`) waits for the limiter; stage two (`#flight`) holds chunks until their
 * due time. Both together are bounded by `maxBufferedBytes`, beyond which the source is paused.
 */
class Pipe {
  readonly #direction: Direction;
  readonly #conn: ProxiedConnection;
  readonly #shared: SharedState;
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  #flight: { buf: Buffer; due: number }[] = [];
  #flightBytes = 0;
  /** Due time of the last chunk put in flight: later chunks are never due earlier (order). */
  #lastDue = 0;
  /** When the slice reserved last is paid for; no new reservation before that. */
  #txUntil = 0;
  #sourceEnded = false;
  #endSent = false;
  #sourcePaused = false;
  #waitingDrain = false;
  #timer: NodeJS.Timeout | undefined;
  #timerAt = Infinity;
  /** Response-direction bytes received so far, and the corruption window over them. */
  #received = 0;
  #corruptGeneration = -1;
  #corruptBase = 0;
  #flipped = 0;

  constructor(direction: Direction, conn: ProxiedConnection, shared: SharedState) {
    this.#direction = direction;
    this.#conn = conn;
    this.#shared = shared;
  }

  onData(chunk: Buffer): void {
    if (this.#conn.closed) return;
    this.#shared.stats[this.#direction].received += chunk.length;
    const fault = this.#shared.conditions.fault;
    if (this.#direction === 'toClient' && fault.kind === 'corrupt') chunk = this.#corrupt(chunk, fault);
    this.#received += chunk.length;
    this.#pending.push(chunk);
    this.#pendingBytes += chunk.length;
    if (!this.#sourcePaused && this.#pendingBytes + this.#flightBytes >= this.#shared.maxBufferedBytes) {
      this.#sourcePaused = true;
      this.#conn.source(this.#direction)?.pause();
    }
    this.pump();
  }

  onEnd(): void {
    this.#sourceEnded = true;
    this.pump();
  }

  resetPacing(): void {
    this.#txUntil = 0;
  }

  /** Bytes or an end of stream are waiting to be forwarded. */
  get stalled(): boolean {
    return this.#pending.length > 0 || this.#flight.length > 0 || (this.#sourceEnded && !this.#endSent);
  }

  /** Moves data along as far as the conditions allow now, and sets a timer for the rest. */
  pump(): void {
    if (this.#conn.closed) return;
    const c = this.#shared.conditions;
    if (c.fault.kind === 'blackhole' || c.fault.kind === 'refuse') {
      this.#schedule(Infinity, 0);
      return;
    }
    const dst = this.#conn.destination(this.#direction);
    if (dst === undefined) return; // kicked again once connected
    const now = performance.now();

    // Stage one → two: through the bandwidth limiter, then given a due time.
    const limited = Number.isFinite(c.bytesPerSecond);
    const bucket = this.#shared.buckets[this.#direction];
    while (this.#pending.length > 0) {
      let sendAt = now;
      let buf: Buffer;
      if (limited) {
        if (now < this.#txUntil) break;
        const head = this.#pending[0];
        if (head.length > bucket.quantum) {
          buf = head.subarray(0, bucket.quantum);
          this.#pending[0] = head.subarray(bucket.quantum);
        } else {
          buf = head;
          this.#pending.shift();
        }
        sendAt = this.#txUntil = now + bucket.reserve(buf.length, now);
      } else {
        buf = this.#pending.shift()!;
      }
      this.#pendingBytes -= buf.length;
      let delay = c.latencyMs;
      if (c.jitterMs > 0) delay += (this.#shared.random() * 2 - 1) * c.jitterMs;
      const due = Math.max(sendAt + Math.max(0, delay), this.#lastDue);
      this.#lastDue = due;
      this.#flight.push({ buf, due });
      this.#flightBytes += buf.length;
    }

    // Stage two → destination: what is due, while the destination accepts.
    while (!this.#waitingDrain && this.#flight.length > 0 && this.#flight[0].due <= now) {
      const { buf } = this.#flight.shift()!;
      this.#flightBytes -= buf.length;
      this.#shared.stats[this.#direction].forwarded += buf.length;
      if (!dst.write(buf)) {
        this.#waitingDrain = true;
        dst.once('drain', () => {
          this.#waitingDrain = false;
          this.pump();
        });
      }
    }

    if (this.#sourcePaused && this.#pendingBytes + this.#flightBytes < this.#shared.maxBufferedBytes / 2) {
      this.#sourcePaused = false;
      this.#conn.source(this.#direction)?.resume();
    }

    if (this.#sourceEnded && !this.#endSent && this.#pending.length === 0 && this.#flight.length === 0) {
      this.#endSent = true;
      dst.end();
    }

    let next = Infinity;
    if (limited && this.#pending.length > 0) next = this.#txUntil;
    if (!this.#waitingDrain && this.#flight.length > 0) next = Math.min(next, this.#flight[0].due);
    this.#schedule(next, now);
  }

  /** Drops what is queued (counted as dropped) and clears the timer. */
  dispose(): void {
    this.#schedule(Infinity, 0);
    this.#shared.stats[this.#direction].dropped += this.#pendingBytes + this.#flightBytes;
    this.#pending = [];
    this.#flight = [];
    this.#pendingBytes = 0;
    this.#flightBytes = 0;
  }

  #schedule(at: number, now: number): void {
    if (at === this.#timerAt) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = at;
    if (at === Infinity) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#timerAt = Infinity;
      this.pump();
    }, Math.max(0, Math.ceil(at - now)));
  }

  #corrupt(chunk: Buffer, fault: Extract<Fault, { kind: 'corrupt' }>): Buffer {
    if (this.#corruptGeneration !== fault.generation) {
      this.#corruptGeneration = fault.generation;
      this.#corruptBase = this.#received;
      this.#flipped = 0;
    }
    const { afterBytes, everyNth, limit } = fault;
    if (this.#flipped >= limit) return chunk;
    // Offsets within the corruption window: this chunk covers [from, from + length).
    const from = this.#received - this.#corruptBase;
    let offset = Math.max(afterBytes, from);
    const misalign = (offset - afterBytes) % everyNth;
    if (misalign !== 0) offset += everyNth - misalign;
    if (offset >= from + chunk.length) return chunk;
    const out = Buffer.from(chunk);
    for (; offset < from + chunk.length && this.#flipped < limit; offset += everyNth) {
      out[offset - from] ^= 0x01;
      this.#flipped++;
      this.#shared.stats.toClient.corrupted++;
    }
    return out;
  }
}
