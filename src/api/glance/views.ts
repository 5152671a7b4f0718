import type { Image, ImageLocation, ImageMember } from '../../core/image.ts';
import { orderedStoreIds, shownLocations } from '../../core/image.ts';
import { metadataShown } from '../../core/image-locations.ts';

/** `YYYY-MM-DDTHH:MM:SSZ`, as glance.common.timeutils.isotime. */
export function isoSeconds(iso: string): string {
  return `${iso.slice(0, 19)}Z`;
}

export interface ImageViewOptions {
  /** A store's weight (region-wide): an image's `stores` are ordered by weight, then id. */
  weight(storeId: string): number;
  /** Stores holding a verified cached copy (central: every site's, from their inventories; an edge: its own). */
  held?: readonly string[];
  showLocations: boolean;
  showDirectUrl: boolean;
}

/**
 * The image JSON of glance/api/v2/images.py `ResponseSerializer._format_image`: custom properties,
 * then the base attributes (null when unset), links, and `stores` when the image has copies: its
 * locations' stores by weight, then those of other sites holding a copy (`held`).
 */
export function imageView(image: Image, opts: ImageViewOptions): Record<string, unknown> {
  const storeIds = orderedStoreIds(image.locations, opts.weight);
  for (const s of opts.held ?? []) if (!storeIds.includes(s)) storeIds.push(s);
  const view: Record<string, unknown> = {
    ...image.properties,
    name: image.name,
    disk_format: image.disk_format,
    container_format: image.container_format,
    visibility: image.visibility,
    size: image.size,
    virtual_size: image.virtual_size,
    status: image.status,
    checksum: image.checksum,
    protected: image.protected,
    min_ram: image.min_ram,
    min_disk: image.min_disk,
    owner: image.owner,
    os_hidden: image.os_hidden,
    os_hash_algo: image.os_hash_algo,
    os_hash_value: image.os_hash_value,
    id: image.id,
    created_at: isoSeconds(image.created_at),
    updated_at: isoSeconds(image.updated_at),
    tags: image.tags,
    self: `/v2/images/${image.id}`,
    file: `/v2/images/${image.id}/file`,
    schema: '/v2/schemas/image',
  };
  const ordered = shownLocations(image.locations, opts.weight);
  if (opts.showLocations) view.locations = ordered.map(locationView);
  if (opts.showDirectUrl && ordered.length > 0) view.direct_url = ordered[0].url;
  if (storeIds.length > 0) view.stores = storeIds.join(',');
  return view;
}

/**
 * A location as Glance shows it: `{url, metadata}`, the metadata of a copy in a store with its
 * `store` (multistore), an http(s) location's as it was given.
 */
export function locationView(location: ImageLocation): { url: string; metadata: Record<string, unknown> } {
  return { url: location.url, metadata: metadataShown(location) };
}

export function memberView(m: ImageMember): Record<string, unknown> {
  return {
    member_id: m.member_id,
    image_id: m.image_id,
    status: m.status,
    created_at: isoSeconds(m.created_at),
    updated_at: isoSeconds(m.updated_at),
    schema: '/v2/schemas/member',
  };
}
