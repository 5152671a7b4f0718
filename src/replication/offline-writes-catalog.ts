import { ServiceUnavailableError } from '../core/errors.ts';
import type { Image } from '../core/image.ts';
import { ORIGIN_PROPERTY, PENDING_PROPERTY } from '../core/offline-writes.ts';
import type { Catalog, IoOptions, OfflineWriteStore } from '../core/ports.ts';

export interface OfflineWritesOptions {
  /** This edge's id. */
  site: string;
  /** Its parent's URL (said in refusals). */
  parent: string;
  marks: OfflineWriteStore;
}

/**
 * An edge's catalog as its ImageService writes it. An edge passes every write to its parent while
 * it can reach it (parent-forwarding.ts), so a write that reaches its own catalog is one made
 * while it is cut off (issue 17): the image is marked (OfflineWriteStore) before it is written,
 * carries PENDING_PROPERTY until central has it, and an image created here ORIGIN_PROPERTY.
 * Allowed: creating images (and uploading their bytes, into this site's store), changing images
 * created at this site, deleting images created while cut off (whose bytes no other site has).
 * Any other write is refused with 503 saying why: the image is central's to change.
 */
export function withOfflineWrites<C extends Catalog>(catalog: C, opts: OfflineWritesOptions): C {
  const { site, parent, marks } = opts;
  const refuse = (id: string, what: string) => new ServiceUnavailableError(
    `The parent site ${parent} could not be reached: this site (${site}) is cut off, and ${what} image ${id} waits for the link (while cut off, only images created at this site can be changed, and only those created while cut off deleted).`,
  );
  const pending = (image: Image): Image => ({ ...image, properties: { ...image.properties, [PENDING_PROPERTY]: 'true' } });
  return {
    ...catalog,
    async createImage(image: Image, o?: IoOptions): Promise<void> {
      await marks.markOffline(image.id, null, o);
      await catalog.createImage(pending({ ...image, properties: { ...image.properties, [ORIGIN_PROPERTY]: site } }), o);
    },
    async updateImage(id: string, mutate: (current: Image) => Image, o?: IoOptions): Promise<Image> {
      const current = await catalog.getImage(id, o);
      if (current !== undefined) {
        if (current.properties[ORIGIN_PROPERTY] !== site) throw refuse(id, 'changing');
        // Based on central's version as the replica has it (a mark that exists keeps its base).
        await marks.markOffline(id, current.updated_at, o);
      }
      return catalog.updateImage(id, (now) => pending(mutate(now)), o);
    },
    async deleteImage(id: string, o?: IoOptions): Promise<void> {
      const mark = (await marks.offlineMarks(o)).find((m) => m.image_id === id);
      if (mark === undefined || mark.base_updated_at !== null) throw refuse(id, 'deleting');
      await catalog.deleteImage(id, o);
    },
  };
}
