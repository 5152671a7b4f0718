import { setTimeout as sleep } from 'node:timers/promises';
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { BlockList, isIP, type LookupFunction } from 'node:net';
import type { ImportFilterConfig } from '../core/config.ts';
import { BadRequestError } from '../core/errors.ts';
import type { IoOptions, RemoteOpenOptions, RemoteSource } from '../core/ports.ts';

/** The connection or the body broke off (refused, reset, stalled): what was received is good, the rest may be asked again. */
class BrokenOff extends Error {}

/**
 * Import filtering (Glance's `[import_filtering_opts]`, hardened after the SSRF fix of bug
 * 2138602; the settings and their defaults are the `import_filter` key of src/core/config.ts):
 * for each of scheme, host and port, a non-empty allow list wins over the deny list. Beyond
 * Glance, addresses that are internal — loopback, link-local (cloud metadata), private,
 * unique-local, multicast, unspecified — are refused unless the host is explicitly allowed.
 */
type ImportFilter = Readonly<ImportFilterConfig>;

function internalAddresses(): BlockList {
  const b = new BlockList();
  for (const [net, bits] of [
    ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12],
    ['192.0.0.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['224.0.0.0', 4], ['240.0.0.0', 4],
  ] as const) b.addSubnet(net, bits, 'ipv4');
  for (const [net, bits] of [['::', 128], ['::1', 128], ['fc00::', 7], ['fe80::', 10], ['ff00::', 8], ['::ffff:0:0', 96]] as const) {
    b.addSubnet(net, bits, 'ipv6');
  }
  return b;
}

class Refused extends Error {}

/** The RemoteSource port over Node's http/https clients. */
export class HttpRemoteSource implements RemoteSource {
  readonly #filter: ImportFilter;
  readonly #internal = internalAddresses();

  constructor(filter: ImportFilter) {
    this.#filter = filter;
  }

  check(uri: string, purpose = 'web-download'): void {
    const problem = this.#problem(uri, false);
    if (problem !== undefined) throw new BadRequestError(`URI for ${purpose} does not pass filtering: ${problem}`);
  }

  /** The Content-Length of the URI's answer to a GET (redirects followed and checked); the body is not read. */
  async size(uri: string, opts: IoOptions = {}): Promise<number | undefined> {
    const answer = await this.#answer(uri, opts, 0);
    answer.destroy();
    const length = answer.headers['content-length'];
    return length === undefined ? undefined : Number(length);
  }

  /** Why a URI is refused, or undefined. Hosts given as IP literals are checked here too. */
  #problem(uri: string, trusted: boolean): string | undefined {
    let url: URL;
    try {
      url = new URL(uri);
    } catch {
      return `${uri} is not a valid URI`;
    }
    const f = this.#filter;
    const scheme = url.protocol.replace(/:$/, '');
    if (scheme !== 'http' && scheme !== 'https') return `scheme ${scheme} is not supported`;
    if (trusted) return undefined;
    if (!listAllows(scheme, f.allowed_schemes, f.disallowed_schemes)) return `scheme ${scheme} is not allowed`;
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1').toLowerCase();
    if (!listAllows(host, f.allowed_hosts, f.disallowed_hosts)) return `host ${host} is not allowed`;
    const port = Number(url.port || (scheme === 'https' ? 443 : 80));
    if (!listAllows(port, f.allowed_ports, f.disallowed_ports)) return `port ${port} is not allowed`;
    if (url.username !== '' || url.password !== '') return 'credentials in the URI are not allowed';
    if (isIP(host) !== 0 && this.#isInternal(host) && !f.allowed_hosts.includes(host)) {
      return `address ${host} is internal (loopback, link-local, private or reserved)`;
    }
    return undefined;
  }

  #isInternal(address: string): boolean {
    return this.#internal.check(address, isIP(address) === 6 ? 'ipv6' : 'ipv4');
  }

  /**
   * GETs the URI (redirects followed and each checked). A body the server breaks off part-way
   * (a cut link, a reset, a stall past the timeout) is asked again from the first byte not yet
   * received with `Range` — from the URI as given, redirects checked again — and the server must
   * answer 206 from that byte (else the transfer fails as before): up to RESUME_ATTEMPTS times in
   * a row, with backoff. What the caller gets is the bytes in order, as one body.
   */
  async open(uri: string, opts: RemoteOpenOptions = {}): Promise<{ body: AsyncIterable<Uint8Array>; size?: number }> {
    const limit = this.#filter.max_size;
    if (limit !== null && !opts.trusted) opts = { ...opts, maxSize: Math.min(opts.maxSize ?? limit, limit) };
    const start = opts.start ?? 0;
    const first = await this.#answer(uri, opts, start);
    const length = first.headers['content-length'] === undefined ? undefined : Number(first.headers['content-length']);
    if (opts.maxSize !== undefined && length !== undefined && length > opts.maxSize) {
      first.destroy();
      throw new Error(`${first.uri} is ${length} bytes, more than the ${opts.maxSize} allowed`);
    }
    return { body: this.#resumable(uri, opts, first, start), size: length };
  }

  /** The body from byte `start` on, in order, resumed where it broke off. `maxSize` counts the bytes from `start`. */
  async *#resumable(uri: string, opts: RemoteOpenOptions, first: Answer, start: number): AsyncGenerator<Uint8Array> {
    let received = start;
    let res: Answer | undefined = first;
    let broke: Error | undefined;
    for (let failures = 0; ;) {
      try {
        res ??= await this.#answer(uri, opts, received);
        for await (const chunk of capped(res, opts.maxSize === undefined ? undefined : opts.maxSize - (received - start), res.uri)) {
          received += chunk.length;
          failures = 0;
          yield chunk;
        }
        return;
      } catch (error) {
        opts.signal?.throwIfAborted();
        res = undefined;
        const resuming = broke !== undefined;
        if (error instanceof BrokenOff && received > start && ++failures < RESUME_ATTEMPTS) {
          broke = error;
          await sleep(RESUME_BACKOFF_MS * 2 ** (failures - 1), undefined, { signal: opts.signal });
          continue;
        }
        // Say first why the body stopped, then why it could not be had from there.
        throw resuming && !(error instanceof BrokenOff) ? new Error(`${broke!.message}, and it could not be resumed: ${(error as Error).message}`) : error;
      }
    }
  }

  /**
   * The answer to a GET of the URI from byte `from`: 200 (from 0) or 206 from that byte, after
   * redirects (each checked).
   */
  async #answer(uri: string, opts: RemoteOpenOptions, from: number): Promise<Answer> {
    const headers = from === 0 ? opts.headers : { ...opts.headers, range: `bytes=${from}-` };
    let current = uri;
    for (let hop = 0; ; hop++) {
      const trusted = opts.trusted === true && hop === 0;
      const problem = this.#problem(current, trusted);
      if (problem !== undefined) {
        throw new Refused(hop === 0 ? `${current} was refused: ${problem}` : `redirect to ${current} was refused: ${problem}`);
      }
      const res = await this.#get(current, { ...opts, headers }, trusted);
      const status = res.statusCode ?? 0;
      if (status >= 300 && status < 400 && res.headers.location !== undefined) {
        res.resume();
        if (hop >= this.#filter.max_redirects) throw new Refused(`too many redirects (more than ${this.#filter.max_redirects})`);
        current = new URL(res.headers.location, current).href;
        continue;
      }
      const resumed = from > 0 && status === 206 && Number(/^bytes (\d+)-/.exec(res.headers['content-range'] ?? '')?.[1]) === from;
      if (!(from === 0 ? status === 200 : resumed)) {
        res.resume();
        throw new Error(from === 0 ? `GET ${current} answered HTTP ${status}` : `GET ${current} from byte ${from} answered HTTP ${status} (${res.headers['content-range'] ?? 'no Content-Range'}): it cannot be resumed`);
      }
      return Object.assign(res, { uri: current });
    }
  }

  #get(uri: string, opts: RemoteOpenOptions, trusted: boolean): Promise<IncomingMessage> {
    const url = new URL(uri);
    const allowedHost = this.#filter.allowed_hosts.includes(url.hostname.replace(/^\[(.*)\]$/, '$1').toLowerCase());
    // Names are resolved here and every address checked before connecting, and the connection
    // goes to the address checked (no second lookup a DNS answer could change).
    const lookup: LookupFunction = (hostname, options, callback) => {
      dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
        if (err !== null) return callback(err, '', 0);
        const list = addresses as LookupAddress[];
        const bad = list.find((a) => this.#isInternal(a.address));
        if (!trusted && !allowedHost && bad !== undefined) {
          return callback(new Refused(`${uri} was refused: ${hostname} resolves to internal address ${bad.address}`), '', 0);
        }
        if ((options as { all?: boolean }).all === true) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, list);
        return callback(null, list[0].address, list[0].family);
      });
    };
    const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      let response: IncomingMessage | undefined;
      const req = request(url, { method: 'GET', headers: opts.headers, lookup, signal: opts.signal, timeout: this.#filter.timeout_ms }, (res) => {
        response = res;
        resolve(res);
      });
      // Once the body is streaming, the reader of the response must see why it stopped (not "aborted").
      req.on('timeout', () => (response ?? req).destroy(new BrokenOff(`${uri} sent nothing for ${this.#filter.timeout_ms} ms`)));
      // A connection that fails (refused, reset, timed out) is "broken off": a resume tries again.
      req.on('error', (error: NodeJS.ErrnoException) => reject(error instanceof BrokenOff || error.code === undefined || error.name === 'AbortError' ? error : new BrokenOff(`${uri}: ${error.message}`, { cause: error })));
      req.end();
    });
  }
}

function listAllows<T>(value: T, allowed: readonly T[], denied: readonly T[]): boolean {
  if (allowed.length > 0) return allowed.includes(value);
  return !denied.includes(value);
}

/** A response, with the URI that gave it (after redirects). */
type Answer = IncomingMessage & { uri: string };

/** Attempts in a row to resume a body broken off part-way, and the first wait (doubling). */
const RESUME_ATTEMPTS = 5;
const RESUME_BACKOFF_MS = 500;


async function* capped(res: IncomingMessage, maxSize: number | undefined, uri: string): AsyncGenerator<Uint8Array> {
  let size = 0;
  try {
    for await (const chunk of res) {
      size += (chunk as Buffer).length;
      if (maxSize !== undefined && size > maxSize) throw new Error(`${uri} sent more than the ${maxSize} bytes allowed`);
      yield chunk as Buffer;
    }
    if (!res.complete) throw new BrokenOff(`${uri} closed the connection before the whole body arrived`);
  } catch (error) {
    // Node reports a connection closed mid-body as a bare "aborted" (ECONNRESET); a stall, as the request's timeout.
    if ((error as NodeJS.ErrnoException).code === 'ECONNRESET') throw new BrokenOff(`${uri} closed the connection before the whole body arrived`);
    throw error;
  } finally {
    if (!res.complete) res.destroy();
  }
}
