import type { Agent, fetch as UndiciFetch, RequestInit as UndiciRequestInit } from 'undici';
import { ParentReachability } from './parent-reachability.ts';

/**
 * Whom https connections to other sites trust, and their connection pool: one undici Agent per
 * site, shared by every ParentClient using it. `ca` (PEM, one or more certificates) replaces the
 * system's trust store for these connections; without it the system's store is used.
 * Verification is never switched off. undici is loaded at the first request, so a site that never
 * calls another (a central no edge uploads to) does not pay for loading it.
 */
export class TrustedConnections {
  readonly #ca: string | Buffer | undefined;
  #pool: Promise<{ fetch: typeof UndiciFetch; agent: Agent }> | undefined;

  constructor(ca?: string | Buffer | null) {
    this.#ca = ca ?? undefined;
  }

  /** undici's fetch and the Agent to pass it as `dispatcher`. */
  pool(): Promise<{ fetch: typeof UndiciFetch; agent: Agent }> {
    this.#pool ??= import('undici').then((u) => ({
      fetch: u.fetch, agent: this.#ca === undefined ? new u.Agent() : new u.Agent({ connect: { ca: this.#ca } }),
    }));
    return this.#pool;
  }

  /** Closes the pool's connections (requests still running fail). */
  async close(): Promise<void> {
    if (this.#pool !== undefined) await (await this.#pool).agent.destroy();
  }
}

export interface ParentClientOptions {
  /** The other site's base URL (http:// or https://). */
  url: string;
  /** Headers every request carries unless told otherwise (the site's credential). */
  headers?: Readonly<Record<string, string>>;
  /** Default bound on a request, ms: its answer, body included, must have arrived by then. */
  timeoutMs: number;
  /** The connection pool with its TLS trust; default a pool of its own trusting the system's trust store. */
  connections?: TrustedConnections;
  /** The configuration key that sets the trust, named when a certificate cannot be verified (e.g. "parent_ca"). */
  trustKey?: string;
  /** Keep track of whether the other site can be reached (an edge's parent): see `reachability`. */
  reachability?: { log: { info(obj: object, msg: string): void }; probeIntervalMs?: number };
}

export interface LinkFetchOptions {
  /** The caller's own signal (client gone, service stopping): its abort error is passed on as it is. */
  signal?: AbortSignal;
  /** This request's bound instead of the default, ms; null: none (the caller bounds it itself). */
  timeoutMs?: number | null;
  /** Whether the site's credential headers are sent (default true); a forwarded request carries its client's own. */
  credential?: boolean;
}

/**
 * Statuses a gateway (a load balancer or reverse proxy in front of the other site's nodes) answers
 * when it cannot reach any of them (HAProxy and nginx: 502 no connection, 503 no server up, 504
 * no answer in time).
 */
const GATEWAY_STATUSES = new Set([502, 503, 504]);
/**
 * The header every answer of an Outpost site carries, as Glance's do (create-app.ts sets it on
 * every response): one of the statuses above without it is the gateway's, not the site's.
 */
const SITE_ANSWER_HEADER = 'x-openstack-request-id';
/** How much of a gateway's error page the error message quotes, characters. */
const GATEWAY_SAID = 200;

/** Error codes of Node's TLS layer that mean the peer's certificate was not accepted. */
const CERT_PROBLEM = /CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)|ERR_TLS|ERR_SSL|ALTNAME/;

/**
 * The one client for a link to another site (DESIGN.md §4 "src/links/"): an edge's parent, or a
 * site central reads image copies from. It holds the base URL, the credential headers, the
 * default timeout and the TLS trust, and composes the caller's signal with the timeout.
 *
 * A request that fails without an answer rejects with an Error whose message says why, fit for a
 * log line or a 503 (`no answer within N ms`, the connection error, or which certificate could not
 * be verified and the key that sets the trust) and whose `cause` is the underlying error; an abort
 * by the caller's own signal rejects with that abort as it is. A gateway's answer that it could
 * not reach the site behind it (a 502, 503 or 504 without the site's request id: a region's nodes
 * behind a load balancer, all of them down) is no answer from the site either: it rejects the same
 * way, quoting the gateway. There is no fallback: an https URL is only ever reached over verified
 * TLS.
 */
export class ParentClient {
  /** The base URL, without a trailing slash. */
  readonly url: string;
  /**
   * With the `reachability` option: whether the other site is known to be away. Every request
   * through this client tells it (an answer of any status: reachable; no answer, none in time, or a
   * gateway's in its stead: away, and probed until it answers); a request aborted by its caller
   * tells it nothing.
   */
  readonly reachability: ParentReachability | undefined;
  readonly #o: ParentClientOptions;
  readonly #connections: TrustedConnections;

  constructor(opts: ParentClientOptions) {
    this.#o = opts;
    this.url = opts.url.replace(/\/+$/, '');
    this.#connections = opts.connections ?? new TrustedConnections();
    this.reachability = opts.reachability === undefined ? undefined : new ParentReachability({
      name: this.url, log: opts.reachability.log, probeIntervalMs: opts.reachability.probeIntervalMs,
      probe: async (signal) => {
        const res = await this.fetch('/outpost/v1/status', {}, { signal, credential: false });
        await res.body?.cancel();
      },
    });
  }

  /** Stops the reachability probes (the connection pool is TrustedConnections'). */
  close(): void {
    this.reachability?.close();
  }

  /** `path` (starting with '/', with its query) under the base URL. */
  async fetch(path: string, init: RequestInit = {}, opts: LinkFetchOptions = {}): Promise<Response> {
    const timeoutMs = opts.timeoutMs === undefined ? this.#o.timeoutMs : opts.timeoutMs;
    const timeout = timeoutMs === null ? undefined : AbortSignal.timeout(timeoutMs);
    const own = [init.signal ?? undefined, opts.signal].filter((s): s is AbortSignal => s !== undefined);
    const signals = timeout === undefined ? own : [...own, timeout];
    const headers = new Headers(init.headers);
    if (opts.credential !== false) for (const [name, value] of Object.entries(this.#o.headers ?? {})) headers.set(name, value);
    const { fetch, agent } = await this.#connections.pool();
    let res: Response;
    try {
      res = await fetch(`${this.url}${path}`, {
        ...init,
        headers,
        signal: signals.length === 0 ? undefined : signals.length === 1 ? signals[0] : AbortSignal.any(signals),
        dispatcher: agent,
      } as unknown as UndiciRequestInit) as unknown as Response;
    } catch (error) {
      if (own.some((s) => s.aborted)) throw error;
      const failure = timeout?.aborted === true
        ? new Error(`no answer within ${timeoutMs} ms`, { cause: error })
        : new Error(this.#describe(((error as Error).cause ?? error) as NodeJS.ErrnoException), { cause: (error as Error).cause ?? error });
      this.reachability?.failed(failure.message);
      throw failure;
    }
    if (GATEWAY_STATUSES.has(res.status) && !res.headers.has(SITE_ANSWER_HEADER)) {
      const page = await said(res);
      const failure = new Error(`a gateway answered for it with HTTP ${res.status}${page === '' ? '' : ` (${page})`}: none of its nodes answers`);
      this.reachability?.failed(failure.message);
      throw failure;
    }
    this.reachability?.answered();
    return res;
  }

  #describe(cause: NodeJS.ErrnoException): string {
    const message = cause.message ?? String(cause);
    if (typeof cause.code !== 'string' || !CERT_PROBLEM.test(cause.code)) return message;
    const trust = this.#o.trustKey === undefined ? 'the system trust store' : `${this.#o.trustKey} (or the system trust store without it)`;
    return `the TLS certificate of ${this.url} was not accepted: ${message} (${cause.code}); the CA that signed it must be in ${trust}`;
  }
}

/** The start of an error page, on one line, for a message; the rest is not read. */
async function said(res: Response): Promise<string> {
  let text = '';
  try {
    const reader = res.body?.getReader();
    const decoder = new TextDecoder();
    while (reader !== undefined && text.length < GATEWAY_SAID) {
      const { done, value } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
    await reader?.cancel();
  } catch {
    // What the page said is only for the message.
  }
  return text.replace(/<[^>]*>/g, ' ').replace(/\s+/g, ' ').trim().slice(0, GATEWAY_SAID);
}
