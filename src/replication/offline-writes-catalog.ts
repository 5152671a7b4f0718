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
 * while it is cut off (issue 17): the image is marked (OfflineWriteStore) before it is written —
 * the mark is taken back if the write is refused or changes nothing, so a mark always stands for
 * a write; one left by a crash in between makes the edge send an unchanged version, which is
 * harmless — and carries PENDING_PROPERTY until central has it, and an image created here
 * ORIGIN_PROPERTY. Allowed: creating images (and uploading their bytes, into this site's store),
 * changing images created at this site, deleting images created while cut off that were never
 * sent to central (whose bytes no other site has, nor could central have located them here).
 * Any other write is refused with 503 saying why: the image is central's to change. The writes to
 * one image are made one at a time.
 */
export function withOfflineWrites<C extends Catalog>(catalog: C, opts: OfflineWritesOptions): C {
  const { site, parent, marks } = opts;
  const refuse = (id: string, what: string) => new ServiceUnavailableError(
    `The parent site ${parent} could not be reached: this site (${site}) is cut off, and ${what} image ${id} waits for the link (while cut off, only images created at this site can be changed, and only those created while cut off and not yet sent to central deleted).`,
  );
  const pending = (image: Image): Image => ({ ...image, properties: { ...image.properties, [PENDING_PROPERTY]: 'true' } });
  // The write in progress per image: the next one waits for it (mark, write, take back are one step).
  const writing = new Map<string, Promise<unknown>>();
  const oneAtATime = async <T>(id: string, write: () => Promise<T>): Promise<T> => {
    const before = writing.get(id) ?? Promise.resolve();
    const mine = before.catch(() => undefined).then(write);
    writing.set(id, mine);
    try {
      return await mine;
    } finally {
      if (writing.get(id) === mine) writing.delete(id);
    }
  };
  /** Marks the image, then writes; a mark this write made is taken back unless it changed the image. */
  const marked = async <T>(id: string, base: string | null, write: () => Promise<{ result: T; changed: boolean }>, o?: IoOptions): Promise<T> => {
    const fresh = await marks.markOffline(id, base, o);
    let changed = false;
    try {
      const done = await write();
      changed = done.changed;
      return done.result;
    } finally {
      if (fresh && !changed) await marks.unmarkOffline(id);
    }
  };
  return {
    ...catalog,
    createImage(image: Image, o?: IoOptions): Promise<Image> {
      return oneAtATime(image.id, () => marked(image.id, null, async () => {
        const result = await catalog.createImage(pending({ ...image, properties: { ...image.properties, [ORIGIN_PROPERTY]: site } }), o);
        return { result, changed: true };
      }, o));
    },
    updateImage(id: string, mutate: (current: Image) => Image, o?: IoOptions): Promise<Image> {
      return oneAtATime(id, async () => {
        const current = await catalog.getImage(id, o);
        if (current === undefined) return catalog.updateImage(id, mutate, o); // not found, as the catalog says it
        if (current.properties[ORIGIN_PROPERTY] !== site) throw refuse(id, 'changing');
        // Based on central's version as the replica has it (a mark that exists keeps its base).
        return marked(id, current.updated_at, async () => {
          let changed = false;
          const result = await catalog.updateImage(id, (now) => {
            const next = mutate(now);
            changed = JSON.stringify(next) !== JSON.stringify(now);
            return changed ? pending(next) : now;
          }, o);
          return { result, changed };
        }, o);
      });
    },
    deleteImage(id: string, o?: IoOptions): Promise<void> {
      return oneAtATime(id, async () => {
        const mark = await marks.offlineMark(id, o);
        if (mark === undefined || mark.base_updated_at !== null || mark.sent.length > 0) throw refuse(id, 'deleting');
        await catalog.deleteImage(id, o);
      });
    },
  };
}
