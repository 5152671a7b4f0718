import { BadRequestError } from './errors.ts';
import type { BlobStore, StoreDescription } from './ports.ts';

/** What an operator configured about one store (Glance multistore `enabled_backends` entry). */
export interface StoreInfo {
  id: string;
  type: 'file' | 's3';
  description: string;
  weight: number;
  readOnly: boolean;
  /** Type-specific settings shown by GET /v2/info/stores/detail (admin). */
  properties: Record<string, unknown>;
}

/** The site's stores; the first one configured is the default. */
export class StoreRegistry {
  readonly #stores: Map<string, { info: StoreInfo; blobs: BlobStore }>;
  readonly defaultId: string;

  constructor(stores: readonly { info: StoreInfo; blobs: BlobStore }[]) {
    if (stores.length === 0) throw new Error('a site needs at least one store');
    this.#stores = new Map(stores.map((s) => [s.info.id, s]));
    this.defaultId = stores[0].info.id;
  }

  list(): StoreInfo[] {
    return [...this.#stores.values()].map((s) => s.info);
  }

  describe(): StoreDescription[] {
    return this.list().map((s) => ({
      id: s.id, type: s.type, description: s.description, weight: s.weight, read_only: s.readOnly, default: s.id === this.defaultId, properties: s.properties,
    }));
  }

  has(id: string): boolean {
    return this.#stores.has(id);
  }

  /** The store's bytes; BadRequestError for an unknown id (as X-Image-Meta-Store). */
  blobs(id: string): BlobStore {
    const s = this.#stores.get(id);
    if (s === undefined) throw new BadRequestError(`Store for identifier ${id} not found`);
    return s.blobs;
  }

  isReadOnly(id: string): boolean {
    return this.#stores.get(id)?.info.readOnly ?? false;
  }

  weight(id: string): number {
    return this.#stores.get(id)?.info.weight ?? 0;
  }

  /** Closes every store (their clients' connections); the registry is not used afterwards. */
  async close(): Promise<void> {
    await Promise.all([...this.#stores.values()].map((s) => s.blobs.close?.()));
  }
}
