import type { IoOptions, Site } from '../core/ports.ts';
import { ParentClient, type TrustedConnections } from './parent-client.ts';

/**
 * Clients for the links from central to the other sites of its region, by site id: each at the
 * site's registered public URL, through the region's TLS trust (`sites_ca`), with the link
 * timeout. Requests on them carry their caller's credentials, not central's.
 */
export class RegionLinks {
  readonly #o: { sites: { getSite(id: string, opts?: IoOptions): Promise<Site | undefined> }; connections: TrustedConnections; timeoutMs: number };

  constructor(opts: { sites: { getSite(id: string, opts?: IoOptions): Promise<Site | undefined> }; connections: TrustedConnections; timeoutMs: number }) {
    this.#o = opts;
  }

  /** A client for site `id`, or undefined when no site of that id (with a public URL) is registered. */
  async client(id: string, signal?: AbortSignal): Promise<ParentClient | undefined> {
    const site = await this.#o.sites.getSite(id, { signal });
    if (site === undefined || site.public_url === '') return undefined;
    return new ParentClient({ url: site.public_url, timeoutMs: this.#o.timeoutMs, connections: this.#o.connections, trustKey: 'sites_ca' });
  }
}
