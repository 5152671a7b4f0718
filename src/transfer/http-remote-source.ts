import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { BlockList, isIP, type LookupFunction } from 'node:net';
import type { ImportFilterConfig } from '../core/config.ts';
import { BadRequestError } from '../core/errors.ts';
import type { RemoteOpenOptions, RemoteSource } from '../core/ports.ts';

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

  check(uri: string): void {
    const problem = this.#problem(uri, false);
    if (problem !== undefined) throw new BadRequestError(`URI for web-download does not pass filtering: ${problem}`);
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

  async open(uri: string, opts: RemoteOpenOptions = {}): Promise<{ body: AsyncIterable<Uint8Array>; size?: number }> {
    const limit = this.#filter.max_size;
    if (limit !== null && !opts.trusted) opts = { ...opts, maxSize: Math.min(opts.maxSize ?? limit, limit) };
    let current = uri;
    for (let hop = 0; ; hop++) {
      const trusted = opts.trusted === true && hop === 0;
      const problem = this.#problem(current, trusted);
      if (problem !== undefined) {
        throw new Refused(hop === 0 ? `${current} was refused: ${problem}` : `redirect to ${current} was refused: ${problem}`);
      }
      const res = await this.#get(current, opts, trusted);
      const status = res.statusCode ?? 0;
      if (status >= 300 && status < 400 && res.headers.location !== undefined) {
        res.resume();
        if (hop >= this.#filter.max_redirects) throw new Refused(`too many redirects (more than ${this.#filter.max_redirects})`);
        current = new URL(res.headers.location, current).href;
        continue;
      }
      if (status !== 200) {
        res.resume();
        throw new Error(`GET ${current} answered HTTP ${status}`);
      }
      const length = res.headers['content-length'] === undefined ? undefined : Number(res.headers['content-length']);
      if (opts.maxSize !== undefined && length !== undefined && length > opts.maxSize) {
        res.destroy();
        throw new Error(`${current} is ${length} bytes, more than the ${opts.maxSize} allowed`);
      }
      return { body: capped(res, opts.maxSize, current), size: length };
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
      req.on('timeout', () => (response ?? req).destroy(new Error(`${uri} sent nothing for ${this.#filter.timeout_ms} ms`)));
      req.on('error', reject);
      req.end();
    });
  }
}

function listAllows<T>(value: T, allowed: readonly T[], denied: readonly T[]): boolean {
  if (allowed.length > 0) return allowed.includes(value);
  return !denied.includes(value);
}

async function* capped(res: IncomingMessage, maxSize: number | undefined, uri: string): AsyncGenerator<Uint8Array> {
  let size = 0;
  try {
    for await (const chunk of res) {
      size += (chunk as Buffer).length;
      if (maxSize !== undefined && size > maxSize) throw new Error(`${uri} sent more than the ${maxSize} bytes allowed`);
      yield chunk as Buffer;
    }
    if (!res.complete) throw new Error(`${uri} closed the connection before the whole body arrived`);
  } catch (error) {
    // Node reports a connection closed mid-body as a bare "aborted" (ECONNRESET).
    if ((error as NodeJS.ErrnoException).code === 'ECONNRESET') throw new Error(`${uri} closed the connection before the whole body arrived`);
    throw error;
  } finally {
    if (!res.complete) res.destroy();
  }
}
