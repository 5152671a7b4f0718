import type { Image } from './image.ts';
import type { Catalog, ImageListQuery, IoOptions } from './ports.ts';

/** Every (not deleted) image matching `base`, whoever owns it, by id — read `pageSize` at a time. */
export async function* scanImages(
  catalog: Pick<Catalog, 'listImages'>, base: ImageListQuery['base'] = {}, pageSize = 1000, opts: IoOptions = {},
): AsyncGenerator<Image> {
  let marker: Image | undefined;
  for (;;) {
    const page = await catalog.listImages({
      scope: { admin: true, projectId: null, visibility: 'all', memberStatus: 'all' },
      base, properties: {}, tags: [], sort: [{ key: 'id', dir: 'asc' }], limit: pageSize, marker,
    }, opts);
    yield* page;
    if (page.length < pageSize) return;
    marker = page.at(-1);
  }
}

/** Every (not deleted) image of the catalog, by id. */
export async function allImages(catalog: Pick<Catalog, 'listImages'>, opts: IoOptions = {}): Promise<Image[]> {
  const all: Image[] = [];
  for await (const image of scanImages(catalog, {}, undefined, opts)) all.push(image);
  return all;
}
